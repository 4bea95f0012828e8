"""redis-py's asyncio connection check, without its no-op timer (installed once per process).

Before every command, redis-py's asyncio pool checks that the connection it hands out has
nothing unread and is not closed (`ensure_connection` → `can_read_destructive`). Up to
redis-py 7, the pure-Python parser makes that check inside `asyncio.timeout(0)` around a
synchronous `at_eof()`: the timeout has no await to interrupt, so it can never fire, but
it schedules and cancels a timer for every command — 9 % of a web process's CPU under the
game benchmark (docs/performance.md). redis-py 8 dropped the timer and also looks at the
bytes already read from the socket but not parsed; this is that check. redis-py 8 is not
taken instead because it speaks RESP3 by default, through channels-redis and kombu too.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError


async def _can_read_destructive(self: Any) -> bool:
    # redis-py 8.1's check (redis/_parsers/base.py): unread parsed data, unread socket
    # data, or the server closed the connection.
    if not self._connected:
        raise RedisError("Buffer is closed.")
    if self._buffer:
        return True
    return bool(getattr(self._stream, "_buffer", b"")) or bool(self._stream.at_eof())


def redis_tune() -> bool:
    """Install the check on redis-py's pure-Python asyncio parser; False where not needed."""
    import redis
    from redis._parsers.base import _AsyncRESPBase

    if int(redis.__version__.split(".")[0]) >= 8:
        return False  # upstream has it
    _AsyncRESPBase.can_read_destructive = _can_read_destructive  # type: ignore[method-assign]
    return True
