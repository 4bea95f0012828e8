"""Ended connections leave nothing behind in the channel layer's per-channel buffers.

channels-redis keeps a buffer per channel name in each process; a broadcast that reaches a
connection's channel after it stopped reading (players leaving together, each one's
`player_left` crossing the others' exits) lands in a buffer nobody reads again
(django/channels_redis#384) — a soak run showed the web process growing with every exit.
"""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer

from game import consumers
from tests.play import PLAYING, lobby_sockets, room_new, sockets_open, users

pytestmark = PLAYING


def buffers() -> dict[str, int]:
    """Buffered messages by channel, in this process's default channel layer."""
    return {name: queue.qsize() for name, queue in get_channel_layer().receive_buffer.items()}


async def test_players_leaving_together_leave_no_buffered_message_behind(make_user):
    before = set(buffers())
    # A player elsewhere keeps this process's receive loop reading while the others leave.
    (zed,) = await users(make_user, "zed")
    (watcher,) = await sockets_open(await room_new(zed), zed)
    _, socks = await lobby_sockets(make_user, 6)
    await asyncio.gather(*(s.close() for s in socks))
    await asyncio.sleep(0.5)
    await watcher.sync()  # the receive loop has pulled whatever was on its way
    consumers.receive_buffers_prune()
    left = {name: n for name, n in buffers().items() if name not in before}
    # Only the watcher's own (empty, being waited on) buffer may remain.
    assert sum(left.values()) == 0 and len(left) <= 1, left
    await watcher.close()


def test_ended_channels_are_forgotten_after_the_watch_period():
    consumers._ended.clear()  # the record is in end order; start it with this one alone
    consumers._ended["specific.test!gone"] = (get_channel_layer(), 0.0)
    consumers.receive_buffers_prune(now=consumers.ENDED_WATCH_SECONDS + 1)
    assert "specific.test!gone" not in consumers._ended


def test_the_record_of_ended_channels_stays_bounded_without_a_heartbeat():
    layer = get_channel_layer()
    consumers._ended.clear()
    for i in range(50):
        consumers._ended_add(layer, f"specific.test!old{i}", 0.0)
    consumers._ended_add(layer, "specific.test!new", consumers.ENDED_WATCH_SECONDS + 1)
    assert list(consumers._ended) == ["specific.test!new"]
    consumers._ended.clear()
