"""The end of a game: results stored exactly once, and abandoned games that store none."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from prometheus_client import REGISTRY

from game import services
from game.engine import rules
from tests.play import (
    PLAYING,
    answer,
    connect,
    correct_option,
    disconnect,
    game_playing,
    in_threads,
    on_own_loop,
    results_rows,
    results_unstore,
    room_dict,
    room_new,
    sleep_past,
    users,
    wrong_option,
)

pytestmark = PLAYING


async def finished_game(make_user: Any) -> tuple[str, list[Any]]:
    """A finished 2-round game of three: alice right twice, bob wrong then right, carol never answers."""
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await game_playing([alice, bob, carol], rounds=2, answer_seconds=60, reveal_seconds=0)
    await disconnect(code, carol)
    await answer(code, alice, 1, await correct_option(code))
    await answer(code, bob, 1, await wrong_option(code))
    await answer(code, alice, 2, await correct_option(code))
    await answer(code, bob, 2, await correct_option(code))
    assert (await services.room_get(code=code)).status == "finished"
    return code, [alice, bob, carol]


async def test_a_finished_game_stores_one_result_per_member_with_its_standing(make_user):
    code, (alice, bob, carol) = await finished_game(make_user)
    room = await services.room_get(code=code)
    stored = await results_rows(code)
    assert room.results_stored is True and room.finished_at is not None
    assert [(r.user_id, r.rank, r.correct, r.rounds) for r in stored] == [
        (alice.pk, 1, 2, 2),
        (bob.pk, 2, 1, 2),
        (carol.pk, 3, 0, 2),
    ]
    by_id = {p.id: p for p in room.players}
    for r in stored:
        assert str(r.game_id) == room.game_id and r.room == code
        assert r.score == by_id[r.user_id].score
        assert r.created_at == datetime.fromtimestamp(room.finished_at / 1000, tz=UTC)
    # The mean time of the accepted answers, right or wrong; none for who never answered.
    assert stored[0].avg_answer_ms == round(by_id[alice.pk].answered_ms / 2)
    assert stored[1].avg_answer_ms == round(by_id[bob.pk].answered_ms / 2)
    assert stored[2].avg_answer_ms is None and stored[2].score == 0


async def test_storing_the_results_again_writes_nothing_more(make_user):
    code, _ = await finished_game(make_user)
    first = [(r.pk, r.user_id, r.score) for r in await results_rows(code)]
    assert await services.results_store(code=code) is True
    assert [(r.pk, r.user_id, r.score) for r in await results_rows(code)] == first


async def test_results_stored_by_many_racing_retries_are_written_exactly_once(make_user):
    code, _ = await finished_game(make_user)
    first = sorted((r.user_id, r.score, r.rank) for r in await results_rows(code))
    await results_unstore(code)
    assert await results_rows(code) == []
    on_loop = asyncio.gather(*(services.results_store(code=code) for _ in range(8)))
    in_workers = asyncio.to_thread(
        in_threads, 6, lambda _: on_own_loop(lambda: services.results_store(code=code))
    )
    loop_results, thread_results = await asyncio.gather(on_loop, in_workers)
    assert all([*loop_results, *thread_results])
    assert sorted((r.user_id, r.score, r.rank) for r in await results_rows(code)) == first
    assert (await services.room_get(code=code)).results_stored is True


def results_written_total() -> float:
    return REGISTRY.get_sample_value("nuxtest_results_written_total") or 0.0


async def test_results_written_by_racing_writers_are_counted_once(make_user):
    # docs/telemetry.md: "a retried or raced write adds nothing". Each writer counted the
    # game's rows before and after its insert; at READ COMMITTED (PostgreSQL's default, and
    # Django's on MySQL/MariaDB) a writer whose insert waited for another's uncommitted rows
    # saw them in its second count and counted them again.
    code, _ = await finished_game(make_user)
    room = await services.room_get(code=code)
    assert room.game_id is not None and room.finished_at is not None
    rows = rules.results(room)
    await results_unstore(code)
    before = results_written_total()
    first_inserted = threading.Event()

    def hold_after_insert(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("INSERT"):
            first_inserted.set()
            time.sleep(0.3)  # uncommitted: the second writer starts and waits on these rows
        return result

    def write(i: int) -> int:
        try:
            if i == 0:
                with connection.execute_wrapper(hold_after_insert):
                    return services._results_write(
                        room.game_id, code, [dict(r) for r in rows], room.finished_at
                    )
            assert first_inserted.wait(5)
            return services._results_write(room.game_id, code, [dict(r) for r in rows], room.finished_at)
        finally:
            connection.close()

    written = await asyncio.to_thread(in_threads, 2, write)
    assert len(await results_rows(code)) == 3
    assert written == [3, 0]
    assert results_written_total() - before == 3


async def test_a_crash_after_writing_but_before_marking_the_results_does_not_write_them_twice(make_user):
    code, _ = await finished_game(make_user)
    await results_unstore(code, rows_too=False)
    assert await services.results_store(code=code) is True
    assert len(await results_rows(code)) == 3
    assert (await services.room_get(code=code)).results_stored is True


async def test_an_unfinished_or_unknown_game_stores_no_results(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    assert await services.results_store(code=code) is False
    assert await services.results_store(code="ZZZZZZ") is False
    assert await results_rows(code) == []


# --- Abandoned games --------------------------------------------------------------------------


async def test_a_game_nobody_has_been_connected_to_for_the_abandon_time_is_abandoned_without_results(
    make_user, settings, listen
):
    settings.NUXTEST_ABANDON_SECONDS = 0.2
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=1, answer_seconds=60)
    await answer(code, alice, 1, 0)
    await disconnect(code, alice)
    await disconnect(code, bob)
    empty_since = (await services.room_get(code=code)).empty_since
    assert empty_since is not None
    listener = await listen(code)
    await sleep_past(empty_since + 200)
    assert await services.rooms_sweep() == {"abandon": 1}
    room = await services.room_get(code=code)
    assert room.status == "abandoned" and room.round is not None and not room.round.is_open
    # Nothing more happens to it: no close, no result, no rows, no broadcast.
    before = await room_dict(code)
    assert await services.round_close_due(code=code, round_number=1) is False
    assert (
        await services.answer_submit(code=code, user_id=bob.pk, round_number=1, option=0)
    ).accepted is False
    assert await services.results_store(code=code) is False
    assert await services.rooms_sweep() == {}
    assert await room_dict(code) == before
    assert await results_rows(code) == []
    assert await listener.drain(0.1) == []
    # A returning member sees how it ended.
    state = await connect(code, alice)
    assert state["status"] == "abandoned" and state["question"] is None


async def test_a_game_is_not_abandoned_while_someone_is_connected_or_before_the_abandon_time(
    make_user, settings
):
    settings.NUXTEST_ABANDON_SECONDS = 0.2
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    await disconnect(code, bob)
    await asyncio.sleep(0.25)
    assert await services.rooms_sweep() == {}
    settings.NUXTEST_ABANDON_SECONDS = 60
    await disconnect(code, alice)
    assert await services.rooms_sweep() == {}
    # Back before the time is up: the game goes on.
    await connect(code, alice)
    settings.NUXTEST_ABANDON_SECONDS = 0.01
    await asyncio.sleep(0.02)
    assert await services.rooms_sweep() == {}
    assert (await services.room_get(code=code)).status == "playing"


async def test_a_lobby_nobody_is_connected_to_is_abandoned_after_the_lobby_idle_time(make_user, settings):
    settings.NUXTEST_LOBBY_IDLE_SECONDS = 0.1
    alice, bob = await users(make_user, "alice", "bob")
    idle = await room_new(alice)
    busy = await room_new(bob)
    await connect(busy, bob)
    await sleep_past((await services.room_get(code=idle)).created_at + 100)
    assert await services.rooms_sweep() == {"abandon": 1}
    assert (await services.room_get(code=idle)).status == "abandoned"
    assert (await services.room_get(code=busy)).status == "lobby"


async def test_abandoning_a_room_someone_is_connected_to_does_nothing(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], answer_seconds=60)
    await disconnect(code, bob)
    before = await room_dict(code)
    assert await services.room_abandon(code=code) is False
    assert await room_dict(code) == before


async def test_a_database_that_does_not_answer_holds_neither_the_game_over_nor_its_process(
    make_user, monkeypatch
):
    # PostgreSQL down or restarting as a game ends: the results write waited DB_POOL_TIMEOUT
    # (10 s) for a connection, and the last round's result and `game_over` with it; the
    # worker process that closed the round (and the sweep retrying the write every second)
    # was held as long, so the rounds of other games closed up to 8 s late.
    from django.db import OperationalError

    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=1, answer_seconds=60, reveal_seconds=0)
    write = services._results_write
    database_back = threading.Event()
    writes: list[str] = []

    def waiting_for_a_connection(*args: Any) -> int:
        writes.append(args[1])
        database_back.wait(10)
        raise OperationalError("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr(services, "_results_write", waiting_for_a_connection)
    await answer(code, alice, 1, 0)
    started = time.monotonic()
    await answer(code, bob, 1, 1)  # closes the round: the game ends
    assert time.monotonic() - started < services.RESULTS_WAIT_SECONDS + 1
    room = await services.room_get(code=code)
    assert room.status == "finished" and not room.results_stored
    # The sweeper does not start a second write while the first still waits.
    assert await services.rooms_sweep() == {}
    assert writes == [code]
    # The database is back: the waiting write fails, and the sweeper writes the rows, once.
    monkeypatch.setattr(services, "_results_write", write)
    database_back.set()
    for _ in range(100):
        if not services.results_store_pending(code):
            break
        await asyncio.sleep(0.05)
    assert await services.rooms_sweep() == {"store_results": 1}
    assert sorted(r.user_id for r in await results_rows(code)) == sorted([alice.pk, bob.pk])
    assert await services.rooms_sweep() == {}
