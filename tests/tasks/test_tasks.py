"""The Celery tasks of game/tasks.py, run as a worker runs them (Task.apply in a thread of its own).

They take ids, re-read the state and are idempotent: each is fired early, late, twice, for the
wrong round and from several workers at once. Timers the services arm are recorded (`timers`).
"""

from __future__ import annotations

import asyncio

from django.conf import settings as django_settings
from prometheus_client import REGISTRY

from game import faults, scheduler, services
from game.engine.model import TRIGGER_DEADLINE
from nuxtest.celery import app as celery_app
from tests.play import (
    PLAYING,
    answer,
    game_playing,
    in_threads,
    quick_join,
    results_rows,
    room_dict,
    sleep_past,
    task_call,
    task_run,
    timer_fire,
    timers_of,
    users,
)

pytestmark = PLAYING

ROUND_DEADLINE = scheduler.ROUND_DEADLINE
ROUND_ADVANCE = scheduler.ROUND_ADVANCE
QUICKMATCH_AUTOSTART = scheduler.QUICKMATCH_AUTOSTART
RESULTS_STORE = scheduler.RESULTS_STORE
ROOMS_SWEEP = "game.tasks.rooms_sweep"


async def rows(code: str) -> int:
    return len(await results_rows(code))


def test_every_task_the_services_and_beat_name_is_registered():
    import game.tasks  # noqa: F401 - registers the tasks, as the worker's autodiscovery does

    beat = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    for name in {ROUND_DEADLINE, ROUND_ADVANCE, QUICKMATCH_AUTOSTART, RESULTS_STORE, ROOMS_SWEEP, *beat}:
        assert name in celery_app.tasks, name


# --- round_deadline -------------------------------------------------------------------------------


