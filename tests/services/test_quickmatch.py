"""Quick match: placement in the oldest open room with space (a held seat), membership by connecting,
the 5 s start after the second member, a full room starts."""

from __future__ import annotations

import asyncio
from typing import Any

from game import scheduler, services, store
from game.engine import rules
from tests.play import PLAYING, connect, quick_join, quick_place, room_dict, sleep_past, timers_of, users

pytestmark = PLAYING

QUICK_SETTINGS = {
    "rounds": 5,
    "answer_seconds": 10.0,
    "reveal_seconds": 3.0,
    "max_players": 4,
    "category": None,
}


async def quick_room_open() -> str:
    """An empty quick-match room listed for matchmaking, as quickmatch_place opens them (no host)."""
    room = await services.room_create(host_id=None, settings_raw={"max_players": 4}, quick=True)
    await store.quick_open(room.code, room.created_at)
    return room.code


def holders(room: Any) -> list[int]:
    """The players a room holds seats for (placed, not connected yet)."""
    return [player_id for player_id, _ in room.held]


async def test_the_first_player_opens_a_quick_room_with_default_settings_for_four(make_user):
    (alice,) = await users(make_user, "alice")
    code = await quick_place(alice)
    room = await services.room_get(code=code)
    # Nobody created it, so nobody hosts it: it starts by itself.
    assert room.quick and room.status == "lobby" and room.host is None
    assert services.room_summary(room)["settings"] == QUICK_SETTINGS
    # Placed, not yet a member (GAME.md: a member from the first connection): a held seat.
    assert room.players == [] and holders(room) == [alice.pk]
    assert await store.quick_candidates() == [code]
    await connect(code, alice)
    room = await services.room_get(code=code)
    assert [p.id for p in room.players] == [alice.pk] and room.held == []


