"""Starting a game, questions, answers, closing and advancing rounds (GAME.md, Lobby and Rounds)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from game.engine import rules
from game.engine.model import (
    FINISHED,
    LOBBY,
    PLAYING,
    TRIGGER_ALL_ANSWERED,
    TRIGGER_DEADLINE,
    QuestionData,
    room_to_dict,
)
from tests.engine.support import (
    HOST,
    T0,
    answer,
    assert_seq_follows,
    join,
    leave,
    make_questions,
    new_room,
    playing_room,
    right,
    start_game,
    wrong,
)

# --- start -------------------------------------------------------------------------------------


def test_the_host_starts_the_game_with_game_started_then_the_first_question():
    room = new_room(rounds=3)
    join(room, HOST, 2)
    seq = room.seq
    events = start_game(room, now=T0 + 50)
    assert [e["type"] for e in events] == ["game_started", "question"]
    assert events[0] == {"type": "game_started", "rounds": 3, "seq": seq + 1}
    assert events[1]["round"] == 1
    assert_seq_follows(events, seq)
    assert room.seq == events[-1]["seq"]
    assert room.status == PLAYING
    assert room.game_id == "game-1"
    assert room.started_at == T0 + 50
    assert room.round.number == 1
    assert room.round.is_open


def test_a_game_can_start_with_a_single_player():
    room = new_room()
    join(room, HOST)
    start_game(room)
    assert room.status == PLAYING


def test_a_player_who_is_not_the_host_cannot_start_the_game():
    room = new_room()
    join(room, HOST, 2)
    before = room_to_dict(room)
    with pytest.raises(rules.NotHost):
        start_game(room, by=2)
    assert room_to_dict(room) == before


def test_while_the_host_is_away_from_the_lobby_nobody_else_may_start():
    room = new_room()
    join(room, HOST, 2, 3)
    leave(room, HOST)
    before = room_to_dict(room)
    for by in (3, 99):  # a member, and not a member
        with pytest.raises(rules.NotHost, match="only the host"):
            start_game(room, by=by)
    assert room_to_dict(room) == before
    start_game(room, by=HOST)  # connected or not
    assert room.status == PLAYING


def test_the_hosts_seat_is_kept_until_the_host_connects():
    room = new_room(max_players=2)
    join(room, 2)
    with pytest.raises(rules.RoomFull):
        join(room, 3)
    join(room, HOST)
    assert [p.id for p in room.players] == [2, HOST]


def test_nobody_starts_a_quick_match_room_by_hand():
    room = new_room(quick=True, host=None, max_players=4)
    join(room, 1, 2)
    with pytest.raises(rules.NotHost, match="starts by itself"):
        start_game(room, by=1)


def test_the_game_cannot_be_started_twice():
    room = playing_room(HOST, 2)
    before = room_to_dict(room)
    with pytest.raises(rules.NotInLobby):
        start_game(room)
    assert room_to_dict(room) == before


def test_the_quick_match_timer_may_start_the_game_without_a_host():
    room = new_room(quick=True, host=None, max_players=4)
    rules.member_add(room, player_id=1, name="one", now=T0, quick_start_ms=5_000)
    rules.member_add(room, player_id=2, name="two", now=T0, quick_start_ms=5_000)
    assert room.next_at == T0 + 5_000
    events = start_game(room, by=None, now=T0 + 5_000)
    assert [e["type"] for e in events] == ["game_started", "question"]
    assert room.status == PLAYING
    assert room.next_at is None


def test_a_timer_start_of_a_hosted_room_is_allowed():
    room = new_room()
    join(room, HOST, 2)
    start_game(room, by=None)
    assert room.status == PLAYING


def test_a_game_without_any_member_is_refused():
    room = new_room()
    with pytest.raises(rules.RuleError):
        start_game(room)
    assert room.status == LOBBY


def test_starting_with_fewer_questions_than_rounds_is_refused():
    room = new_room(rounds=5)
    join(room, HOST)
    before = room_to_dict(room)
    with pytest.raises(rules.NotEnoughQuestions):
        rules.start(room, by=HOST, questions=make_questions(4), game_id="g", rng=random.Random(0), now=T0)
    assert room_to_dict(room) == before


def test_the_plan_holds_exactly_as_many_questions_as_rounds():
    room = new_room(rounds=3)
    join(room, HOST)
    qs = make_questions(10)
    rules.start(room, by=HOST, questions=qs, game_id="g", rng=random.Random(0), now=T0)
    assert room.plan == qs[:3]
    assert room.round.question_id == qs[0].id


# --- questions ---------------------------------------------------------------------------------


def test_the_question_event_has_its_round_text_options_deadline_and_no_answer():
    room = new_room(answer_seconds=2.5)
    join(room, HOST)
    events = start_game(room, now=T0 + 7)
    question = events[1]
    assert set(question) == {"type", "round", "text", "options", "deadline", "server_time", "seq"}
    assert question["text"] == room.plan[0].text
    assert question["options"] == room.round.options
    assert question["deadline"] == T0 + 7 + 2_500 == room.round.deadline
    assert question["server_time"] == T0 + 7
    assert room.round.opened_at == T0 + 7


@given(seed=st.integers(), correct=st.integers(0, 3))
def test_the_shuffled_options_are_a_permutation_and_correct_points_at_the_original_answer(seed, correct):
    question = QuestionData(id=1, text="?", options=["w", "x", "y", "z"], correct=correct)
    room = new_room(rounds=1)
    join(room, HOST)
    rules.start(room, by=HOST, questions=[question], game_id="g", rng=random.Random(seed), now=T0)
    assert sorted(room.round.options) == sorted(question.options)
    assert room.round.options[room.round.correct] == question.options[correct]


def test_the_shuffle_actually_moves_options_for_some_seeds():
    orders = set()
    for seed in range(30):
        room = playing_room(HOST, seed=seed)
        orders.add(tuple(room.round.options))
    assert len(orders) > 1


def test_each_round_uses_the_next_question_of_the_plan():
    room = playing_room(HOST, rounds=3, reveal_seconds=0)
    used = []
    now = T0
    for _ in range(3):
        used.append(room.round.question_id)
        answer(room, HOST, right(room), now=now)
        rules.round_advance(room, rng=random.Random(1), now=now)
        now += 1
    assert used == [q.id for q in room.plan]
    assert len(set(used)) == 3


@given(
    candidates=st.lists(st.integers(1, 300), min_size=1, max_size=60),
    count=st.integers(1, 20),
    seed=st.integers(),
)
def test_questions_choose_picks_distinct_candidates_or_refuses_too_few(candidates, count, seed):
    distinct = set(candidates)
    if len(distinct) < count:
        with pytest.raises(rules.NotEnoughQuestions):
            rules.questions_choose(candidates, count, random.Random(seed))
        return
    chosen = rules.questions_choose(candidates, count, random.Random(seed))
    assert len(chosen) == count
    assert len(set(chosen)) == count
    assert set(chosen) <= distinct


def test_questions_choose_does_not_count_duplicate_candidates_twice():
    with pytest.raises(rules.NotEnoughQuestions):
        rules.questions_choose([7, 7, 7, 8], 3, random.Random(0))
    assert sorted(rules.questions_choose([7, 7, 8, 9], 3, random.Random(0))) == [7, 8, 9]


# --- answers -----------------------------------------------------------------------------------


def test_the_first_answer_is_accepted():
    room = playing_room(HOST, 2)
    outcome, events = answer(room, HOST, right(room), now=T0 + 1_000)
    assert outcome == rules.AnswerOutcome(1, True)
    assert outcome.frame() == {"type": "answer_ack", "round": 1, "accepted": True}
    assert events == []
    assert room.round.answers[HOST].option == right(room)
    assert room.round.answers[HOST].elapsed_ms == 1_000


def test_a_second_answer_is_refused_as_already_answered_and_the_first_counts():
    room = playing_room(HOST, 2)
    answer(room, HOST, wrong(room), now=T0 + 1_000)
    before = room_to_dict(room)
    outcome, events = answer(room, HOST, right(room), now=T0 + 2_000)
    assert outcome == rules.AnswerOutcome(1, False, "already_answered")
    assert outcome.frame() == {
        "type": "answer_ack",
        "round": 1,
        "accepted": False,
        "reason": "already_answered",
    }
    assert events == []
    assert room_to_dict(room) == before
    assert room.round.answers[HOST].option == wrong(room)


@pytest.mark.parametrize("round_number", [0, 2, -1, 99])
def test_an_answer_for_another_round_is_refused_as_wrong_round(round_number):
    room = playing_room(HOST, 2, rounds=3)
    before = room_to_dict(room)
    outcome, events = answer(room, HOST, right(room), now=T0 + 10, round_number=round_number)
    assert outcome == rules.AnswerOutcome(round_number, False, "wrong_round")
    assert events == []
    assert room_to_dict(room) == before


def test_an_answer_in_the_lobby_is_refused_as_wrong_round():
    room = new_room()
    join(room, HOST)
    outcome, events = rules.answer(room, player_id=HOST, round_number=1, option=0, now=T0)
    assert outcome.reason == "wrong_round"
    assert events == []


def test_an_answer_for_the_previous_round_is_refused_as_wrong_round():
    room = playing_room(HOST, rounds=2, reveal_seconds=0)
    answer(room, HOST, right(room), now=T0 + 10)
    rules.round_advance(room, rng=random.Random(0), now=T0 + 10)
    outcome, _ = answer(room, HOST, 0, now=T0 + 20, round_number=1)
    assert outcome.reason == "wrong_round"


def test_an_answer_exactly_at_the_deadline_is_accepted():
    room = playing_room(HOST, 2)
    outcome, _ = answer(room, HOST, right(room), now=room.round.deadline)
    assert outcome.accepted


def test_late_answer_is_refused_as_round_closed_even_before_the_round_is_closed():
    room = playing_room(HOST, 2)
    assert room.round.is_open
    before = room_to_dict(room)
    outcome, events = answer(room, HOST, right(room), now=room.round.deadline + 1)
    assert outcome == rules.AnswerOutcome(1, False, "round_closed")
    assert events == []
    assert room_to_dict(room) == before


def test_an_answer_after_the_round_closed_is_refused_as_round_closed():
    room = playing_room(HOST, 2, rounds=2)
    rules.round_close(room, now=T0 + 500, trigger=TRIGGER_DEADLINE)
    before = room_to_dict(room)
    outcome, events = answer(room, 2, right(room), now=T0 + 600)
    assert outcome == rules.AnswerOutcome(1, False, "round_closed")
    assert events == []
    assert room_to_dict(room) == before


def test_an_answer_to_the_last_round_of_a_finished_game_is_refused_as_round_closed():
    room = playing_room(HOST, rounds=1)
    answer(room, HOST, right(room), now=T0 + 10)
    assert room.status == FINISHED
    outcome, _ = answer(room, HOST, right(room), now=T0 + 20)
    assert outcome.reason == "round_closed"


def test_an_answer_from_a_non_member_is_refused_with_not_member():
    room = playing_room(HOST, 2)
    before = room_to_dict(room)
    with pytest.raises(rules.NotMember):
        answer(room, 99, 0, now=T0 + 10)
    assert room_to_dict(room) == before


# --- closing -----------------------------------------------------------------------------------


def test_the_round_closes_when_every_connected_player_has_answered():
    room = playing_room(HOST, 2, 3, rounds=2)
    seq = room.seq
    assert answer(room, HOST, right(room), now=T0 + 100)[1] == []
    assert answer(room, 2, wrong(room), now=T0 + 200)[1] == []
    outcome, events = answer(room, 3, right(room), now=T0 + 300)
    assert outcome.accepted
    assert [e["type"] for e in events] == ["round_result"]
    assert_seq_follows(events, seq)
    assert room.round.closed_at == T0 + 300
    assert room.round.trigger == TRIGGER_ALL_ANSWERED
    assert room.next_at == T0 + 300 + room.settings.reveal_ms


def test_a_disconnected_member_need_not_answer_for_the_round_to_close():
    room = playing_room(HOST, 2, 3, rounds=2)
    leave(room, 3)
    answer(room, HOST, right(room), now=T0 + 100)
    _, events = answer(room, 2, right(room), now=T0 + 200)
    assert [e["type"] for e in events] == ["round_result"]
    assert room.round.trigger == TRIGGER_ALL_ANSWERED


def test_with_nobody_connected_the_round_waits_for_its_deadline():
    room = playing_room(HOST, 2, rounds=2)
    assert leave(room, HOST)[-1]["type"] == "player_left"
    events = leave(room, 2)
    assert [e["type"] for e in events] == ["player_left"]
    assert room.round.is_open
    outcome, events = answer(room, HOST, right(room), now=T0 + 100)
    assert outcome.accepted
    assert events == []
    assert room.round.is_open


def test_the_disconnect_of_the_last_unanswered_player_closes_the_round():
    room = playing_room(HOST, 2, rounds=2)
    answer(room, HOST, right(room), now=T0 + 100)
    seq = room.seq
    events = leave(room, 2, now=T0 + 200)
    assert [e["type"] for e in events] == ["player_left", "round_result"]
    assert_seq_follows(events, seq)
    assert room.round.closed_at == T0 + 200
    assert room.round.trigger == TRIGGER_ALL_ANSWERED


def test_closing_one_of_two_connections_of_the_unanswered_player_does_not_close_the_round():
    room = playing_room(HOST, 2, rounds=2)
    rules.connect(room, player_id=2, name="player2", conn="second", now=T0)
    answer(room, HOST, right(room), now=T0 + 100)
    assert leave(room, 2, now=T0 + 200) == []
    assert room.round.is_open


def test_a_returning_player_must_answer_before_the_round_can_close():
    room = playing_room(HOST, 2, rounds=2)
    leave(room, 2)
    join(room, 2)
    _, events = answer(room, HOST, right(room), now=T0 + 100)
    assert events == []
    assert room.round.is_open


def test_round_close_is_idempotent():
    room = playing_room(HOST, 2, rounds=2)
    answer(room, HOST, right(room), now=T0 + 100)
    first = rules.round_close(room, now=T0 + 10_000, trigger=TRIGGER_DEADLINE)
    after_first = room_to_dict(room)
    second = rules.round_close(room, now=T0 + 10_001, trigger=TRIGGER_DEADLINE)
    assert [e["type"] for e in first] == ["round_result"]
    assert second == []
    assert room_to_dict(room) == after_first
    assert room.round.trigger == TRIGGER_DEADLINE


def test_round_close_after_an_all_answered_close_does_nothing():
    room = playing_room(HOST, rounds=2)
    answer(room, HOST, right(room), now=T0 + 100)
    snapshot = room_to_dict(room)
    assert rules.round_close(room, now=room.round.deadline, trigger=TRIGGER_DEADLINE) == []
    assert room_to_dict(room) == snapshot
    assert room.round.trigger == TRIGGER_ALL_ANSWERED


def test_round_close_in_the_lobby_does_nothing():
    room = new_room()
    join(room, HOST)
    assert rules.round_close(room, now=T0, trigger=TRIGGER_DEADLINE) == []


def test_round_result_has_one_entry_per_member_in_join_order():
    room = new_room(host=30, rounds=2, answer_seconds=10)
    join(room, 30, 10, 20, 40)
    start_game(room, by=30)
    leave(room, 40)
    correct = right(room)
    answer(room, 10, wrong(room), now=T0 + 1_000)
    answer(room, 20, correct, now=T0)
    _, events = rules.answer(room, player_id=30, round_number=1, option=correct, now=T0 + 10_000)
    (result,) = events
    assert result["round"] == 1
    assert result["correct_option"] == correct
    assert result["results"] == [
        {"player": 30, "option": correct, "correct": True, "points": 500, "total": 500},
        {"player": 10, "option": wrong(room), "correct": False, "points": 0, "total": 0},
        {"player": 20, "option": correct, "correct": True, "points": 1000, "total": 1000},
        {"player": 40, "option": None, "correct": False, "points": 0, "total": 0},
    ]


def test_scores_are_applied_only_when_the_round_closes():
    room = playing_room(HOST, 2, rounds=2)
    answer(room, HOST, right(room), now=T0)
    assert room.player(HOST).score == 0
    assert room.player(HOST).correct == 0
    state = rules.snapshot(room, player_id=2, now=T0 + 1)
    assert [p["score"] for p in state["players"]] == [0, 0]
    rules.round_close(room, now=T0 + 5, trigger=TRIGGER_DEADLINE)
    assert room.player(HOST).score == 1000
    assert room.player(HOST).correct == 1
    state = rules.snapshot(room, player_id=2, now=T0 + 6)
    assert [p["score"] for p in state["players"]] == [1000, 0]


def test_totals_accumulate_across_rounds():
    room = playing_room(HOST, rounds=3, reveal_seconds=0, answer_seconds=10)
    totals = []
    for step in range(3):
        now = room.round.opened_at + step * 5_000
        _, events = answer(room, HOST, right(room), now=now)
        totals.append(events[0]["results"][0]["total"])
        rules.round_advance(room, rng=random.Random(0), now=now)
    assert totals == [1000, 1750, 2250]
    assert room.player(HOST).score == 2250


def test_the_last_round_result_is_followed_by_game_over_in_the_same_call():
    room = playing_room(HOST, 2, rounds=1)
    answer(room, HOST, right(room), now=T0 + 100)
    seq = room.seq
    _, events = answer(room, 2, wrong(room), now=T0 + 200)
    assert [e["type"] for e in events] == ["round_result", "game_over"]
    assert_seq_follows(events, seq)
    assert room.seq == events[-1]["seq"]
    assert room.status == FINISHED
    assert room.finished_at == T0 + 200
    assert room.next_at is None
    assert [s["player"] for s in events[1]["standings"]] == [HOST, 2]
    assert events[1]["standings"] == rules.standings(room)


def test_a_deadline_close_of_the_last_round_also_ends_the_game():
    room = playing_room(HOST, 2, rounds=1)
    events = rules.round_close(room, now=room.round.deadline, trigger=TRIGGER_DEADLINE)
    assert [e["type"] for e in events] == ["round_result", "game_over"]
    assert room.status == FINISHED
    assert not room.results_stored


# --- advancing ---------------------------------------------------------------------------------


def test_round_advance_does_nothing_before_the_reveal_pause_is_over():
    room = playing_room(HOST, rounds=3, reveal_seconds=3)
    answer(room, HOST, right(room), now=T0 + 1_000)
    assert room.next_at == T0 + 4_000
    before = room_to_dict(room)
    assert rules.round_advance(room, rng=random.Random(0), now=T0 + 3_999) == []
    assert room_to_dict(room) == before


def test_round_advance_opens_the_next_round_once_the_reveal_pause_is_over():
    room = playing_room(HOST, rounds=3, reveal_seconds=3, answer_seconds=10)
    answer(room, HOST, right(room), now=T0 + 1_000)
    seq = room.seq
    events = rules.round_advance(room, rng=random.Random(0), now=T0 + 4_000)
    assert [e["type"] for e in events] == ["question"]
    assert_seq_follows(events, seq)
    assert events[0]["round"] == 2
    assert events[0]["deadline"] == T0 + 4_000 + 10_000
    assert room.round.number == 2
    assert room.round.is_open
    assert room.round.answers == {}
    assert room.round.question_id == room.plan[1].id
    assert room.next_at is None


def test_round_advance_with_no_reveal_pause_opens_the_next_round_at_once():
    room = playing_room(HOST, rounds=2, reveal_seconds=0)
    answer(room, HOST, right(room), now=T0 + 1_000)
    assert room.next_at == T0 + 1_000
    events = rules.round_advance(room, rng=random.Random(0), now=T0 + 1_000)
    assert [e["type"] for e in events] == ["question"]


def test_round_advance_twice_opens_only_one_round():
    room = playing_room(HOST, rounds=3, reveal_seconds=0)
    answer(room, HOST, right(room), now=T0 + 1_000)
    rules.round_advance(room, rng=random.Random(0), now=T0 + 1_000)
    assert rules.round_advance(room, rng=random.Random(0), now=T0 + 1_001) == []
    assert room.round.number == 2


def test_round_advance_does_nothing_while_a_round_is_open_or_after_the_game():
    room = playing_room(HOST, rounds=1)
    assert rules.round_advance(room, rng=random.Random(0), now=T0 + 60_000) == []
    answer(room, HOST, right(room), now=T0 + 1)
    assert room.status == FINISHED
    assert rules.round_advance(room, rng=random.Random(0), now=T0 + 60_000) == []
    lobby = new_room()
    assert rules.round_advance(lobby, rng=random.Random(0), now=T0 + 60_000) == []


def test_abandon_ends_a_game_without_events_and_closes_its_round():
    room = playing_room(HOST, 2)
    seq = room.seq
    assert rules.abandon(room, now=T0 + 70_000) == []
    assert room.status == "abandoned"
    assert room.finished_at == T0 + 70_000
    assert not room.round.is_open
    assert room.seq == seq
    outcome, _ = answer(room, HOST, right(room), now=T0 + 70_001)
    assert not outcome.accepted


def test_abandon_leaves_a_finished_game_alone():
    room = playing_room(HOST, rounds=1)
    answer(room, HOST, right(room), now=T0 + 1)
    rules.abandon(room, now=T0 + 2)
    assert room.status == FINISHED
