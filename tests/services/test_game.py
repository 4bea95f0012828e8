"""Playing: start, answers, closing rounds exactly once, the next question (game/services.py)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from game import scheduler, services, store
from game.engine import rules
from game.engine.model import TRIGGER_ALL_ANSWERED, TRIGGER_DEADLINE
from game.models import Question
from tests.play import (
    BROADCASTS,
    PLAYING,
    answer,
    connect,
    correct_option,
    disconnect,
    game_playing,
    in_threads,
    keys_anywhere,
    on_own_loop,
    room_dict,
    room_new,
    sleep_past,
    timers_of,
    users,
    wrong_option,
)

pytestmark = PLAYING


def close_due_on_own_loop(code: str, round_number: int) -> bool:
    """round_close_due as another worker process runs it: on an event loop of its own."""
    return on_own_loop(lambda: services.round_close_due(code=code, round_number=round_number))


# --- Start ----------------------------------------------------------------------------------------


async def test_only_the_host_starts_and_a_refused_start_changes_nothing(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    await connect(code, alice)
    await connect(code, bob)
    before = await room_dict(code)
    with pytest.raises(rules.NotHost):
        await services.game_start(code=code, by=bob.pk)
    assert await room_dict(code) == before
    await services.game_start(code=code, by=alice.pk)
    assert (await services.room_get(code=code)).status == "playing"


async def test_a_room_nobody_has_joined_cannot_start(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    with pytest.raises(rules.NotInLobby):
        await services.game_start(code=code, by=alice.pk)
    assert (await services.room_get(code=code)).status == "lobby"


async def test_starting_opens_round_1_without_revealing_the_answer_and_arms_its_deadline(
    make_user, listen, timers
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice, rounds=4, answer_seconds=20)
    await connect(code, alice)
    await connect(code, bob)
    listener = await listen(code)
    before = services.now_ms()
    await services.game_start(code=code, by=alice.pk)
    started, question = await listener.next(), await listener.next()
    assert started == {"type": "game_started", "rounds": 4, "seq": 3}
    assert set(question) == {"type", "round", "text", "options", "deadline", "server_time", "seq"}
    assert question["round"] == 1 and question["seq"] == 4
    assert question["deadline"] == question["server_time"] + 20_000 and question["server_time"] >= before
    assert timers_of(timers, scheduler.ROUND_DEADLINE) == [
        (scheduler.ROUND_DEADLINE, [code, 1], question["deadline"] + settings.NUXTEST_DEADLINE_GRACE_MS)
    ]
    room = await services.room_get(code=code)
    # Four different questions of the bank, the options of the first shuffled, the answer kept.
    assert len({q.id for q in room.plan}) == 4
    bank = await sync_to_async(Question.objects.get)(id=room.plan[0].id)
    assert question["text"] == bank.text and sorted(question["options"]) == sorted(bank.options)
    assert question["options"][room.round.correct] == bank.options[bank.correct]  # type: ignore[union-attr]
    assert not keys_anywhere([started, question]) & {"correct", "correct_option", "plan"}


async def test_starts_racing_each_other_start_the_game_once(make_user, listen):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    await connect(code, alice)
    await connect(code, bob)
    listener = await listen(code)
    outcomes = await asyncio.gather(
        *(services.game_start(code=code, by=alice.pk) for _ in range(10)), return_exceptions=True
    )
    assert outcomes.count(None) == 1
    assert all(isinstance(o, rules.NotInLobby) for o in outcomes if o is not None)
    heard = await listener.until("question")
    assert [f["type"] for f in heard] == ["game_started", "question"]
    assert await listener.drain(0.1) == []


# --- Answers --------------------------------------------------------------------------------------


async def test_a_correct_answer_scores_by_the_time_left_and_a_wrong_one_scores_nothing(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=1, answer_seconds=60)
    right, wrong = await correct_option(code), await wrong_option(code)
    assert await answer(code, alice, 1, right) == rules.AnswerOutcome(1, True)
    assert await answer(code, bob, 1, wrong) == rules.AnswerOutcome(1, True)
    room = await services.room_get(code=code)
    assert room.round is not None
    a, b = room.round.answers[alice.pk], room.round.answers[bob.pk]
    assert (a.option, a.correct, b.option, b.correct, b.points) == (right, True, wrong, False, 0)
    assert a.points == rules.points_for(remaining_ms=room.round.deadline - a.at, answer_ms=60_000)
    assert 500 <= a.points <= 1000
    assert [(p.score, p.correct, p.answered) for p in room.players] == [(a.points, 1, 1), (0, 0, 1)]


async def test_the_first_answer_counts_and_a_second_is_refused_as_already_answered(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    await answer(code, alice, 1, await wrong_option(code))
    before = await room_dict(code)
    refused = await answer(code, alice, 1, await correct_option(code))
    assert refused == rules.AnswerOutcome(1, False, "already_answered")
    assert refused.frame() == {
        "type": "answer_ack",
        "round": 1,
        "accepted": False,
        "reason": "already_answered",
    }
    assert await room_dict(code) == before


async def test_answers_racing_from_one_player_count_once(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    outcomes = await asyncio.gather(*(answer(code, alice, 1, option % 4) for option in range(12)))
    accepted = [o for o in outcomes if o.accepted]
    assert len(accepted) == 1
    assert {o.reason for o in outcomes if not o.accepted} == {"already_answered"}
    room = await services.room_get(code=code)
    assert list(room.round.answers) == [alice.pk]  # type: ignore[union-attr]


async def test_an_answer_is_judged_on_the_stored_room_when_another_process_moved_it_on(make_user):
    # This process remembers the room as of its own last write (round 1, Alice answered);
    # another process then closes round 1 and opens round 2. Judged on the remembered room,
    # Alice's answer to round 2 would be refused as wrong_round without a write to check it.
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=3, answer_seconds=60, reveal_seconds=0)
    assert (await answer(code, alice, 1, 0)).accepted
    closed = await asyncio.to_thread(on_own_loop, lambda: answer(code, bob, 1, 0))
    assert closed.accepted
    assert await answer(code, alice, 2, 1) == rules.AnswerOutcome(2, True, None)
    room = await services.room_get(code=code)
    assert room.round is not None and room.round.number == 2
    assert room.round.answers[alice.pk].option == 1


async def test_a_refusal_is_judged_on_the_stored_room_too_when_another_process_moved_it_on(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=3, answer_seconds=60, reveal_seconds=0)
    assert (await answer(code, alice, 1, 0)).accepted
    await asyncio.to_thread(on_own_loop, lambda: answer(code, bob, 1, 0))
    await asyncio.to_thread(on_own_loop, lambda: answer(code, bob, 2, 0))
    # Remembered: round 1, answered; stored: round 2, Bob answered, Alice not yet.
    assert await answer(code, alice, 1, 2) == rules.AnswerOutcome(1, False, "wrong_round")
    assert await answer(code, alice, 2, 2) == rules.AnswerOutcome(2, True, None)
    room = await services.room_get(code=code)
    assert room.round is not None and room.round.number == 3


async def test_an_answer_for_a_round_that_is_not_the_current_one_is_refused_as_wrong_round(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    before = await room_dict(code)
    for number in (0, 2, -1, 99):
        assert await answer(code, alice, number, 0) == rules.AnswerOutcome(number, False, "wrong_round")
    assert await room_dict(code) == before


async def test_an_answer_after_the_deadline_is_refused_as_round_closed_even_before_the_round_is_closed(
    make_user,
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=0.5, reveal_seconds=10)
    room = await services.room_get(code=code)
    assert room.round is not None
    await sleep_past(room.round.deadline)
    before = await room_dict(code)
    assert await answer(code, alice, 1, 0) == rules.AnswerOutcome(1, False, "round_closed")
    assert await room_dict(code) == before
    assert await services.round_close_due(code=code, round_number=1) is True
    before = await room_dict(code)
    assert await answer(code, bob, 1, 0) == rules.AnswerOutcome(1, False, "round_closed")
    assert await room_dict(code) == before


async def test_an_answer_received_before_the_deadline_counts_though_its_write_lands_after_it(
    make_user, listen
):
    # Players of a room answering in the deadline's last milliseconds on one web process
    # queue on the room's update lock, one compare-and-set each: the last one's write can land
    # milliseconds past the deadline (up to 19 ms seen with 8 players on a 2-core host), while
    # the worker's deadline timer closes the round. GAME.md counts an answer by when the
    # server received it (`remaining` is measured then, and answer() refuses only a receive
    # time past the deadline).
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    listener = await listen(code)
    room = await services.room_get(code=code)
    assert room.round is not None
    deadline = room.round.deadline
    await sleep_past(deadline, margin_ms=-40)
    queue = store._local_lock(code)  # other answers of the room ahead of Bob's in this process
    await queue.acquire()
    try:
        received = services.now_ms()
        pending = asyncio.ensure_future(answer(code, bob, 1, 0))
        await asyncio.sleep(0)  # received (its time taken), now waiting for its turn
        closing = asyncio.ensure_future(asyncio.to_thread(close_due_on_own_loop, code, 1))
        # Bob's turn comes 20 ms past the deadline, or as soon as the round is closed.
        while services.now_ms() < deadline + 20:
            current = await services.room_get(code=code)
            if current.round is not None and not current.round.is_open:
                break
            await asyncio.sleep(0.002)
    finally:
        queue.release()
    assert received < deadline
    assert await pending == rules.AnswerOutcome(1, True)
    assert await closing is True
    result = (await listener.until("round_result"))[-1]
    assert {r["player"]: r["option"] for r in result["results"]} == {alice.pk: None, bob.pk: 0}


async def test_an_answer_from_someone_who_is_not_a_member_is_refused(make_user):
    alice, bob, mallory = await users(make_user, "alice", "bob", "mallory")
    code = await game_playing([alice, bob], answer_seconds=60)
    before = await room_dict(code)
    with pytest.raises(rules.NotMember):
        await answer(code, mallory, 1, 0)
    assert await room_dict(code) == before


# --- Closing a round ------------------------------------------------------------------------------


async def test_the_last_connected_players_answer_closes_the_round_for_everyone(make_user, listen):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await game_playing([alice, bob, carol], rounds=2, answer_seconds=60, reveal_seconds=10)
    await disconnect(code, carol)
    listener = await listen(code)
    await answer(code, alice, 1, 0)
    assert await listener.drain(0.1) == []
    await answer(code, bob, 1, 1)
    result = await listener.next()
    assert result["type"] == "round_result" and result["round"] == 1
    assert [(r["player"], r["option"]) for r in result["results"]] == [
        (alice.pk, 0),
        (bob.pk, 1),
        (carol.pk, None),
    ]
    room = await services.room_get(code=code)
    assert room.round is not None and room.round.trigger == TRIGGER_ALL_ANSWERED
    assert room.next_at == room.round.closed_at + 10_000  # type: ignore[operator]


async def test_a_round_is_not_closed_by_answers_while_nobody_is_connected(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60, reveal_seconds=10)
    await disconnect(code, bob)
    await disconnect(code, alice)
    # Alice's answer was on its way as her socket closed: it counts, but closes nothing.
    assert (await answer(code, alice, 1, 0)).accepted
    await answer(code, bob, 1, 0)
    room = await services.room_get(code=code)
    assert room.round is not None and room.round.is_open and len(room.round.answers) == 2


async def test_a_deadline_close_far_too_early_or_for_another_round_changes_nothing(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    before = await room_dict(code)
    assert await services.round_close_due(code=code, round_number=1) is False
    assert await services.round_close_due(code=code, round_number=2) is False
    assert await services.round_close_due(code="ZZZZZZ", round_number=1) is False
    assert await room_dict(code) == before


async def test_a_round_closes_exactly_once_when_many_closes_race_on_loops_and_threads(make_user, listen):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    listener = await listen(code)
    # Each waits for the deadline (a timer may fire a little early), then tries to close.
    on_loop = asyncio.gather(*(services.round_close_due(code=code, round_number=1) for _ in range(12)))
    in_workers = asyncio.to_thread(in_threads, 6, lambda _: close_due_on_own_loop(code, 1))
    loop_results, thread_results = await asyncio.gather(on_loop, in_workers)
    assert [*loop_results, *thread_results].count(True) == 1
    results = await listener.drain(0.2)
    assert [f["type"] for f in results] == ["round_result"]
    room = await services.room_get(code=code)
    assert room.round is not None and room.round.trigger == TRIGGER_DEADLINE
    assert room.round.closed_at is not None and room.round.closed_at >= room.round.deadline


@pytest.mark.parametrize("offsets_ms", [(-40, -8, -3, -1, 0, 1, 3, 8)])
async def test_deadline_and_last_answer_racing_close_each_round_once_and_agree_on_who_answered(
    make_user, listen, offsets_ms
):
    alice, bob = await users(make_user, "alice", "bob")
    rounds = len(offsets_ms)
    code = await game_playing([alice, bob], rounds=rounds, answer_seconds=0.5, reveal_seconds=0)
    listener = await listen(code)
    for number, offset in enumerate(offsets_ms, start=1):
        room = await services.room_get(code=code)
        assert room.round is not None and room.round.number == number
        await sleep_past(room.round.deadline, margin_ms=offset)
        *closes, thread_close, ack_a, ack_b = await asyncio.gather(
            services.round_close_due(code=code, round_number=number),
            services.round_close_due(code=code, round_number=number),
            asyncio.to_thread(close_due_on_own_loop, code, number),
            answer(code, alice, number, 0),
            answer(code, bob, number, 1),
        )
        heard = await listener.until("round_result")
        result = heard[-1]
        assert result["round"] == number
        # Whoever closed it, an accepted answer is in the result and a refused one is not.
        options = {r["player"]: r["option"] for r in result["results"]}
        assert (options[alice.pk] is not None) == ack_a.accepted
        assert (options[bob.pk] is not None) == ack_b.accepted
        # Refused: closed, or already followed by the next round (no reveal pause).
        assert {ack_a.reason, ack_b.reason} <= {None, "round_closed", "wrong_round"}
        closed_by_timer = [*closes, thread_close].count(True)
        assert closed_by_timer <= 1
        if closed_by_timer == 0:
            assert ack_a.accepted and ack_b.accepted
    heard = await listener.until("game_over")
    everything = await listener.drain(0.1)
    assert everything == []
    room = await services.room_get(code=code)
    assert room.status == "finished" and room.seq == 2 + 1 + 2 * rounds + 1


async def test_every_broadcast_of_a_game_is_numbered_once_in_order(make_user, listen):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice, rounds=3, answer_seconds=60, reveal_seconds=0)
    listener = await listen(code)
    await connect(code, alice)
    await connect(code, bob)
    await services.game_start(code=code, by=alice.pk)
    for number in (1, 2, 3):
        await answer(code, alice, number, 0)
        await answer(code, bob, number, 0)
    heard = await listener.until("game_over")
    assert [f["seq"] for f in heard] == list(range(1, len(heard) + 1))
    assert {f["type"] for f in heard} <= BROADCASTS
    assert [f["type"] for f in heard] == (
        ["player_joined"] * 2 + ["game_started"] + ["question", "round_result"] * 3 + ["game_over"]
    )


# --- The next question ----------------------------------------------------------------------------


async def test_the_next_question_opens_after_the_reveal_pause_once(make_user, listen, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=60, reveal_seconds=0.2)
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    room = await services.room_get(code=code)
    assert room.next_at is not None
    assert timers_of(timers, scheduler.ROUND_ADVANCE) == [(scheduler.ROUND_ADVANCE, [code, 1], room.next_at)]
    listener = await listen(code)
    # Wrong round numbers do nothing; the right one waits for the pause to end.
    assert await services.round_advance_due(code=code, round_number=2) is False
    assert await services.round_advance_due(code=code, round_number=0) is False
    outcomes = await asyncio.gather(
        *(services.round_advance_due(code=code, round_number=1) for _ in range(5))
    )
    assert outcomes.count(True) == 1
    assert services.now_ms() >= room.next_at
    question = await listener.next()
    assert question["type"] == "question" and question["round"] == 2
    assert await listener.drain(0.1) == []
    assert await services.round_advance_due(code=code, round_number=1) is False


async def test_a_next_question_due_far_ahead_is_not_opened_early(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=60, reveal_seconds=10)
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    before = await room_dict(code)
    assert await services.round_advance_due(code=code, round_number=1) is False
    assert await room_dict(code) == before


async def test_with_no_reveal_pause_the_next_question_follows_the_result_at_once(make_user, listen):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=60, reveal_seconds=0)
    listener = await listen(code)
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    heard = [await listener.next(), await listener.next()]
    assert [(f["type"], f["round"]) for f in heard] == [("round_result", 1), ("question", 2)]


async def test_the_last_result_is_followed_by_game_over_at_once_with_standings(make_user, listen):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await game_playing([alice, bob, carol], rounds=1, answer_seconds=60, reveal_seconds=10)
    listener = await listen(code)
    await answer(code, bob, 1, await correct_option(code))
    await answer(code, alice, 1, await wrong_option(code))
    await answer(code, carol, 1, await correct_option(code))
    result, over = await listener.next(), await listener.next()
    assert result["type"] == "round_result" and over["type"] == "game_over"
    assert [s["player"] for s in over["standings"]] == [bob.pk, carol.pk, alice.pk]
    assert [s["rank"] for s in over["standings"]] == [1, 2, 3]
    assert over["standings"][0]["score"] >= over["standings"][1]["score"] > 0 == over["standings"][2]["score"]
    room = await services.room_get(code=code)
    assert room.status == "finished" and room.next_at is None and room.finished_at is not None
