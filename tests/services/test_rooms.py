"""Rooms: creation and its validation, joining, connections and disconnections (game/services.py)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from game import events, services, store
from game.engine import rules
from game.engine.model import room_to_dict
from game.models import Category, Question
from tests.play import PLAYING, conn_id, connect, disconnect, room_dict, room_new, users

pytestmark = PLAYING

DEFAULTS = {"rounds": 5, "answer_seconds": 10.0, "reveal_seconds": 3.0, "max_players": 8, "category": None}


# --- Creation -------------------------------------------------------------------------------------


async def test_a_new_room_is_stored_in_its_lobby_with_the_default_settings_and_nobody_in_it(make_user):
    (alice,) = await users(make_user, "alice")
    room = await services.room_create(host_id=alice.pk, settings_raw={})
    assert rules.code_is_valid(room.code)
    stored = await services.room_get(code=room.code)
    assert stored == room
    assert (stored.status, stored.host, stored.players, stored.seq, stored.quick) == (
        "lobby",
        alice.pk,
        [],
        0,
        False,
    )
    summary = services.room_summary(stored)
    assert summary["settings"] == DEFAULTS
    assert (summary["status"], summary["round"], summary["players"]) == ("lobby", None, [])
    assert room.code in await store.rooms_active()


async def test_a_dropped_room_is_gone_and_no_longer_swept(make_user):
    (alice,) = await users(make_user, "alice")
    kept = await services.room_create(host_id=alice.pk, settings_raw={})
    dropped = await services.room_create(host_id=alice.pk, settings_raw={})
    await store.room_drop(dropped.code)
    assert not await store.room_exists(dropped.code)
    assert await store.room_exists(kept.code)
    assert await store.rooms_active() == [kept.code]


async def test_settings_at_the_ends_of_their_ranges_are_kept_as_given(make_user):
    (alice,) = await users(make_user, "alice")
    low: dict[str, Any] = {
        "rounds": 1,
        "answer_seconds": 0.5,
        "reveal_seconds": 0,
        "max_players": 1,
        "category": "general",
    }
    high: dict[str, Any] = {"rounds": 20, "answer_seconds": 60, "reveal_seconds": 10, "max_players": 8}
    fractions: dict[str, Any] = {"answer_seconds": 7.25, "reveal_seconds": 0.1}
    for raw in (low, high, fractions):
        room = await services.room_create(host_id=alice.pk, settings_raw=raw)
        settings = services.room_summary(await services.room_get(code=room.code))["settings"]
        assert settings == {**DEFAULTS, **{k: float(v) if "seconds" in k else v for k, v in raw.items()}}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rounds", 21),
        ("rounds", "5"),
        ("rounds", 10**400),
        ("answer_seconds", 0.49),
        ("answer_seconds", math.nan),
        ("reveal_seconds", 10.5),
        ("max_players", 0),
        ("category", "no-such-category"),
        ("colour", "red"),
    ],
)
async def test_a_setting_out_of_its_range_or_type_is_refused_naming_it_and_nothing_is_stored(
    make_user, field, value
):
    (alice,) = await users(make_user, "alice")
    with pytest.raises(rules.SettingsError) as refused:
        await services.room_create(host_id=alice.pk, settings_raw={field: value})
    assert refused.value.field == field
    assert field in str(refused.value)
    assert await store.rooms_active() == []


async def test_a_category_with_fewer_questions_than_rounds_is_refused_and_one_with_enough_is_not(make_user):
    (alice,) = await users(make_user, "alice")

    def tiny_category() -> None:
        tiny = Category.objects.create(slug="tiny", name="Tiny")
        for i in range(3):
            Question.objects.create(category=tiny, text=f"Tiny {i}?", options=["a", "b", "c", "d"], correct=0)

    await sync_to_async(tiny_category)()
    with pytest.raises(rules.SettingsError) as refused:
        await services.room_create(host_id=alice.pk, settings_raw={"category": "tiny", "rounds": 4})
    assert refused.value.field == "category"
    room = await services.room_create(host_id=alice.pk, settings_raw={"category": "tiny", "rounds": 3})
    assert room.settings.category == "tiny"


async def test_more_rounds_than_the_whole_bank_has_questions_is_refused_on_rounds(make_user):
    (alice,) = await users(make_user, "alice")
    # (The ids are read first: MariaDB refuses a LIMIT inside an IN subquery.)
    await sync_to_async(
        lambda: Question.objects.filter(
            id__in=list(Question.objects.values_list("id", flat=True)[:20])
        ).delete()
    )()
    with pytest.raises(rules.SettingsError) as refused:
        await services.room_create(host_id=alice.pk, settings_raw={"rounds": 5})
    assert refused.value.field == "rounds"
    await services.room_create(host_id=alice.pk, settings_raw={"rounds": 4})


async def test_every_room_gets_its_own_code(make_user):
    (alice,) = await users(make_user, "alice")
    codes = [await room_new(alice) for _ in range(40)]
    assert len(set(codes)) == 40
    assert sorted(codes) == await store.rooms_active()


async def test_an_unknown_room_is_not_found(make_user):
    (alice,) = await users(make_user, "alice")
    with pytest.raises(store.RoomNotFound):
        await services.room_get(code="ZZZZZZ")
    with pytest.raises(store.RoomNotFound):
        await connect("ZZZZZZ", alice)
    # Leaving a room that is gone is not an error: the socket is closing anyway.
    await disconnect("ZZZZZZ", alice)


# --- Joining and connections -------------------------------------------------------------------


async def test_a_first_connection_makes_a_member_announces_player_joined_and_returns_the_state(
    make_user, listen
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    listener = await listen(code)
    state = await connect(code, bob)
    assert state["type"] == "state" and state["room"] == code and state["status"] == "lobby"
    assert state["host"] == alice.pk and state["round"] is None and state["question"] is None
    assert state["players"] == [{"id": bob.pk, "name": "bob", "connected": True, "score": 0}]
    assert state["seq"] == 1 and isinstance(state["server_time"], int)
    assert await listener.next() == {
        "type": "player_joined",
        "player": {"id": bob.pk, "name": "bob"},
        "seq": 1,
    }
    # The host is a member from their first connection too, and members keep join order.
    state = await connect(code, alice)
    assert [p["id"] for p in state["players"]] == [bob.pk, alice.pk]
    assert (await listener.next())["player"] == {"id": alice.pk, "name": "alice"}


async def test_more_connections_of_a_member_are_announced_and_add_no_member(make_user, listen):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    await connect(code, bob)
    listener = await listen(code)
    state = await connect(code, bob, tab=2)
    assert state["seq"] == 2 and len(state["players"]) == 1
    assert await listener.next() == {
        "type": "player_joined",
        "player": {"id": bob.pk, "name": "bob"},
        "seq": 2,
    }
    # The same connection id again is the same connection.
    await connect(code, bob, tab=2)
    room = await services.room_get(code=code)
    assert room.seq == 2 and room.players[0].conns == [conn_id(bob), conn_id(bob, tab=2)]
    assert await listener.drain(0.1) == []


async def test_player_left_is_announced_when_the_last_connection_closes_and_the_member_stays(
    make_user, listen
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    await connect(code, alice)
    await connect(code, bob)
    await connect(code, bob, tab=2)
    listener = await listen(code)
    await disconnect(code, bob)
    assert await listener.drain(0.1) == []
    await disconnect(code, bob, tab=2)
    assert await listener.next() == {"type": "player_left", "player": {"id": bob.pk, "name": "bob"}, "seq": 4}
    room = await services.room_get(code=code)
    assert [(p.id, p.connected) for p in room.players] == [(alice.pk, True), (bob.pk, False)]
    assert room.empty_since is None
    # Closing a connection that is not open changes nothing.
    before = await room_dict(code)
    await disconnect(code, bob, tab=2)
    await disconnect(code, alice, tab=9)
    assert await room_dict(code) == before


async def test_a_room_nobody_is_connected_to_knows_since_when(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    created = (await services.room_get(code=code)).created_at
    assert (await services.room_get(code=code)).empty_since == created
    await connect(code, alice)
    assert (await services.room_get(code=code)).empty_since is None
    before = services.now_ms()
    await disconnect(code, alice)
    empty_since = (await services.room_get(code=code)).empty_since
    assert empty_since is not None and before <= empty_since <= services.now_ms()


async def test_a_full_room_refuses_a_new_player_but_takes_back_a_member(make_user):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await room_new(alice, max_players=2)
    await connect(code, alice)
    await connect(code, bob)
    await disconnect(code, bob)
    before = await room_dict(code)
    with pytest.raises(rules.RoomFull):
        await connect(code, carol)
    assert await room_dict(code) == before
    state = await connect(code, bob, tab=2)
    assert [p["connected"] for p in state["players"]] == [True, True]


async def test_a_started_game_refuses_a_new_player_but_takes_back_a_member(make_user):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await room_new(alice, answer_seconds=60)
    await connect(code, alice)
    await connect(code, bob)
    await services.game_start(code=code, by=alice.pk)
    await disconnect(code, bob)
    before = await room_dict(code)
    with pytest.raises(rules.GameAlreadyStarted):
        await connect(code, carol)
    assert await room_dict(code) == before
    state = await connect(code, bob, tab=2)
    assert state["status"] == "playing" and state["round"] == 1
    assert state["question"]["answered"] is False


async def test_nine_players_joining_a_room_of_eight_at_once_make_eight_members_each_announced_once(
    make_user, listen
):
    people = await users(make_user, *(f"p{i}" for i in range(9)))
    code = await room_new(people[0])
    listener = await listen(code)
    outcomes = await asyncio.gather(*(connect(code, p) for p in people), return_exceptions=True)
    refused = [p for p, o in zip(people, outcomes, strict=True) if isinstance(o, BaseException)]
    assert len(refused) == 1 and isinstance(outcomes[people.index(refused[0])], rules.RoomFull)
    states = [o for o in outcomes if isinstance(o, dict)]
    room = await services.room_get(code=code)
    members = sorted(p.pk for p in people if p not in refused)
    assert sorted(p.id for p in room.players) == members
    assert room.seq == 8 and sorted(s["seq"] for s in states) == list(range(1, 9))
    heard = await listener.until_seq(8)
    assert sorted(f["player"]["id"] for f in heard) == members
    assert await listener.drain(0.1) == []


async def test_the_stored_room_is_the_engine_format_with_its_version(make_user):
    # The store encodes with orjson for speed; what it writes must stay room_to_dict's JSON.
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    raw = await store.client().get(store.key("room", code))
    room = await services.room_get(code=code)
    assert json.loads(raw) == json.loads(json.dumps(room_to_dict(room)))


async def test_a_process_forgets_rooms_it_has_not_touched_for_two_minutes_and_keeps_at_most_1024(
    monkeypatch,
):
    clock = [1000.0]
    monkeypatch.setattr(store.time, "monotonic", lambda: clock[0])
    store._known().clear()
    store._remember("old", b"{}")
    clock[0] += store._KNOWN_ROOMS_SECONDS + 1
    store._remember("new", b"{}")
    assert list(store._known()) == ["new"]
    for i in range(store._KNOWN_ROOMS_MAX + 10):
        store._remember(f"room{i}", b"{}")
    known = store._known()
    assert len(known) == store._KNOWN_ROOMS_MAX
    assert "new" not in known and f"room{store._KNOWN_ROOMS_MAX + 9}" in known
    store._remember("room20", b"{}", ended=True)
    assert "room20" not in known


# --- Publication order ----------------------------------------------------------------------------


def slow_group_send(monkeypatch: pytest.MonkeyPatch, slow_seq: int, seconds: float) -> None:
    """The channel layer's group_send takes `seconds` longer for the frame with seq `slow_seq`."""
    layer = get_channel_layer()
    original = layer.group_send

    async def group_send(group: str, message: dict) -> None:
        if message["frame"]["seq"] == slow_seq:
            await asyncio.sleep(seconds)
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)


