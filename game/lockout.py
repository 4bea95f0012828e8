"""What a client locked out by django-axes gets: JSON for the API, a page for the form."""

from __future__ import annotations

import hashlib
from typing import Any

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import (
    get_cache,
    get_cache_timeout,
    get_client_cache_keys,
    get_client_username,
    get_credentials,
)
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
    """django-axes' cache handler, counting in the cache as configured now, not at first use,
    and forgiving on a success only the failures of the account that logged in.

    Axes keeps one handler per process; the stock one binds its cache once, so a changed
    CACHES (each test's own Redis key prefix) would go on counting under the old prefix.

    The count is per address; axes' reset on success (AXES_RESET_ON_SUCCESS, off) cleared
    the whole address's count, so anyone with an account guessed without limit: nine
    guesses at another account, one log-in of their own, again (a security walk-through).
    Here each failure is also counted per address and name, and a success takes that
    account's own failures (a player's typos) off the address's count, nothing else.
    """

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        super().user_login_failed(sender, credentials, request=request, **kwargs)
        if request is None or getattr(request, "axes_failures_since_start", None) is None:
            return  # not counted: refused while locked out, or an address on the allow-list
        username = get_client_username(request, credentials)
        if not username:
            return
        key, timeout = self._own_key(request, username), get_cache_timeout(request)
        if not self.cache.add(key, 1, timeout):
            self.cache.incr(key)
            self.cache.touch(key, timeout)

    def user_logged_in(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        key = self._own_key(request, user.get_username())
        own = self.cache.get(key, 0)
        if not own:
            return
        self.cache.delete(key)
        for address_key in get_client_cache_keys(request, get_credentials(user.get_username())):
            try:
                left = self.cache.decr(address_key, own)
            except ValueError:
                continue  # expired, or lifted by axes_reset_ip, meanwhile
            if left <= 0:
                self.cache.delete(address_key)

    @staticmethod
    def _own_key(request: Any, username: str) -> str:
        # lower(), not casefold(): closer to the case-insensitive uniqueness of usernames
        # (iexact), so that no other account's name folds onto this one.
        name = f"{request.axes_ip_address}\0{username.lower()}"
        return "axes-own-failures:" + hashlib.sha256(name.encode()).hexdigest()[:32]

    @property
    def cache(self) -> BaseCache:
        return get_cache()

    @cache.setter
    def cache(self, value: BaseCache) -> None:
        """Ignored: the cache is looked up on each use."""
