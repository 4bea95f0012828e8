"""Broadcasts reach each connection in `seq` order even when two publishers race."""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer
from prometheus_client import REGISTRY

from game import events
from tests.conftest import recv, ws_join
from tests.play import room_new, users


async def publish_raw(code: str, seq: int) -> None:
    frame: dict[str, Any] = {"type": "player_left", "player": {"id": 0, "name": f"ghost{seq}"}, "seq": seq}
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(events.room_group(code), {"type": "room.event", "room": code, "frame": frame})


async def alone_in_a_room(make_user: Any) -> tuple[str, Any, int]:
    """A room with one player connected: its code, the player's socket, the `seq` of its state."""
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    comm, state = await ws_join(code, alice)
    return code, comm, state["seq"]


async def test_a_broadcast_that_overtakes_an_earlier_one_is_held_until_it_arrives(make_user):
    code, comm, seq = await alone_in_a_room(make_user)
    try:
        await publish_raw(code, seq + 2)
        await publish_raw(code, seq + 1)
        assert [(await recv(comm))["seq"] for _ in range(2)] == [seq + 1, seq + 2]
    finally:
        await comm.disconnect()


async def test_a_real_gap_is_forwarded_after_the_wait_so_the_client_can_resync(make_user, settings, caplog):
    # Long enough for the second publish to arrive within it on a busy machine.
    settings.NUXTEST_WS_REORDER_MS = 200
    code, comm, seq = await alone_in_a_room(make_user)
    gaps = REGISTRY.get_sample_value("nuxtest_ws_broadcast_gaps_total") or 0.0
    try:
        await publish_raw(code, seq + 3)
        await publish_raw(code, seq + 2)
        # seq + 1 never comes: the held frames go out in order once the wait is over.
        assert [(await recv(comm))["seq"] for _ in range(2)] == [seq + 2, seq + 3]
        # ... and the server says so: one broadcast this connection never sent.
        assert REGISTRY.get_sample_value("nuxtest_ws_broadcast_gaps_total") == gaps + 1
        (line,) = [r for r in caplog.records if getattr(r, "event", None) == "broadcast_gap"]
        assert (line.missing, line.seq) == (1, seq + 2)
        await publish_raw(code, seq + 1)  # too late: already passed, dropped
        await publish_raw(code, seq + 4)
        assert (await recv(comm))["seq"] == seq + 4
    finally:
        await comm.disconnect()


async def test_a_second_gap_gets_a_wait_of_its_own(make_user, settings):
    # Held past two gaps at once, the wait's end forwarded everything: the second gap had
    # waited only what was left of the first's wait, and its frame, arriving just after, was
    # dropped as old.
    settings.NUXTEST_WS_REORDER_MS = 200
    code, comm, seq = await alone_in_a_room(make_user)
    gaps = REGISTRY.get_sample_value("nuxtest_ws_broadcast_gaps_total") or 0.0
    try:
        await publish_raw(code, seq + 2)
        await publish_raw(code, seq + 4)
        assert (await recv(comm))["seq"] == seq + 2  # seq + 1 never comes
        await publish_raw(code, seq + 3)  # within the second gap's own wait
        assert [(await recv(comm))["seq"] for _ in range(2)] == [seq + 3, seq + 4]
        assert REGISTRY.get_sample_value("nuxtest_ws_broadcast_gaps_total") == gaps + 1
    finally:
        await comm.disconnect()
