"""The HTTP access log, one JSON line per request, with a request id shared by every line.

This is NuxTest's access log (Daphne's own is off: it writes plain text outside
`logging`). WebSocket connections log `ws_connect` / `ws_disconnect` in the consumer.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty

from game.telemetry import context, tracing

logger = logging.getLogger("nuxtest.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Probes and scrapes every few seconds would drown the access log: DEBUG for them.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _user_id(request: HttpRequest) -> int | None:
    # Only a user that is already loaded: resolving a lazy one here would query the database.
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = user._wrapped  # type: ignore[attr-defined]
        if user is empty:
            return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return int(user.pk)


class RequestLogMiddleware:
    """Binds a request id (X-Request-ID from the proxy, or a new one) and logs each request."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        request_id, started = self._begin(request)
        with context.bound(request_id=request_id):
            response = self.get_response(request)
            return self._end(request, response, request_id, started)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        request_id, started = self._begin(request)
        with context.bound(request_id=request_id):
            response = await self.get_response(request)
            return self._end(request, response, request_id, started)

    @staticmethod
    def _begin(request: HttpRequest) -> tuple[str, float]:
        incoming = request.headers.get("X-Request-ID", "")
        return (incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex), time.perf_counter()

    @staticmethod
    def _end(
        request: HttpRequest, response: HttpResponseBase, request_id: str, started: float
    ) -> HttpResponseBase:
        user_id = _user_id(request)
        if user_id is not None:
            # Django's request span knows no user (DRF authenticates inside the view).
            tracing.annotate({"enduser.id": user_id})
        logger.log(
            logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO,
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "event": "http_request",
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": user_id,
            },
        )
        response["X-Request-ID"] = request_id
        return response