async def test_round_deadline_closes_the_round_it_was_armed_for_once(make_user, listen, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    (timer,) = timers_of(timers, ROUND_DEADLINE)
    assert timer[1] == [code, 1]
    listener = await listen(code)
    # Armed with a countdown to the deadline; a worker may run it a little early: it waits.
    assert await timer_fire(timer) is True
    room = await services.room_get(code=code)
    assert room.round is not None and room.round.trigger == TRIGGER_DEADLINE
    assert room.round.closed_at is not None and room.round.closed_at >= room.round.deadline
    assert (await listener.next())["type"] == "round_result"
    # Redelivered (acks_late) or run twice: nothing more.
    before = await room_dict(code)
    assert await timer_fire(timer) is False
    assert await room_dict(code) == before
    assert await listener.drain(0.1) == []


async def test_the_round_close_lag_runs_to_the_result_s_broadcast(make_user, listen, timers):
    # GAME.md: a deadline-closed round's result goes out within 250 ms; a slow channel layer
    # delays what players see, so it must show in the lag (and its alert), not only the
    # change of state before the broadcast.
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    (timer,) = timers_of(timers, ROUND_DEADLINE)
    listener = await listen(code)

    def lag_sum() -> float:
        return REGISTRY.get_sample_value("nuxtest_round_close_lag_seconds_sum") or 0.0

    before = lag_sum()
    await faults.update({"channel_layer_delay_ms": 400})
    try:
        assert await timer_fire(timer) is True
    finally:
        await faults.clear()
    assert (await listener.next())["type"] == "round_result"
    assert lag_sum() - before >= 0.4


async def test_round_deadline_of_an_earlier_round_leaves_the_current_round_open(make_user, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=3, answer_seconds=0.5, reveal_seconds=0)
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    round_2 = (await services.room_get(code=code)).round
    assert round_2 is not None and round_2.number == 2
    await sleep_past(round_2.deadline - 300)  # the deadline of round 1 is long past
    before = await room_dict(code)
    assert await task_call(ROUND_DEADLINE, code, 1) is False
    assert await task_call(ROUND_DEADLINE, code, 3) is False
    assert await room_dict(code) == before


async def test_round_deadline_fired_far_too_early_leaves_the_round_open(make_user, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    before = await room_dict(code)
    assert await timer_fire(timers_of(timers, ROUND_DEADLINE)[0]) is False
    assert await room_dict(code) == before


async def test_round_deadline_for_a_room_that_is_gone_does_nothing():
    assert await task_call(ROUND_DEADLINE, "ZZZZZZ", 1) is False


async def test_round_deadline_run_by_several_workers_at_once_closes_the_round_once(make_user, listen, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    (_, args, _) = timers_of(timers, ROUND_DEADLINE)[0]
    listener = await listen(code)
    outcomes = await asyncio.to_thread(in_threads, 6, lambda _: task_run(ROUND_DEADLINE, *args))
    assert outcomes.count(True) == 1
    assert [f["type"] for f in await listener.drain(0.2)] == ["round_result"]


# --- round_advance --------------------------------------------------------------------------------


async def test_round_advance_opens_the_next_question_after_the_reveal_once(make_user, listen, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=60, reveal_seconds=0.2)
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    (timer,) = timers_of(timers, ROUND_ADVANCE)
    assert timer[1] == [code, 1]
    listener = await listen(code)
    assert await timer_fire(timer) is True
    question = await listener.next()
    assert question["type"] == "question" and question["round"] == 2
    # The new question arms its own deadline; the advance, run again, does nothing.
    assert timers_of(timers, ROUND_DEADLINE)[-1] == (
        ROUND_DEADLINE,
        [code, 2],
        question["deadline"] + django_settings.NUXTEST_DEADLINE_GRACE_MS,
    )
    assert await timer_fire(timer) is False
    assert await task_call(ROUND_ADVANCE, code, 2) is False
    assert await listener.drain(0.1) == []


async def test_round_advance_far_too_early_or_for_another_round_does_nothing(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=60, reveal_seconds=10)
    before = await room_dict(code)
    assert await task_call(ROUND_ADVANCE, code, 1) is False  # round 1 is still open
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    before = await room_dict(code)
    assert await task_call(ROUND_ADVANCE, code, 1) is False  # 10 s of reveal ahead
    assert await task_call(ROUND_ADVANCE, code, 0) is False
    assert await task_call(ROUND_ADVANCE, "ZZZZZZ", 1) is False
    assert await room_dict(code) == before


# --- quickmatch_autostart -------------------------------------------------------------------------


async def test_quickmatch_autostart_starts_the_room_it_was_armed_for_once(make_user, settings, timers):
    settings.NUXTEST_QUICK_START_SECONDS = 0.2
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_join(alice)
    await quick_join(bob)
    (timer,) = timers_of(timers, QUICKMATCH_AUTOSTART)
    assert timer[1] == [code]
    assert await timer_fire(timer) is True
    room = await services.room_get(code=code)
    assert room.status == "playing" and room.round is not None and room.round.number == 1
    assert await timer_fire(timer) is False
    assert len(timers_of(timers, ROUND_DEADLINE)) == 1


async def test_quickmatch_autostart_far_too_early_or_for_a_lone_player_does_nothing(make_user, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_join(alice)
    assert await task_call(QUICKMATCH_AUTOSTART, code) is False
    await quick_join(bob)
    assert await timer_fire(timers_of(timers, QUICKMATCH_AUTOSTART)[0]) is False  # 5 s ahead
    assert (await services.room_get(code=code)).status == "lobby"
    assert await task_call(QUICKMATCH_AUTOSTART, "ZZZZZZ") is False


# --- results_store --------------------------------------------------------------------------------


async def test_results_store_writes_a_finished_games_results_once_however_often_it_runs(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=1, answer_seconds=60)
    assert await task_call(RESULTS_STORE, code) is False  # not finished yet
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    assert await rows(code) == 2
    assert await task_call(RESULTS_STORE, code) is True
    outcomes = await asyncio.to_thread(in_threads, 4, lambda _: task_run(RESULTS_STORE, code))
    assert outcomes == [True] * 4
    assert await rows(code) == 2
    assert await task_call(RESULTS_STORE, "ZZZZZZ") is False


# --- rooms_sweep ----------------------------------------------------------------------------------


async def test_rooms_sweep_does_the_overdue_steps_and_reports_them(make_user, settings, listen):
    settings.NUXTEST_SWEEP_GRACE_SECONDS = 0.05
    alice, bob = await users(make_user, "alice", "bob")
    assert await task_call(ROOMS_SWEEP) == {}
    code = await game_playing([alice, bob], rounds=1, answer_seconds=0.5)
    deadline = (await services.room_get(code=code)).round.deadline  # type: ignore[union-attr]
    listener = await listen(code)
    await sleep_past(deadline + 50)
    assert await task_call(ROOMS_SWEEP) == {"close": 1}
    assert [f["type"] for f in await listener.until("game_over")] == ["round_result", "game_over"]
    assert await rows(code) == 2
    assert await task_call(ROOMS_SWEEP) == {}


async def test_a_game_nobody_answers_is_played_to_the_end_by_its_timers_alone(make_user, listen, timers):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=0.1)
    listener = await listen(code)
    fired = 0
    while (await services.room_get(code=code)).status == "playing":
        timer = timers[fired]
        fired += 1
        await timer_fire(timer)
    assert [t[0] for t in timers] == [ROUND_DEADLINE, ROUND_ADVANCE, ROUND_DEADLINE]
    heard = await listener.until("game_over")
    assert [f["type"] for f in heard] == ["round_result", "question", "round_result", "game_over"]
    assert await rows(code) == 2
