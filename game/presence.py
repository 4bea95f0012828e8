"""This web process's presence in Redis: its heartbeat, the closes Redis missed, and the
connections the sweeper took out of their rooms while this process lived.

Rooms count a connection as connected while its id ("<instance>|<channel>") is in the
room's document. The sweeper drops the connections of a process whose heartbeat has
expired (a process that died); a process that lives records its own closes. When Redis
cannot take a close at that moment (Redis restarting, a network blip), the close is kept
here and recorded again after each heartbeat until it is: otherwise the player would stay
"connected" for as long as this process lives — every round would wait for their answer
until its deadline, and a room they all left would never be abandoned.

A heartbeat can also go missing while the process lives: Redis restarted without its data,
Redis (or the way to it) was away for longer than the heartbeat's TTL, the process stalled.
The sweeper then takes the process's open connections out of their rooms as if it had
died — `player_left` for players still playing, rounds that no longer wait for them, and a
room whose connections were all taken abandoned 60 s later, results lost. So a heartbeat
that finds its key gone puts this process's open connections back in their rooms
(`ws_conn_restored`), and closes with 4404 those whose room is gone with Redis's data
(`ws_room_gone`): without that they stayed open on a room that no longer existed, hearing
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

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


class Present(Protocol):
    """An open connection admitted to its room (RoomConsumer)."""

    code: str
    user_id: int
    user_name: str
    conn: str

    async def room_gone(self) -> None: ...


# This process's open connections that are in their rooms (between the handshake's admission
# and the disconnect), to put back in their rooms if the sweeper took them out.
_open: weakref.WeakSet[Any] = weakref.WeakSet()


def connection_opened(connection: Present) -> None:
    """Remember an admitted connection (until connection_forget)."""
    _open.add(connection)


def connection_forget(connection: Present) -> None:
    """Forget a connection that is closing."""
    _open.discard(connection)


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
    restore_pending = False
    while True:
        try:
            if not await store.instance_heartbeat(INSTANCE_ID, HEARTBEAT_TTL_SECONDS):
                restore_pending = True
        except Exception:
            logger.warning(
                "instance heartbeat failed", exc_info=True, extra={"event": "instance_heartbeat_failed"}
            )
        else:
            await closes_retry()
            if restore_pending:
                restore_pending = await connections_restore() is None
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def connections_restore() -> int | None:
    """Put this process's open connections back in their rooms; how many were missing, or
    None if Redis went away before every one was checked (the next heartbeat goes on).

    Called when the process's heartbeat had lapsed (its key was gone): the sweeper may have
    taken its connections out of their rooms. A connection whose room is gone (Redis lost
    its data) is closed with 4404. Its heartbeat is current again before this runs, so the
    sweeper does not take them out again.
    """
    restored = 0
    for connection in list(_open):
        code, user_id = connection.code, connection.user_id
        try:
            if await services.room_reconnect(
                code=code, user_id=user_id, name=connection.user_name, conn=connection.conn
            ):
                restored += 1
        except store.RoomNotFound:
            _open.discard(connection)
            logger.warning(
                "room gone from Redis under an open connection; closing it (4404)",
                extra={"event": "ws_room_gone", "room": code, "user_id": user_id},
            )
            try:
                await connection.room_gone()
            except Exception:
                logger.warning(
                    "closing a connection whose room is gone failed",
                    exc_info=True,
                    extra={"event": "ws_room_gone", "room": code, "user_id": user_id},
                )
        except _UNAVAILABLE:
            logger.warning(
                "connections not restored (Redis unavailable); trying again after the next heartbeat",
                exc_info=True,
                extra={"event": "instance_heartbeat_failed"},
            )
            return None
        except Exception:
            logger.exception(
                "restoring a connection failed",
                extra={"event": "ws_conn_restore_failed", "room": code, "user_id": user_id},
            )
    if restored:
        logger.warning(
            "heartbeat had lapsed: %s open connections put back in their rooms",
            restored,
            extra={"event": "ws_conn_restored", "count": restored},
        )
    return restored


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