async def test_a_player_placed_again_gets_the_same_room_and_one_seat(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_place(alice)
    assert await quick_place(alice) == code
    assert await quick_place(bob) == code
    assert await quick_place(alice) == code
    assert sorted(holders(await services.room_get(code=code))) == sorted([alice.pk, bob.pk])
    await connect(code, alice)
    assert await quick_place(alice) == code  # a member placed again stays
    room = await services.room_get(code=code)
    assert [p.id for p in room.players] == [alice.pk] and holders(room) == [bob.pk]


async def test_the_second_member_to_connect_arms_the_start_timer_five_seconds_ahead(make_user, timers):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await quick_join(alice)
    assert await quick_place(bob) == code
    assert timers_of(timers, scheduler.QUICKMATCH_AUTOSTART) == [], "a placement is not a join"
    assert (await services.room_get(code=code)).next_at is None
    before = services.now_ms()
    await connect(code, bob)
    after = services.now_ms()
    room = await services.room_get(code=code)
    assert room.next_at is not None and before + 5000 <= room.next_at <= after + 5000
    assert timers_of(timers, scheduler.QUICKMATCH_AUTOSTART) == [
        (scheduler.QUICKMATCH_AUTOSTART, [code], room.next_at)
    ]
    assert await quick_join(carol) == code
    assert len(timers_of(timers, scheduler.QUICKMATCH_AUTOSTART)) == 1
    assert (await services.room_get(code=code)).next_at == room.next_at


async def test_a_seat_taken_through_a_shared_link_arms_the_start_timer_too(make_user, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_join(alice)
    await connect(code, bob)
    room = await services.room_get(code=code)
    assert [p.id for p in room.players] == [alice.pk, bob.pk]
    assert timers_of(timers, scheduler.QUICKMATCH_AUTOSTART) == [
        (scheduler.QUICKMATCH_AUTOSTART, [code], room.next_at)
    ]


async def test_the_fourth_member_to_connect_fills_the_room_which_starts_at_once(make_user, listen):
    people = await users(make_user, "p1", "p2", "p3", "p4", "p5")
    code = await quick_join(people[0])
    listener = await listen(code)
    for person in people[1:4]:
        assert await quick_place(person) == code
    assert (await services.room_get(code=code)).status == "lobby", "placements do not start it"
    for person in people[1:4]:
        await connect(code, person)
    room = await services.room_get(code=code)
    assert room.status == "playing" and [p.id for p in room.players] == [p.pk for p in people[:4]]
    frames = await listener.until("question")
    assert [f["type"] for f in frames] == ["player_joined"] * 3 + ["game_started", "question"]
    assert code not in await store.quick_candidates()
    fifth = await quick_place(people[4])
    assert fifth != code
    assert holders(await services.room_get(code=fifth)) == [people[4].pk]


async def test_seats_held_for_placed_players_fill_a_room_until_they_lapse(make_user, settings):
    settings.NUXTEST_QUICK_HOLD_SECONDS = 2
    people = await users(make_user, "p1", "p2", "p3", "p4", "p5", "p6")
    code = await quick_place(people[0])
    assert [await quick_place(p) for p in people[1:4]] == [code] * 3
    # Four held seats: nobody connected, nothing started, and the next player goes elsewhere.
    assert (await services.room_get(code=code)).status == "lobby"
    other = await quick_place(people[4])
    assert other != code
    # Nor can a player who was not placed there take a held seat through a shared link...
    try:
        await connect(code, people[5])
    except rules.RoomFull:
        pass
    else:
        raise AssertionError("a held seat was taken by a player not placed there")
    # ...but a placed player can, and a seat nobody came for is free again once it lapses.
    await connect(code, people[1])
    await sleep_past(max(until for _, until in (await services.room_get(code=code)).held))
    assert await quick_place(people[5]) == code
    room = await services.room_get(code=code)
    assert [p.id for p in room.players] == [people[1].pk] and holders(room) == [people[5].pk]


async def test_nobody_can_start_a_quick_room_early_so_placed_players_are_not_locked_out(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_join(alice)
    assert await quick_place(bob) == code
    try:
        await services.game_start(code=code, by=alice.pk)
    except rules.NotHost as exc:
        assert "starts by itself" in str(exc)
    else:
        raise AssertionError("a quick-match room was started by hand")
    await connect(code, bob)  # bob's held seat is still there to take
    assert [p.id for p in (await services.room_get(code=code)).players] == [alice.pk, bob.pk]


async def test_a_room_about_to_start_takes_no_more_placements(make_user, settings):
    settings.NUXTEST_QUICK_START_SECONDS = 0.5  # under the second a placement needs to connect
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await quick_join(alice)
    assert await quick_join(bob) == code
    assert await quick_place(carol) != code


async def test_players_go_to_the_oldest_open_room_with_space(make_user):
    people = await users(make_user, "p1", "p2", "p3", "p4", "p5")
    older = await quick_room_open()
    await asyncio.sleep(0.005)  # a later creation time (ms)
    newer = await quick_room_open()
    assert await store.quick_candidates() == [older, newer]
    assert [await quick_join(p) for p in people[:4]] == [older] * 4
    assert (await services.room_get(code=older)).status == "playing"
    assert await quick_place(people[4]) == newer
    assert await store.quick_candidates() == [newer]


async def test_listed_rooms_that_are_gone_or_started_are_skipped_and_unlisted(make_user):
    hosts = await users(make_user, "h1", "h2", "h3")
    (alice,) = await users(make_user, "alice")
    gone = await quick_room_open()
    started = await quick_room_open()
    space = await quick_room_open()
    await connect(started, hosts[1])
    await services.game_start(code=started, by=None)
    await store.quick_open(started, (await services.room_get(code=started)).created_at)  # a stale listing
    await store.client().delete(store.key("room", gone))  # expired
    before = await room_dict(started)
    assert await quick_place(alice) == space
    assert await store.quick_candidates() == [space]
    assert gone not in await store.rooms_active()
    assert await room_dict(started) == before


async def test_private_rooms_are_never_used_for_quick_match(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    private = (await services.room_create(host_id=alice.pk, settings_raw={"max_players": 4})).code
    await connect(private, alice)
    assert await quick_place(bob) != private
    assert [p.id for p in (await services.room_get(code=private)).players] == [alice.pk]


async def test_players_placed_at_once_never_overfill_a_room_and_each_gets_one_seat(make_user):
    people = await users(make_user, *(f"p{i}" for i in range(1, 10)))
    code = await quick_place(people[0])
    codes = [code, *await asyncio.gather(*(quick_place(p) for p in people[1:]))]
    rooms = {c: await services.room_get(code=c) for c in set(codes)}
    assert all(len(holders(r)) <= 4 for r in rooms.values())
    assert sorted(h for r in rooms.values() for h in holders(r)) == sorted(p.pk for p in people)
    for person, placed in zip(people, codes, strict=True):
        await connect(placed, person)
    rooms = {c: await services.room_get(code=c) for c in set(codes)}
    assert sorted(p.id for r in rooms.values() for p in r.players) == sorted(p.pk for p in people)
    for room in rooms.values():
        assert len(room.players) <= 4
        assert room.status == ("playing" if len(room.players) == 4 else "lobby")


async def test_eight_players_asking_at_once_fill_two_rooms_of_four(make_user):
    people = await users(make_user, *(f"p{i}" for i in range(8)))
    codes = await asyncio.gather(*(quick_place(p) for p in people))
    assert len(set(codes)) == 2
    for person, placed in zip(people, codes, strict=True):
        await connect(placed, person)
    for code in set(codes):
        assert (await services.room_get(code=code)).status == "playing"


async def test_placements_queued_behind_another_process_give_up_within_one_wait(make_user, monkeypatch):
    monkeypatch.setattr(store, "QUICK_LOCK_WAIT_SECONDS", 0.5)
    people = await users(make_user, *(f"p{i}" for i in range(6)))
    # Another process's placement holds the way for longer than anyone waits.
    held = store.client().lock(store.key("quick", "lock"), timeout=30)
    assert await held.acquire(blocking=False)
    try:
        # Queued one behind the other in this process, each still waits from its own request
        # (one wait of 0.5 s, not six in a row).
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(quick_place(p) for p in people), return_exceptions=True), timeout=2.0
        )
    finally:
        await held.release()
    assert all(isinstance(o, store.LockBusy) for o in outcomes), outcomes
    assert await store.quick_candidates() == []  # nothing placed
    # Once the way is free, the same queue places everyone.
    codes = await asyncio.gather(*(quick_place(p) for p in people))
    assert sorted(codes.count(c) for c in set(codes)) == [2, 4]


# --- The start timer ------------------------------------------------------------------------------


async def test_a_quick_room_starts_by_itself_once_its_start_time_comes(make_user, settings, listen):
    settings.NUXTEST_QUICK_START_SECONDS = 0.2
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_join(alice)
    await quick_join(bob)
    listener = await listen(code)
    # Fired a little early, the timer waits for the start time; racing copies start it once.
    outcomes = await asyncio.gather(*(services.quickmatch_autostart(code=code) for _ in range(4)))
    assert outcomes.count(True) == 1
    room = await services.room_get(code=code)
    assert room.status == "playing" and room.started_at is not None and room.started_at >= room.created_at
    assert [f["type"] for f in await listener.until("question")] == ["game_started", "question"]
    assert code not in await store.quick_candidates()
    assert await services.quickmatch_autostart(code=code) is False


async def test_a_start_timer_far_from_due_or_for_a_room_without_one_does_nothing(make_user):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    alone = await quick_join(alice)
    before = await room_dict(alone)
    assert await services.quickmatch_autostart(code=alone) is False
    assert await room_dict(alone) == before
    await quick_join(bob)  # armed 5 s ahead: more than a timer may wait
    assert await services.quickmatch_autostart(code=alone) is False
    assert (await services.room_get(code=alone)).status == "lobby"
    private = (await services.room_create(host_id=carol.pk, settings_raw={})).code
    await connect(private, carol)
    assert await services.quickmatch_autostart(code=private) is False
    assert await services.quickmatch_autostart(code="ZZZZZZ") is False
