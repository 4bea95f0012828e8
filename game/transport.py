"""Daphne's WebSocket transport (autobahn), tuned once at start-up from nuxtest/asgi.py.

- A hard cap on frame and message size in the transport itself, so a client cannot make
  the server buffer an unbounded message before the consumer sees it. It is set above the
  protocol's 64 KiB limit (`NUXTEST_WS_MAX_MESSAGE_BYTES`), which the consumer enforces
  with a `message_too_large` error and the connection left open; past the hard cap
  (`NUXTEST_WS_HARD_MAX_BYTES`, default 1 MiB) autobahn closes the connection with 1009.
- The reason phrase of 429 ("Too Many Requests"), missing from Twisted's status table.
- Close codes 1011 ("internal error", a handshake that failed), 1012 ("service restart",
  graceful restarts: game/shutdown.py) and 1013 ("try again later", the
  `handshake_refuse` fault flag) allowed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from game.shutdown import CLOSE_SERVICE_RESTART

CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
# IANA-registered codes a server sends that autobahn refuses from an application.
_SERVER_CLOSE_CODES = {
    CLOSE_INTERNAL_ERROR: b"internal error",
    CLOSE_SERVICE_RESTART: b"service restart",
    CLOSE_TRY_AGAIN_LATER: b"try again later",
}


def daphne_tune() -> None:
    """Apply both adjustments (no-op where Daphne is not installed)."""
    try:
        from daphne.ws_protocol import WebSocketProtocol as DaphneWebSocket
    except ImportError:  # pragma: no cover - Daphne is a dependency
        return
    # autobahn copies its options from the factory only where the protocol class sets none.
    hard_cap = max(settings.NUXTEST_WS_HARD_MAX_BYTES, settings.NUXTEST_WS_MAX_MESSAGE_BYTES + 1)
    DaphneWebSocket.maxMessagePayloadSize = hard_cap
    DaphneWebSocket.maxFramePayloadSize = hard_cap
    _allow_server_close_codes()
    _name_statuses()


def _name_statuses() -> None:
    """Daphne writes an HTTP status line's reason from Twisted's table, which lacks 429: the
    throttles' and the log-in lockout's answer went out as "429 Unknown Status"."""
    from twisted.web import http

    http.RESPONSES.setdefault(429, b"Too Many Requests")


def _allow_server_close_codes() -> None:
    """Let Daphne's WebSocket library (autobahn) send close codes 1011, 1012 and 1013.

    autobahn accepts only 1000 and 3000-4999 from an application, stricter than RFC 6455's
    IANA registry, where 1011 "Internal Error" is what a server that failed a handshake
    sends, 1012 "Service Restart" what a server going down for a restart
    sends and 1013 "Try Again Later" what an overloaded (or, here, drilled) one sends.
    autobahn's own lower-level sendCloseFrame does the sending.
    """
    from autobahn.websocket.protocol import WebSocketProtocol

    original = WebSocketProtocol.sendClose
    if getattr(original, "nuxtest_codes", False):
        return

    def send_close(self: Any, code: int | None = None, reason: str | None = None) -> None:
        if code in _SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code, reasonUtf8=_SERVER_CLOSE_CODES[code], isReply=False)
            return
        original(self, code, reason)

    send_close.nuxtest_codes = True  # type: ignore[attr-defined]
    WebSocketProtocol.sendClose = send_close  # type: ignore[method-assign]


def send_failed_on_close(exc: BaseException) -> bool:
    """True for the error of a send to a connection that closed under it: autobahn's
    `Disconnected` under Daphne, an `OSError` under servers that follow the ASGI spec."""
    if isinstance(exc, OSError):
        return True
    try:
        from autobahn.exception import Disconnected
    except ImportError:  # pragma: no cover - Daphne (and autobahn) is a dependency
        return False
    return isinstance(exc, Disconnected)
