"""The client's address behind the trusted reverse proxies (NUXTEST_TRUSTED_PROXY_COUNT)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    """The address that connected to the outermost trusted proxy, else REMOTE_ADDR.

    With N trusted proxies, each appending the address it saw to X-Forwarded-For, the N-th
    entry from the right is the client (the same rule as DRF's NUM_PROXIES); anything to its
    left was sent by the client and is not believed. With no trusted proxy the header is
    ignored. Under Daphne's --proxy-headers REMOTE_ADDR already is that address when the
    proxy overwrites the header (deploy/nginx/nginx.conf), and both rules agree.
    """
    meta = request.META
    remote = str(meta.get("REMOTE_ADDR") or "")
    count = int(settings.NUXTEST_TRUSTED_PROXY_COUNT)
    forwarded = str(meta.get("HTTP_X_FORWARDED_FOR") or "")
    if count <= 0 or not forwarded.strip():
        return remote
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if not hops:
        return remote
    return hops[-min(count, len(hops))]
