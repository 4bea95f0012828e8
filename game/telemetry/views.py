"""GET /metrics: the Prometheus exposition of this web instance (OpenMetrics when asked, for exemplars)."""

from __future__ import annotations

import ipaddress
import threading

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from game.telemetry.collectors import ClockOffsetCollector, RedisStateCollector
from nuxtest.proxy import client_ip

_lock = threading.Lock()
_registered = False


def _register_once() -> None:
    global _registered
    with _lock:
        if not _registered:
            REGISTRY.register(RedisStateCollector())
            REGISTRY.register(ClockOffsetCollector())
            _registered = True


def _allowed(request: HttpRequest) -> bool:
    """Only scrapers on the allowed networks (NUXTEST_METRICS_ALLOWED_NETWORKS) see /metrics.

    Both the connecting address and the client behind the trusted proxies (`client_ip`)
    must be on them: a request that a same-host proxy forwarded from the internet came
    from 127.0.0.1, and was served before (a security walk-through), while a client that
    reaches the server itself cannot open it by naming a private address in the header.
    """
    candidates = {str(request.META.get("REMOTE_ADDR") or ""), client_ip(request)}
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            return False
        if not any(address in network for network in settings.NUXTEST_METRICS_ALLOWED_NETWORKS):
            return False
    return True


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """The exposition; 403 for a client outside the allowed networks."""
    if not _allowed(request):
        return JsonResponse({"detail": "metrics are not served to this network"}, status=403)
    _register_once()
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
