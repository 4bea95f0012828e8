"""Django's ASGI handler with the middleware chain run synchronously: one thread hop a request.

Under ASGI, Django builds the middleware chain in async mode. Every middleware that is not
async-native (Django's own session, CSRF, auth, messages, security, clickjacking, and
django-prometheus, django-csp) then runs its `process_request` and `process_response`
each through `sync_to_async`, a hop to a thread and back, and so does each `process_view`.
With this project's fourteen middlewares that was about twenty hops per request: a bare
`/healthz` cost the web process 8 ms of CPU, a token refresh 12 ms, and a ramp of joins
(refresh, matchmaking, handshake) took the web process's core from the game's players.

Every view here is synchronous (DRF, Django's pages), so the chain gains nothing from async
mode. This handler builds it in sync mode, as under WSGI, and runs the whole of it — the
middlewares and the view — in the request's thread-sensitive thread in one hop (the same
thread, so the same database connection, as before). The few async-native middlewares
(CORS, WhiteNoise, django-axes, the access log) are sync-capable too. An async view, if one
is ever added, still works: Django adapts it back onto the event loop.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    """ASGIHandler whose middleware chain and views run in one `sync_to_async` call."""

    def __init__(self) -> None:
        # ASGIHandler.__init__ would build the chain in async mode; build it once, in sync mode.
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        """The response from the sync chain, run in the request's thread."""
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
