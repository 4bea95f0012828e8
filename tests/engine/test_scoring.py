"""Points for a correct answer (GAME.md, Score)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from game.engine import rules
from game.engine.model import TRIGGER_DEADLINE
from tests.engine.support import HOST, T0, answer, playing_room, right, wrong


def reference_points(remaining_ms: int, answer_ms: int) -> int:
    """round(500 + 500 * remaining / answer_ms), halves up, remaining clamped, in exact arithmetic."""
    remaining = min(max(remaining_ms, 0), answer_ms)
    return math.floor(Fraction(500) + Fraction(500 * remaining, answer_ms) + Fraction(1, 2))


def test_an_answer_with_all_the_time_left_earns_1000():
    assert rules.points_for(remaining_ms=10_000, answer_ms=10_000) == 1000


def test_an_answer_with_no_time_left_earns_500():
    assert rules.points_for(remaining_ms=0, answer_ms=10_000) == 500


def test_an_answer_with_half_the_time_left_earns_750():
    assert rules.points_for(remaining_ms=5_000, answer_ms=10_000) == 750


@pytest.mark.parametrize(
    ("remaining_ms", "answer_ms", "points"),
    [
        (1, 1_000, 501),  # 500.5 rounds up (not to even)
        (3, 1_000, 502),  # 501.5 rounds up
        (5, 10_000, 500),  # 500.25 rounds down
        (15, 10_000, 501),  # 500.75 rounds up
        (999, 1_000, 1000),  # 999.5 rounds up
        (1, 500, 501),  # 501 exactly
    ],
)
def test_halves_are_rounded_up(remaining_ms, answer_ms, points):
    assert rules.points_for(remaining_ms=remaining_ms, answer_ms=answer_ms) == points


def test_remaining_time_is_clamped_to_the_answer_window():
    assert rules.points_for(remaining_ms=-250, answer_ms=10_000) == 500
    assert rules.points_for(remaining_ms=25_000, answer_ms=10_000) == 1000


@given(remaining_ms=st.integers(-100_000, 100_000), answer_ms=st.integers(500, 60_000))
def test_points_match_the_formula_exactly(remaining_ms, answer_ms):
    points = rules.points_for(remaining_ms=remaining_ms, answer_ms=answer_ms)
    assert points == reference_points(remaining_ms, answer_ms)
    assert 500 <= points <= 1000


@given(answer_ms=st.integers(500, 60_000), a=st.integers(0, 60_000), b=st.integers(0, 60_000))
def test_more_time_left_never_earns_fewer_points(answer_ms, a, b):
    low, high = sorted((a, b))
    assert rules.points_for(remaining_ms=low, answer_ms=answer_ms) <= rules.points_for(
        remaining_ms=high, answer_ms=answer_ms
    )


def test_a_correct_answer_at_the_very_start_of_the_round_scores_1000():
    room = playing_room(HOST, 2)
    answer(room, HOST, right(room), now=room.round.opened_at)
    assert room.round.answers[HOST].points == 1000
    assert room.round.answers[HOST].elapsed_ms == 0


def test_a_correct_answer_at_the_deadline_scores_500():
    room = playing_room(HOST, 2)
    answer(room, HOST, right(room), now=room.round.deadline)
    assert room.round.answers[HOST].points == 500
    assert room.round.answers[HOST].elapsed_ms == room.settings.answer_ms


def test_a_wrong_answer_scores_nothing_however_fast():
    room = playing_room(HOST, 2)
    answer(room, HOST, wrong(room), now=room.round.opened_at)
    assert room.round.answers[HOST].correct is False
    assert room.round.answers[HOST].points == 0


def test_a_missing_answer_scores_nothing():
    room = playing_room(HOST, 2, rounds=2)
    answer(room, HOST, right(room), now=T0 + 1)
    (result,) = rules.round_close(room, now=room.round.deadline, trigger=TRIGGER_DEADLINE)
    assert result["results"][1] == {"player": 2, "option": None, "correct": False, "points": 0, "total": 0}


def test_points_use_the_time_left_at_the_deadline_with_fractional_answer_seconds():
    room = playing_room(HOST, 2, answer_seconds=0.5)
    assert room.round.deadline == T0 + 500
    answer(room, HOST, right(room), now=T0 + 250)
    assert room.round.answers[HOST].points == 750


def test_points_follow_the_time_the_server_received_the_answer():
    room = playing_room(HOST, 2, 3, answer_seconds=10)
    answer(room, HOST, right(room), now=T0 + 2_000)
    answer(room, 2, right(room), now=T0 + 7_001)
    assert room.round.answers[HOST].points == 900
    assert room.round.answers[2].points == 650  # 649.95 rounds to 650
