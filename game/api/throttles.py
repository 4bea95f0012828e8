"""DRF throttles of the abuse-prone endpoints: rates from settings.NUXTEST_THROTTLE_RATES."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from nuxtest.proxy import client_ip


class ScopedThrottle(ScopedRateThrottle):
    """DRF's scoped throttle (per user, per address when anonymous), counted in Django's cache.

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
