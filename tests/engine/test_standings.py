"""Standings and stored results (GAME.md, Score and End)."""

from __future__ import annotations

import random

from game.engine import rules
from game.engine.model import TRIGGER_DEADLINE, Player
from tests.engine.support import HOST, T0, answer, new_room, playing_room, right, wrong


def room_with(*players: Player):
    room = new_room()
    room.players = list(players)
    return room


def order(room) -> list[int]:
    return [s["player"] for s in rules.standings(room)]


def test_standings_are_ordered_by_score_first():
    room = room_with(
        Player(id=1, name="a", score=500, correct_ms=1),
        Player(id=2, name="b", score=1500, correct_ms=9_000),
        Player(id=3, name="c", score=1000, correct_ms=5),
    )
    assert order(room) == [2, 3, 1]


def test_equal_scores_are_ordered_by_the_lower_sum_of_correct_answer_times():
    room = room_with(
        Player(id=1, name="a", score=1000, correct_ms=4_000),
        Player(id=2, name="b", score=1000, correct_ms=3_000),
        Player(id=3, name="c", score=1000, correct_ms=3_500),
    )
    assert order(room) == [2, 3, 1]


def test_full_ties_are_ordered_by_join_order_not_by_id():
    room = room_with(
        Player(id=9, name="z", score=700, correct_ms=100),
        Player(id=3, name="c", score=700, correct_ms=100),
        Player(id=5, name="e", score=700, correct_ms=100),
    )
    assert order(room) == [9, 3, 5]


def test_ranks_run_from_one_to_the_number_of_players():
    room = room_with(*(Player(id=i, name=str(i), score=0) for i in range(1, 6)))
    assert [s["rank"] for s in rules.standings(room)] == [1, 2, 3, 4, 5]


def test_a_standing_names_the_player_and_gives_score_rank_and_correct_count():
    room = room_with(
        Player(id=1, name="alice", score=1500, correct=2, correct_ms=3_000),
        Player(id=2, name="bob", score=2000, correct=3, correct_ms=9_000),
    )
    assert rules.standings(room) == [
        {"player": 2, "name": "bob", "score": 2000, "rank": 1, "correct": 3},
        {"player": 1, "name": "alice", "score": 1500, "rank": 2, "correct": 2},
    ]


def test_a_faster_player_wins_a_tie_on_points_in_play():
    room = playing_room(HOST, 2, rounds=1, answer_seconds=10)
    answer(room, HOST, right(room), now=T0 + 1_009)  # 949.55 -> 950 points
    answer(room, 2, right(room), now=T0 + 1_000)  # 950 points, 9 ms quicker
    assert room.player(HOST).score == room.player(2).score == 950
    assert order(room) == [2, HOST]


def test_players_level_on_points_and_time_are_ordered_by_join_order():
    room = playing_room(HOST, 2, rounds=1, answer_seconds=10)
    answer(room, 2, right(room), now=T0 + 4_000)
    answer(room, HOST, right(room), now=T0 + 4_000)
    assert order(room) == [HOST, 2]


def test_wrong_answer_times_do_not_count_against_a_player_in_the_tie_break():
    room = playing_room(HOST, 2, rounds=2, answer_seconds=10, reveal_seconds=0)
    # Round 1: host correct at 2 s; player 2 wrong at 9 s.
    answer(room, HOST, right(room), now=T0 + 2_000)
    answer(room, 2, wrong(room), now=T0 + 9_000)
    rules.round_advance(room, rng=random.Random(0), now=T0 + 9_000)
    # Round 2: player 2 correct at 2 s; host wrong at 1 s.
    opened = room.round.opened_at
    answer(room, 2, right(room), now=opened + 2_000)
    answer(room, HOST, wrong(room), now=opened + 1_000)
    assert room.player(HOST).score == room.player(2).score == 900
    assert room.player(HOST).correct_ms == room.player(2).correct_ms == 2_000
    assert order(room) == [HOST, 2]


def test_results_give_one_row_per_member_with_rounds_correct_and_mean_answer_time():
    room = playing_room(HOST, 2, 3, rounds=2, answer_seconds=10, reveal_seconds=0)
    # Round 1: host correct at 1 s, player 2 wrong at 4 s, player 3 silent.
    answer(room, HOST, right(room), now=T0 + 1_000)
    answer(room, 2, wrong(room), now=T0 + 4_000)
    rules.round_close(room, now=room.round.deadline, trigger=TRIGGER_DEADLINE)
    rules.round_advance(room, rng=random.Random(0), now=room.next_at)
    # Round 2: host wrong at 3 s, player 2 correct at 2 s, player 3 silent.
    opened = room.round.opened_at
    answer(room, HOST, wrong(room), now=opened + 3_000)
    answer(room, 2, right(room), now=opened + 2_000)
    rules.round_close(room, now=room.round.deadline, trigger=TRIGGER_DEADLINE)
    assert room.status == "finished"
    rows = rules.results(room)
    assert rows == [
        {"user_id": HOST, "score": 950, "rank": 1, "correct": 1, "rounds": 2, "avg_answer_ms": 2_000},
        {"user_id": 2, "score": 900, "rank": 2, "correct": 1, "rounds": 2, "avg_answer_ms": 3_000},
        {"user_id": 3, "score": 0, "rank": 3, "correct": 0, "rounds": 2, "avg_answer_ms": None},
    ]


def test_results_follow_the_standings_order_and_ranks():
    room = playing_room(HOST, 2, rounds=1)
    answer(room, 2, right(room), now=T0)
    answer(room, HOST, wrong(room), now=T0)
    rows = rules.results(room)
    standings = rules.standings(room)
    assert [r["user_id"] for r in rows] == [s["player"] for s in standings] == [2, HOST]
    assert [r["rank"] for r in rows] == [1, 2]


def test_results_count_a_disconnected_member_who_never_answered():
    room = playing_room(HOST, 2, rounds=1)
    rules.disconnect(room, player_id=2, conn=room.player(2).conns[0], now=T0)
    answer(room, HOST, right(room), now=T0)
    assert [r["user_id"] for r in rules.results(room)] == [HOST, 2]
    assert rules.results(room)[1]["avg_answer_ms"] is None
