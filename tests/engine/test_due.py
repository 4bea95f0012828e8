"""What the sweeper finds overdue in a room whose timer may have been lost."""

from __future__ import annotations

import random

from game.engine import rules
from game.engine.model import TRIGGER_DEADLINE
from tests.engine.support import HOST, T0, answer, join, leave, new_room, playing_room, right

GRACE = 1_000
ABANDON = 60_000
LOBBY_IDLE = 600_000


def due(room, now):
    return rules.due(room, now=now, grace_ms=GRACE, abandon_ms=ABANDON, lobby_idle_ms=LOBBY_IDLE)


def test_nothing_is_due_in_a_fresh_game():
    room = playing_room(HOST, 2)
    assert due(room, T0) is None
    assert due(room, T0 + 5_000) is None


def test_nothing_is_due_in_an_occupied_lobby_however_long_it_waits():
    room = new_room()
    join(room, HOST)
    assert due(room, T0 + 10 * LOBBY_IDLE) is None


def test_an_open_round_is_due_to_close_once_its_deadline_and_the_grace_have_passed():
    room = playing_room(HOST, 2)
    deadline = room.round.deadline
    assert due(room, deadline) is None
    assert due(room, deadline + GRACE - 1) is None
    assert due(room, deadline + GRACE) == rules.SWEEP_CLOSE
    assert due(room, deadline + GRACE + 5_000) == rules.SWEEP_CLOSE


def test_a_closed_round_is_due_to_advance_once_the_reveal_and_the_grace_have_passed():
    room = playing_room(HOST, rounds=2, reveal_seconds=3)
    answer(room, HOST, right(room), now=T0 + 1_000)
    next_at = room.next_at
    assert next_at == T0 + 4_000
    assert due(room, next_at + GRACE - 1) is None
    assert due(room, next_at + GRACE) == rules.SWEEP_ADVANCE
    rules.round_advance(room, rng=random.Random(0), now=next_at + GRACE)
    assert due(room, next_at + GRACE) is None


def test_a_quick_match_lobby_is_due_to_autostart_once_its_timer_and_the_grace_have_passed():
    room = new_room(quick=True, host=None, max_players=4)
    for pid in (1, 2):
        rules.member_add(room, player_id=pid, name=str(pid), now=T0, quick_start_ms=5_000)
        rules.connect(room, player_id=pid, name=str(pid), conn=f"c{pid}", now=T0)
    assert due(room, T0 + 5_000 + GRACE - 1) is None
    assert due(room, T0 + 5_000 + GRACE) == rules.SWEEP_AUTOSTART


def test_a_quick_match_lobby_with_one_member_is_not_due_to_autostart():
    room = new_room(quick=True, host=None, max_players=4)
    rules.connect(room, player_id=1, name="1", conn="c1", now=T0)
    assert due(room, T0 + LOBBY_IDLE - 1) is None


def test_a_game_everyone_left_is_due_to_be_abandoned_after_abandon_ms():
    room = playing_room(HOST, 2, answer_seconds=60)
    leave(room, HOST, now=T0 + 1_000)
    leave(room, 2, now=T0 + 2_000)

    def step(now):
        return rules.due(room, now=now, grace_ms=GRACE, abandon_ms=30_000, lobby_idle_ms=LOBBY_IDLE)

    assert step(T0 + 2_000 + 30_000 - 1) is None
    assert step(T0 + 2_000 + 30_000) == rules.SWEEP_ABANDON


def test_abandoning_takes_precedence_over_closing_an_overdue_round():
    room = playing_room(HOST, answer_seconds=1)
    leave(room, HOST, now=T0)
    assert due(room, T0 + ABANDON) == rules.SWEEP_ABANDON


def test_a_player_coming_back_cancels_the_abandon():
    room = playing_room(HOST, 2, answer_seconds=60)
    leave(room, HOST, now=T0)
    leave(room, 2, now=T0)
    join(room, 2, now=T0 + ABANDON - 1)
    assert due(room, T0 + ABANDON) is None


def test_an_empty_lobby_is_due_to_be_abandoned_after_lobby_idle_ms_not_abandon_ms():
    room = new_room(now=T0)
    assert due(room, T0 + ABANDON) is None
    assert due(room, T0 + LOBBY_IDLE - 1) is None
    assert due(room, T0 + LOBBY_IDLE) == rules.SWEEP_ABANDON


def test_a_lobby_everyone_left_is_idle_from_when_the_last_player_left():
    room = new_room(now=T0)
    join(room, HOST, now=T0 + 100)
    leave(room, HOST, now=T0 + 500_000)
    assert due(room, T0 + LOBBY_IDLE) is None
    assert due(room, T0 + 500_000 + LOBBY_IDLE) == rules.SWEEP_ABANDON


def test_a_finished_game_is_due_to_store_its_results_until_they_are_stored():
    room = playing_room(HOST, rounds=1)
    answer(room, HOST, right(room), now=T0 + 1)
    assert due(room, T0 + 1) == rules.SWEEP_STORE_RESULTS
    room.results_stored = True
    assert due(room, T0 + 1) is None


def test_a_finished_game_everyone_left_stores_its_results_rather_than_being_abandoned():
    room = playing_room(HOST, rounds=1)
    rules.round_close(room, now=room.round.deadline, trigger=TRIGGER_DEADLINE)
    leave(room, HOST, now=room.round.deadline)
    assert due(room, T0 + 10 * ABANDON) == rules.SWEEP_STORE_RESULTS


def test_an_abandoned_game_has_nothing_due_and_stores_no_results():
    room = playing_room(HOST)
    leave(room, HOST, now=T0)
    rules.abandon(room, now=T0 + ABANDON)
    assert due(room, T0 + 10 * ABANDON) is None


# --- Broadcasts whose process died before publishing them (Room.outbox) ----------------------------


def test_a_room_keeps_its_latest_broadcasts_for_the_sweeper():
    room = playing_room(HOST, 2, rounds=2, reveal_seconds=3)
    closed = T0 + 10_000
    evts = rules.round_close(room, now=closed, trigger=TRIGGER_DEADLINE)
    assert [e["type"] for e in evts] == ["round_result"]
    assert room.outbox[-1] == evts[-1] and room.outbox_at == closed
    assert len(room.outbox) == rules.OUTBOX_MAX
    assert [e["seq"] for e in room.outbox] == list(range(room.seq - rules.OUTBOX_MAX + 1, room.seq + 1))


def test_unpublished_broadcasts_are_the_sweeper_s_once_the_grace_has_passed():
    room = playing_room(HOST, 2, rounds=1)
    closed = T0 + 10_000
    evts = rules.round_close(room, now=closed, trigger=TRIGGER_DEADLINE)
    assert [e["type"] for e in evts] == ["round_result", "game_over"]
    before = evts[0]["seq"] - 1
    assert rules.unpublished(room, published=before, now=closed + GRACE - 1, grace_ms=GRACE) == []
    assert rules.unpublished(room, published=before, now=closed + GRACE, grace_ms=GRACE) == evts
    assert rules.unpublished(room, published=room.seq, now=closed + 10 * GRACE, grace_ms=GRACE) == []
