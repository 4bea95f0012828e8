"""DRF throttles of the abuse-prone endpoints: rates from settings.NUXTEST_THROTTLE_RATES.

DRF's own bookkeeping (read the request log from the cache, append, write it back) lets
requests that arrive together all pass; here the same sliding window is one atomic step in
Redis (store.throttle_take).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from game import store
from nuxtest.proxy import client_ip


class ScopedThrottle(ScopedRateThrottle):
    """DRF's scoped throttle (per user, per address when anonymous), counted in Redis.

    The rate is read from the settings on each request, not frozen at import as DRF's
    DEFAULT_THROTTLE_RATES is, so an operator's environment and a test's settings apply.
    """

    def get_rate(self) -> str | None:
        rates: dict[str, Any] = settings.NUXTEST_THROTTLE_RATES
        rate = rates.get(self.scope) if self.scope else None
        return str(rate) if rate else None

    def get_ident(self, request: Request) -> str:
        """The client address behind the trusted proxies (the same rule as the log-in lockout)."""
        return client_ip(request)

    def allow_request(self, request: Request, view: APIView) -> bool:
        """DRF's scoped throttle check, counted atomically (see the module's docstring)."""
        self.scope = getattr(view, self.scope_attr, None)
        self.rate = self.get_rate() if self.scope else None
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None or self.num_requests is None or self.duration is None:
            return True
        self.now = self.timer()
        allowed, self.counted, self.oldest = store.throttle_take(
            self.key, limit=self.num_requests, window_seconds=self.duration, now=self.now
        )
        return allowed

    def wait(self) -> float | None:
        """Seconds until a request would be counted again (DRF's rule, over the Redis window)."""
        assert self.num_requests is not None and self.duration is not None  # set by allow_request
        remaining = self.duration - (self.now - self.oldest)
        available = self.num_requests - self.counted + 1
        return remaining / available if available > 0 else None
