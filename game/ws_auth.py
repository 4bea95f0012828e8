"""WebSocket handshake authentication and origin checks.

Browsers authenticate with the Django session cookie; any other client with
`Authorization: Bearer <access JWT>`. The consumer decides what to refuse, in the
order GAME.md fixes (origin, authentication, room, capacity).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken


def header(scope: dict[str, Any], name: bytes) -> bytes | None:
    """The first value of a request header (lower-case name), or None."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


@database_sync_to_async
def _user_for_token(raw: str) -> Any:
    """The token's user as the HTTP API sees it (simplejwt's own checks: the account exists,
    is active, and its password has not changed since the token was issued), else anonymous."""
    try:
        return JWTAuthentication().get_user(AccessToken(raw))  # type: ignore[arg-type]
    except (TokenError, InvalidToken, AuthenticationFailed):
        return AnonymousUser()


class BearerOrSessionAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from a Bearer token if one is sent, else from the session cookie."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        auth = header(scope, b"authorization")
        if auth is None:
            scope = dict(scope, auth_method="session")
            return await self.session_stack(scope, receive, send)
        kind, _, raw = auth.decode("latin-1").partition(" ")
        user = await _user_for_token(raw.strip()) if kind.lower() == "bearer" else AnonymousUser()
        scope = dict(scope, user=user, auth_method="bearer")
        return await self.inner(scope, receive, send)


def origin_allowed(scope: dict[str, Any]) -> bool:
    """An Origin naming one of ALLOWED_HOSTS; no Origin only with a bearer token."""
    origin = header(scope, b"origin")
    if origin is None:
        return scope.get("auth_method") == "bearer"
    parts = urlsplit(origin.decode("latin-1"))
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return False
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return validate_host(host, settings.ALLOWED_HOSTS)
