"""What a client locked out by django-axes gets: JSON for the API, a page for the form."""

from __future__ import annotations

from typing import Any

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache
from django.conf import settings
from django.core.cache.backends.base import BaseCache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

MESSAGE = "too many failed log-in attempts from this address: try again later"


def cooloff_seconds() -> int:
    """The lock's length in whole seconds."""
    cooloff = settings.AXES_COOLOFF_TIME
    return int(cooloff.total_seconds()) if cooloff is not None else 0


def lockout_response(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """429 with Retry-After: `{"detail": ...}` under /api/, the lockout page elsewhere."""
    retry_after = cooloff_seconds()
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": MESSAGE}, status=429)
    else:
        response = render(
            request, "registration/locked_out.html", {"minutes": max(1, retry_after // 60)}, status=429
        )
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


class AxesRedisCacheHandler(AxesCacheHandler):
    """django-axes' cache handler, counting in the cache as configured now, not at first use.

    Axes keeps one handler per process; the stock one binds its cache once, so a changed
    CACHES (each test's own Redis key prefix) would go on counting under the old prefix.
    """

    @property
    def cache(self) -> BaseCache:
        return get_cache()

    @cache.setter
    def cache(self, value: BaseCache) -> None:
        """Ignored: the cache is looked up on each use."""
