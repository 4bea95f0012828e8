"""What a client locked out by django-axes gets: JSON for the API, a page for the form."""

from __future__ import annotations

from typing import Any

from django.conf import settings
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
