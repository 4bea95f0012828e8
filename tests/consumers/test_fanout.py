"""One subscription per process and room: the hub (game/fanout.py) fans broadcasts out here."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from autobahn.exception import Disconnected
from channels.layers import get_channel_layer
from django.conf import settings

from game import events, fanout, services
from game.channel_layer import RedisChannelLayer
from nuxtest.embedded import start_embedded_redis
from tests.conftest import recv, ws_join
from tests.consumers.test_ordering import publish_raw
from tests.play import PLAYING, lobby_sockets, room_new, sockets_close, sockets_open, users

pytestmark = PLAYING


async def group_members(code: str) -> list[str]:
    """The channel names subscribed to the room's group, read from Redis."""
    layer = get_channel_layer()
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        return [m.decode() for m in await client.zrange(layer._group_key(events.room_group(code)), 0, -1)]
    finally:
        await client.aclose()


async def test_a_room_is_one_subscription_per_process_whatever_its_players(make_user):
    code, socks = await lobby_sockets(make_user, 4)
    assert await group_members(code) == [fanout.hub(get_channel_layer()).channel]
    # A player of the same room served by another web process subscribes that process too.
    (zed,) = await users(make_user, "zed")
    (other,) = await sockets_open(code, zed, web=2)
    assert len(await group_members(code)) == 2
    await sockets_close([other, *socks[1:]])
    assert await group_members(code) == [fanout.hub(get_channel_layer()).channel]
    await socks[0].close()
    assert await group_members(code) == []


async def test_players_leaving_together_leave_no_buffered_message_behind(make_user):
    # channels-redis keeps a buffer per channel name; with a channel per connection, a
    # broadcast reaching a connection that had stopped reading stayed there for good
    # (django/channels_redis#384). The hub's channel is the only one, always read.
    (zed,) = await users(make_user, "zed")
    (watcher,) = await sockets_open(await room_new(zed), zed)
    _, socks = await lobby_sockets(make_user, 6)
    await asyncio.gather(*(s.close() for s in socks))
    await asyncio.sleep(0.3)
    await watcher.sync()
    layer = get_channel_layer()
    assert sum(q.qsize() for q in layer.receive_buffer.values()) == 0
    assert set(layer.receive_buffer) <= {fanout.hub(layer).channel}
    await watcher.close()


async def test_a_broadcast_that_comes_before_the_state_goes_out_after_it(make_user, monkeypatch):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    real = services.room_connect

    async def connect_then_broadcast(**kwargs: Any) -> dict[str, Any]:
        snapshot = await real(**kwargs)
        # Another transition of the room, delivered by the hub while the handshake goes on.
        await publish_raw(code, snapshot["seq"] + 1)
        await asyncio.sleep(0.2)
        return snapshot

    monkeypatch.setattr(services, "room_connect", connect_then_broadcast)
    comm, state = await ws_join(code, alice)
    try:
        frame = await recv(comm)
        assert (frame["type"], frame["seq"]) == ("player_left", state["seq"] + 1)
    finally:
        await comm.disconnect()


class Recorder:
    def __init__(self, user_id: int, fail: Exception | None = None) -> None:
        self.user_id = user_id
        self.fail = fail
        self.got: list[int] = []

    async def wait(self, timeout: float = 2.0) -> None:
        """Until a broadcast has come (or the timeout)."""
        for _ in range(int(timeout / 0.02)):
            if self.got:
                return
            await asyncio.sleep(0.02)

    async def room_event(self, message: dict[str, Any]) -> None:
        if self.fail is not None:
            raise self.fail
        self.got.append(message["frame"]["seq"])


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (RuntimeError("a bug"), True),
        # Closed under the send: Daphne's (autobahn) and the ASGI spec's errors; not a warning.
        (Disconnected("Attempt to send on a closed protocol"), False),
        (ConnectionResetError("the socket went away under it"), False),
    ],
)
async def test_a_connection_that_fails_a_broadcast_does_not_cost_the_others_theirs(caplog, error, logged):
    hub = fanout.hub(get_channel_layer())
    broken, fine = Recorder(1, fail=error), Recorder(2)
    await hub.join("ABCDEF", broken)
    await hub.join("ABCDEF", fine)
    try:
        await publish_raw("ABCDEF", 1)
        await fine.wait()
        assert fine.got == [1]
        failed = [r for r in caplog.records if getattr(r, "event", "") == "broadcast_forward_failed"]
        assert [r.user_id for r in failed] == ([1] if logged else [])
    finally:
        await hub.leave("ABCDEF", broken)
        await hub.leave("ABCDEF", fine)


async def test_a_join_racing_the_last_leave_ends_subscribed():
    hub = fanout.hub(get_channel_layer())
    first, second = Recorder(1), Recorder(2)
    for _ in range(5):
        await hub.join("ABCDEF", first)
        await asyncio.gather(hub.leave("ABCDEF", first), hub.join("ABCDEF", second))
        assert await group_members("ABCDEF") == [hub.channel]
        await hub.leave("ABCDEF", second)
        assert await group_members("ABCDEF") == []
    assert hub._locks == {}


async def test_a_broadcast_the_hub_cannot_read_does_not_stop_the_next_ones(caplog):
    layer = get_channel_layer()
    hub = fanout.hub(layer)
    listener = Recorder(3)
    await hub.join("ABCDEF", listener)
    try:
        await layer.group_send(events.room_group("ABCDEF"), {"type": "room.event", "room": "ABCDEF"})
        await publish_raw("ABCDEF", 1)
        await listener.wait()
        assert listener.got == [1]
        assert [r for r in caplog.records if getattr(r, "event", "") == "fanout_deliver_failed"]
    finally:
        await hub.leave("ABCDEF", listener)


async def test_a_leave_while_redis_is_away_is_logged_and_the_connection_forgotten(caplog):
    # A Redis of this test's own, stopped between the join and the leave.
    proc, url, workdir = start_embedded_redis()
    hub: fanout.Hub | None = None
    try:
        hub = fanout.hub(RedisChannelLayer(hosts=[url], prefix=f"t{uuid.uuid4().hex[:8]}"))
        listener = Recorder(4)
        await hub.join("ABCDEF", listener)
        proc.terminate()
        proc.wait(10)
        await hub.leave("ABCDEF", listener)  # does not raise into the consumer's disconnect
        assert "ABCDEF" not in hub.rooms
        failed = [r for r in caplog.records if getattr(r, "event", "") == "fanout_unsubscribe_failed"]
        assert [r.room for r in failed] == ["ABCDEF"]
    finally:
        if hub is not None and hub.task is not None:
            hub.task.cancel()
        proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
