"""The default channel layer (game/channel_layer.py) keeps channels-redis's promises in fewer round trips."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import pytest
from channels.layers import get_channel_layer
from prometheus_client import REGISTRY

from game import channel_layer


def test_it_is_the_default_layer():
    assert isinstance(get_channel_layer(), channel_layer.RedisChannelLayer)


@pytest.fixture
def small_layer(settings: Any) -> channel_layer.RedisChannelLayer:
    """A layer of capacity 2 (and the same Redis and prefix as the test's)."""
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["small"] = copy.deepcopy(layers["default"])
    layers["small"]["CONFIG"]["capacity"] = 2
    settings.CHANNEL_LAYERS = layers
    layer = get_channel_layer("small")
    assert isinstance(layer, channel_layer.RedisChannelLayer)
    return layer


async def test_a_group_send_reaches_every_channel_of_every_process_in_order():
    layer = get_channel_layer()
    here = [await layer.new_channel() for _ in range(3)]
    elsewhere = "specific.otherprocess!abc"  # another process's channel: its own key
    named = "plain-channel"
    for channel in [*here, elsewhere, named]:
        await layer.group_add("room.G1", channel)
    for i in range(5):
        await layer.group_send("room.G1", {"type": "room.event", "n": i})
    for channel in here:
        assert [(await layer.receive(channel))["n"] for _ in range(5)] == list(range(5))
    assert [(await layer.receive(named))["n"] for _ in range(5)] == list(range(5))
    other = [await layer.receive_single("specific.otherprocess!") for _ in range(5)]
    assert [(chans, m["n"]) for chans, m in other] == [([elsewhere], i) for i in range(5)]


async def test_a_discarded_or_expired_member_gets_nothing(settings):
    layer = get_channel_layer()
    layer.group_expiry = 1
    kept, gone, old = [await layer.new_channel() for _ in range(3)]
    for channel in (kept, gone, old):
        await layer.group_add("room.G2", channel)
    await layer.group_discard("room.G2", gone)
    # An old membership: the layer forgets members after group_expiry.
    await layer.connection(0).zadd(layer._group_key("room.G2"), {old: time.time() - 10})
    await layer.group_send("room.G2", {"type": "room.event", "n": 1})
    assert (await layer.receive(kept))["n"] == 1
    for channel in (gone, old):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await layer.receive(channel)


async def test_messages_over_capacity_are_dropped_and_counted(small_layer):
    before = REGISTRY.get_sample_value("nuxtest_channel_layer_dropped_messages_total") or 0.0
    channel = await small_layer.new_channel()
    await small_layer.group_add("room.G3", channel)
    for i in range(4):
        await small_layer.group_send("room.G3", {"type": "room.event", "n": i})
    assert REGISTRY.get_sample_value("nuxtest_channel_layer_dropped_messages_total") == before + 2
    assert [(await small_layer.receive(channel))["n"] for _ in range(2)] == [0, 1]


async def test_expired_messages_are_not_delivered():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("room.G4", channel)
    layer.expiry = 1
    await layer.group_send("room.G4", {"type": "room.event", "n": 0})
    # Two seconds later the first message has expired; the next send drops it.
    key = layer.prefix + layer.non_local_name(channel)
    await layer.connection(0).zadd(
        key, {m: s - 5 for m, s in await layer.connection(0).zrange(key, 0, -1, withscores=True)}
    )
    await layer.group_send("room.G4", {"type": "room.event", "n": 1})
    assert (await layer.receive(channel))["n"] == 1


async def test_with_several_redis_hosts_it_is_channels_redis_own_and_still_delivers(settings):
    config = copy.deepcopy(settings.CHANNEL_LAYERS["default"]["CONFIG"])
    config["hosts"] = [settings.REDIS_URL, settings.REDIS_URL]
    layer = channel_layer.RedisChannelLayer(**config)
    try:
        channels = [await layer.new_channel(), "plain-channel-2"]
        for channel in channels:
            await layer.group_add("room.G5", channel)
        await layer.group_send("room.G5", {"type": "room.event", "n": 7})
        for channel in channels:
            assert (await layer.receive(channel))["n"] == 7
        assert not layer._popped  # channels-redis's own receive did it
    finally:
        await layer.flush()
        await layer.close_pools()
