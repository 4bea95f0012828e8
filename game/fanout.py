"""A room's broadcasts reach this process once and are fanned out to its connections here.

Each web process (each channel layer, in the tests' simulated processes) has one hub: one
channel-layer channel, subscribed to the group of every room that has a connection in this
process, and one task that receives from it and hands each broadcast to the room's local
connections (`RoomConsumer.room_event`). Before, every connection had a channel of its own
in the room's group: channels-redis already sent one Redis message per process, but then
woke every connection's own receive (two tasks and a wait each) and made a span per
connection, and a connection cancelled while closing could lose a message meant for all the
others of its process (django/channels_redis#366). Now a broadcast costs one receive per
process and one `ws.broadcast` span per process, whatever the number of players
(docs/performance.md).

Only this module subscribes connections to rooms; only `events` publishes to them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from game import aio, events, transport
from game.telemetry import tracing

logger = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0


class Listener(Protocol):
    """A connection of this process to a room (RoomConsumer)."""

    user_id: int

    async def room_event(self, message: dict[str, Any]) -> None: ...


class Hub:
    """This process's subscription to its rooms' groups, and the fan-out to its connections."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        # Room code -> its connections here, in join order (a dict as an ordered set).
        self.rooms: dict[str, dict[Listener, None]] = {}
        # Group add/discard of one room one at a time, so a join racing the last leave can
        # not end unsubscribed; with the number of callers holding or awaiting each lock.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def join(self, code: str, listener: Listener) -> None:
        """Subscribe `listener` to the room's broadcasts; they may start before this returns."""
        await self._start()
        async with self._room_lock(code):
            members = self.rooms.setdefault(code, {})
            members[listener] = None
            try:
                # Every join re-adds the process (the layer forgets members after its
                # group_expiry), the first one subscribes it.
                await self.layer.group_add(events.room_group(code), self.channel)
            except BaseException:
                self._forget(code, listener)
                raise

    async def leave(self, code: str, listener: Listener) -> None:
        """Stop the listener's broadcasts; the room's last connection here unsubscribes the process."""
        async with self._room_lock(code):
            if not self._forget(code, listener) or code in self.rooms:
                return
            try:
                await self.layer.group_discard(events.room_group(code), self.channel)
            except Exception:
                # Redis away at a disconnect: the connection is forgotten here all the same,
                # so it gets nothing more. The process stays in the group until the layer's
                # group expiry (its broadcasts find no one here) or until the room's next
                # join and leave here discard it again.
                logger.warning(
                    "unsubscribing the process from a room failed",
                    exc_info=True,
                    extra={"event": "fanout_unsubscribe_failed", "room": code},
                )

    def _forget(self, code: str, listener: Listener) -> bool:
        members = self.rooms.get(code)
        if members is None or listener not in members:
            return False
        del members[listener]
        if not members:
            del self.rooms[code]
        return True

    def _room_lock(self, code: str) -> _RoomLock:
        return _RoomLock(self, code)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.task is not None and not self.task.done() and self.loop is loop:
            return
        if self.channel is None:
            # A process channel like any other: with channels-redis, every receiver of the
            # process then reads one Redis key, so none waits on another's blocking pop.
            channel = await self.layer.new_channel()
            self.channel = self.channel or channel
        if self.task is not None and not self.task.done() and self.loop is loop:
            return  # another join started it meanwhile
        self.loop = loop
        self.task = aio.process_task(self._run(), name="nuxtest-fanout")

    async def _run(self) -> None:
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis away: the rooms' state is there too, so nothing can be played; the
                # connections' own frames report it. Keep listening for when it is back.
                logger.warning(
                    "broadcast receive failed; retrying",
                    exc_info=True,
                    extra={"event": "fanout_receive_failed"},
                )
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            try:
                await self.deliver(message)
            except Exception:
                # A message this code cannot read must not end every connection's broadcasts.
                logger.exception("broadcast not delivered", extra={"event": "fanout_deliver_failed"})

    async def deliver(self, message: dict[str, Any]) -> None:
        """Hand one broadcast to every connection of its room in this process, in join order."""
        code = message.get("room")
        if not isinstance(code, str):
            return
        members = list(self.rooms.get(code, ()))
        if not members:
            return  # the last connection left while it was on its way
        frame = message["frame"]
        with (
            tracing.attach_remote(message.get("trace")),
            tracing.span(
                "ws.broadcast",
                {
                    **tracing.broadcast_attributes(code, frame),
                    "nuxtest.connections": len(members),
                    # The players it reaches (enduser.id names one user; a broadcast has many).
                    "nuxtest.players": sorted({m.user_id for m in members}),
                },
            ),
        ):
            for member in members:
                try:
                    await member.room_event(message)
                except Exception as exc:
                    if transport.send_failed_on_close(exc):
                        # Closed while the broadcast was on its way: nothing to tell (its
                        # close is logged, and a reconnecting client gets a fresh state).
                        continue
                    # One connection failing must not cost the others.
                    logger.warning(
                        "broadcast not forwarded to a connection",
                        exc_info=True,
                        extra={"event": "broadcast_forward_failed", "room": code, "user_id": member.user_id},
                    )


class _RoomLock:
    """One room's lock in a hub, dropped when nobody holds or awaits it."""

    def __init__(self, hub: Hub, code: str) -> None:
        self.hub = hub
        self.code = code

    async def __aenter__(self) -> None:
        lock, users = self.hub._locks.get(self.code, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self.hub._locks[self.code] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._release_user(lock)
            raise

    async def __aexit__(self, *exc: object) -> None:
        lock, _ = self.hub._locks[self.code]
        lock.release()
        self._release_user(lock)

    def _release_user(self, lock: asyncio.Lock) -> None:
        _, users = self.hub._locks[self.code]
        if users <= 1:
            del self.hub._locks[self.code]
        else:
            self.hub._locks[self.code] = (lock, users - 1)


def hub(layer: Any) -> Hub:
    """The hub of this channel layer (one per layer, so one per process in production)."""
    found = getattr(layer, "_nuxtest_hub", None)
    if found is None:
        found = Hub(layer)
        layer._nuxtest_hub = found
    return found
