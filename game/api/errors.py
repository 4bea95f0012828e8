"""Every API error as JSON `{"detail": ...}` (GAME.md), naming the field on a 400."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _first_message(detail: Any, path: str = "") -> tuple[str, str]:
    """The first (field, message) of a nested DRF error detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = str(key) if key != "non_field_errors" else ""
            return _first_message(value, f"{path}.{name}" if path and name else path or name)
    if isinstance(detail, list) and detail:
        return _first_message(detail[0], path)
    return path, str(detail)


def _as_lists(detail: Any) -> Any:
    """Each field's messages as a list, as serializers give them (views may raise a bare one)."""
    if isinstance(detail, dict):
        return {key: [value] if isinstance(value, str) else _as_lists(value) for key, value in detail.items()}
    return detail


logger = logging.getLogger(__name__)


def _pool_exhausted(exc: Exception) -> bool:
    """A request that waited DB_POOL_TIMEOUT for a pooled database connection and got none."""
    if not isinstance(exc, OperationalError):
        return False
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - psycopg[pool] is a dependency
        return False
    return isinstance(exc.__cause__, PoolTimeout)


# MySQL/MariaDB refusing a new connection: past max_connections (1040), past the account's
# MAX_USER_CONNECTIONS (1203, and 1226 for max_user_connections). Django has no connection
# pool for them, so a crowd of requests opens a connection each and meets this at once.
MYSQL_TOO_MANY_CONNECTIONS = {1040, 1203, 1226}


def _connections_exhausted(exc: Exception) -> bool:
    """A request the database refused a connection because it has too many already."""
    return isinstance(exc, OperationalError) and bool(exc.args) and exc.args[0] in MYSQL_TOO_MANY_CONNECTIONS


def _busy() -> Response:
    return Response(
        {"detail": "the server is busy; try again in a moment"},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


def _dependency_unavailable(exc: Exception) -> bool:
    """Redis or the database unreachable (down, restarting, the connection cut under the
    request): nothing the client did, and it may try again shortly."""
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OperationalError | InterfaceError)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with validation errors flattened to one `detail` message.

    A request that found every pooled database connection busy for DB_POOL_TIMEOUT (a
    crowd of sign-ups or joins at once), or that MySQL/MariaDB refused a connection for
    having too many (no pool there: the same crowd meets max_connections at once), is told
    to come back, not shown a server error.
    A body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413, not Django's HTML 400 page (and its
    ERROR log line, a Sentry event, for a client's mistake).
    Redis or the database unreachable is a JSON 503 with `Retry-After: 5`, not Django's HTML
    500 page (GAME.md: API errors are JSON).
    """
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if _pool_exhausted(exc):
        logger.warning(
            "no database connection free within DB_POOL_TIMEOUT", extra={"event": "db_pool_exhausted"}
        )
        return _busy()
    if _connections_exhausted(exc):
        logger.warning(
            "the database refused a connection: %s", exc, extra={"event": "db_connections_exhausted"}
        )
        return _busy()
    if _dependency_unavailable(exc):
        # Was Django's HTML 500 page, on every API call while Redis or PostgreSQL was away.
        logger.warning(
            "a service the API needs is unavailable: %s",
            type(exc).__name__,
            exc_info=True,
            extra={"event": "dependency_unavailable"},
        )
        return Response(
            {"detail": "the service is temporarily unavailable; try again in a moment"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_message(exc.detail)
        data: dict[str, Any] = {"detail": f"{field}: {message}" if field else message}
        if field:
            data["field"] = field
        data["errors"] = _as_lists(exc.detail)
        response.data = data
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {
            "detail": str(response.data["detail"]),
            **{k: v for k, v in response.data.items() if k != "detail"},
        }
    else:
        response.data = {"detail": response.data}
    return response


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: `{"detail": ...}` under /api/, Django's page elsewhere.

    Django answers 400 by itself, before any view, for a request it finds suspicious — a
    `Host` that is not in ALLOWED_HOSTS above all, which every internet scanner sends —
    and that answer was an HTML page on the API too.
    """
    if not request.path.startswith("/api/"):
        return defaults.bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        detail = "the Host header names no site served here"
    else:
        detail = "the request is malformed"
    return JsonResponse({"detail": detail}, status=400)
