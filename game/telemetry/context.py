"""Who and what a line of work is about (room, round, user, request), for logs and Sentry.

Held in a context variable, so it follows a WebSocket connection's task, a request, a
Celery task and the coroutines they start, and never leaks between them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FIELDS = ("request_id", "user_id", "room", "round")

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "nuxtest_context", default=None
)


def current() -> dict[str, Any]:
    """The fields bound in this context (do not modify the result)."""
    return _fields.get() or {}


def bind(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add fields to this context until it ends (or `unbind(token)`); None values are skipped."""
    merged = {**current(), **{k: v for k, v in fields.items() if v is not None}}
    return _fields.set(merged)


def unbind(token: contextvars.Token[dict[str, Any] | None]) -> None:
    """Undo one `bind`."""
    _fields.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """`bind` for the duration of a with-block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)
