"""This web process's presence in Redis: its heartbeat, and the closes Redis missed.

Rooms count a connection as connected while its id ("<instance>|<channel>") is in the
room's document. The sweeper drops the connections of a process whose heartbeat has
expired (a process that died); a process that lives records its own closes. When Redis
cannot take a close at that moment (Redis restarting, a network blip), the close is kept
here and recorded again after each heartbeat until it is: otherwise the player would stay
"connected" for as long as this process lives — every round would wait for their answer
until its deadline, and a room they all left would never be abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass

from redis.exceptions import RedisError

from game import aio, services, shutdown, store

logger = logging.getLogger(__name__)

# This web process, as seen by the sweeper: its connections die with its heartbeat.
INSTANCE_ID = uuid.uuid4().hex[:12]
HEARTBEAT_SECONDS = 10
HEARTBEAT_TTL_SECONDS = 30

# What Redis being away looks like to the store (redis-py's ConnectionError and
# TimeoutError are RedisErrors; a socket can also fail with a bare OSError).
_UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)

_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class _Close:
    """A closed connection whose close Redis has not taken yet (either part, or both)."""

    code: str
    user_id: int
    conn: str
    in_room: bool  # still listed in the room's document
    counted: bool  # still counted among the user's connections


# Keyed by connection id (unique per connection); one process, one loop in production.
_unrecorded: dict[str, _Close] = {}


def conn_new() -> str:
    """A new connection id of this process."""
    return f"{INSTANCE_ID}|{uuid.uuid4().hex}"


async def heartbeat_ensure() -> None:
    """Start this process's heartbeat on the running loop (once)."""
    loop = asyncio.get_running_loop()
    task = _heartbeats.get(loop)
    if task is None or task.done():
        await store.instance_heartbeat(INSTANCE_ID, HEARTBEAT_TTL_SECONDS)
        _heartbeats[loop] = aio.process_task(_heartbeat_forever(), name="nuxtest-heartbeat")
        shutdown.install()


async def _heartbeat_forever() -> None:
    while True:
        try:
            await store.instance_heartbeat(INSTANCE_ID, HEARTBEAT_TTL_SECONDS)
        except Exception:
            logger.warning(
                "instance heartbeat failed", exc_info=True, extra={"event": "instance_heartbeat_failed"}
            )
        else:
            await closes_retry()
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def connection_closed(*, code: str, user_id: int, conn: str, in_room: bool, counted: bool) -> None:
    """Record a closed connection in Redis: out of its room, out of the user's count.

    What Redis cannot take now is kept and recorded later (closes_retry); never raises for
    Redis being away, so a disconnect always completes in the process.
    """
    close = _Close(code=code, user_id=user_id, conn=conn, in_room=in_room, counted=counted)
    if not await _record(close, first=True):
        _unrecorded[conn] = close


async def closes_retry() -> int:
    """Record the closes Redis missed before; return how many are still unrecorded."""
    for conn, close in list(_unrecorded.items()):
        if await _record(close, first=False):
            del _unrecorded[conn]
            logger.info(
                "connection close recorded late",
                extra={"event": "ws_close_recorded", "room": close.code, "user_id": close.user_id},
            )
        else:
            break  # Redis is still away: try them all again after the next heartbeat
    return len(_unrecorded)


async def _record(close: _Close, *, first: bool) -> bool:
    try:
        # The player's count first: it needs Redis only, and a close that fails in the
        # room's broadcast below must not keep a slot of the player's connections for good.
        if close.counted:
            await store.user_conn_remove(close.user_id, close.conn)
            close.counted = False
        if close.in_room:
            await services.room_disconnect(code=close.code, user_id=close.user_id, conn=close.conn)
            close.in_room = False
    except _UNAVAILABLE:
        if first:
            logger.warning(
                "connection close not recorded (Redis unavailable); retrying after each heartbeat",
                exc_info=True,
                extra={"event": "ws_close_deferred", "room": close.code, "user_id": close.user_id},
            )
        return False
    except Exception:
        # Not Redis being away: a bug, which trying again would only repeat.
        logger.exception(
            "connection close failed",
            extra={"event": "ws_close_failed", "room": close.code, "user_id": close.user_id},
        )
    return True