async def test_a_rooms_broadcasts_leave_one_process_in_seq_order_when_an_earlier_one_is_slow(
    make_user, listen, monkeypatch
):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await room_new(alice)
    for person in (alice, bob, carol):
        await connect(code, person)
    listener = await listen(code)
    # Bob's player_left (seq 4) is written first and its group_send is slow; Carol's (seq 5)
    # would overtake it, and every player would see a gap.
    slow_group_send(monkeypatch, slow_seq=4, seconds=0.3)
    await asyncio.gather(disconnect(code, bob), disconnect(code, carol))
    frames = [await listener.next(), await listener.next()]
    assert [(f["seq"], f["player"]["id"]) for f in frames] == [(4, bob.pk), (5, carol.pk)]


async def test_a_place_in_the_order_never_published_holds_the_next_broadcast_once_and_briefly(
    make_user, listen, monkeypatch, caplog
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    await connect(code, alice)
    await connect(code, bob)
    listener = await listen(code)
    monkeypatch.setattr(events, "_ORDER_WAIT_SECONDS", 0.2)
    loop = asyncio.get_running_loop()
    # A transition that took its place (seq 2) and failed before it published.
    events.order(code, [{"type": "player_joined", "seq": 2}])
    started = loop.time()
    await disconnect(code, bob)  # player_left, seq 3: waits for seq 2, gives up, goes out
    assert (await listener.next())["seq"] == 3
    assert loop.time() - started >= 0.2
    assert [r for r in caplog.records if getattr(r, "event", None) == "publish_order_timeout"]
    started = loop.time()
    await connect(code, bob)  # the stale place is gone: no wait
    assert (await listener.next())["seq"] == 4
    assert loop.time() - started < 0.2
