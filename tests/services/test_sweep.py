"""The sweeper does every overdue step whose timer was lost; readiness of the database and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from game import services, store
from game.engine import rules
from game.engine.model import TRIGGER_DEADLINE
from tests.play import (
    LIVE_WEB,
    PLAYING,
    answer,
    conn_id,
    connect,
    game_playing,
    quick_join,
    quick_place,
    results_rows,
    results_unstore,
    room_dict,
    room_new,
    sleep_past,
    users,
)

pytestmark = PLAYING

GRACE_MS = 50


@pytest.fixture(autouse=True)
def short_grace(settings: Any) -> None:
    """Steps are overdue 50 ms after their time instead of 1 s."""
    settings.NUXTEST_SWEEP_GRACE_SECONDS = GRACE_MS / 1000


async def test_a_sweep_with_nothing_overdue_does_nothing(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    assert await services.rooms_sweep() == {}
    code = await game_playing([alice, bob], answer_seconds=60)
    before = await room_dict(code)
    assert await services.rooms_sweep() == {}
    assert await room_dict(code) == before


async def test_a_round_whose_deadline_timer_was_lost_is_closed_by_the_sweep_once_overdue(
    make_user, listen, settings
):
    grace_ms = 500  # long enough to sweep once within it, even on a busy machine
    settings.NUXTEST_SWEEP_GRACE_SECONDS = grace_ms / 1000
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    await answer(code, alice, 1, 0)
    deadline = (await services.room_get(code=code)).round.deadline  # type: ignore[union-attr]
    listener = await listen(code)
    await sleep_past(deadline)
    # Past the deadline but within the grace: the timer may still come.
    if services.now_ms() < deadline + grace_ms - 200:
        assert await services.rooms_sweep() == {}
    await sleep_past(deadline + grace_ms)
    assert await services.rooms_sweep() == {"close": 1}
    result = await listener.next()
    assert result["type"] == "round_result" and [r["option"] for r in result["results"]] == [0, None]
    room = await services.room_get(code=code)
    assert room.round is not None and room.round.trigger == TRIGGER_DEADLINE
    assert await services.rooms_sweep() == {}
    assert await listener.drain(0.1) == []


async def test_a_next_question_whose_timer_was_lost_is_opened_by_the_sweep(make_user, listen):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=60, reveal_seconds=0.1)
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 0)
    next_at = (await services.room_get(code=code)).next_at
    assert next_at is not None
    listener = await listen(code)
    await sleep_past(next_at + GRACE_MS)
    assert await services.rooms_sweep() == {"advance": 1}
    question = await listener.next()
    assert question["type"] == "question" and question["round"] == 2
    assert await services.rooms_sweep() == {}


async def test_a_quick_room_whose_start_timer_was_lost_is_started_by_the_sweep(make_user, settings):
    settings.NUXTEST_QUICK_START_SECONDS = 0.1
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_join(alice)
    await quick_join(bob)
    next_at = (await services.room_get(code=code)).next_at
    assert next_at is not None
    await sleep_past(next_at + GRACE_MS)
    assert await services.rooms_sweep() == {"autostart": 1}
    assert (await services.room_get(code=code)).status == "playing"


async def finished_unstored(make_user) -> tuple[str, Any, Any]:
    """A one-round game of alice and bob, finished, whose results were never stored."""
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=1, answer_seconds=60)
    await answer(code, alice, 1, 0)
    await answer(code, bob, 1, 1)
    await results_unstore(code)
    return code, alice, bob


async def test_results_that_were_not_stored_are_stored_by_the_sweep(make_user):
    code, _, _ = await finished_unstored(make_user)
    assert await services.rooms_sweep() == {"store_results": 1}
    assert len(await results_rows(code)) == 2
    assert await services.rooms_sweep() == {}


async def test_a_player_deleted_since_the_game_gets_no_row_and_the_others_theirs(make_user):
    code, alice, bob = await finished_unstored(make_user)
    await sync_to_async(bob.delete)()
    # Before, the foreign key failed the write, and with it every later sweep of every room.
    assert await services.rooms_sweep() == {"store_results": 1}
    assert [r.user_id for r in await results_rows(code)] == [alice.pk]
    assert await services.rooms_sweep() == {}


async def test_connections_of_a_web_process_whose_heartbeat_stopped_are_closed_by_the_sweep(
    make_user, listen
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice, answer_seconds=60, reveal_seconds=10)
    # Bob's only connection is on a process that died (no heartbeat); Alice has one on each.
    await connect(code, alice)
    await connect(code, alice, tab=2, instance="deadweb")
    await connect(code, bob, instance="deadweb")
    await services.game_start(code=code, by=alice.pk)
    listener = await listen(code)
    await answer(code, alice, 1, 0)
    assert await services.rooms_sweep() == {}
    heard = [await listener.next(), await listener.next()]
    assert heard[0] == {
        "type": "player_left",
        "player": {"id": bob.pk, "name": "bob"},
        "seq": heard[0]["seq"],
    }
    # Bob was the one connected player who had not answered: the round closes with his leaving.
    assert heard[1]["type"] == "round_result"
    room = await services.room_get(code=code)
    assert [(p.id, p.conns) for p in room.players] == [(alice.pk, [conn_id(alice)]), (bob.pk, [])]
    assert await listener.drain(0.1) == []


async def test_a_room_whose_key_expired_is_forgotten_by_the_sweep(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await quick_place(alice)
    kept = await game_playing([bob], answer_seconds=60)
    await store.client().delete(store.key("room", code))
    assert await services.rooms_sweep() == {"forgotten": 1}
    assert await store.rooms_active() == [kept]
    assert await store.quick_candidates() == []
    assert await services.rooms_sweep() == {}


async def test_racing_sweeps_close_an_overdue_round_once(make_user, listen):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    deadline = (await services.room_get(code=code)).round.deadline  # type: ignore[union-attr]
    listener = await listen(code)
    await sleep_past(deadline + GRACE_MS)
    done = await asyncio.gather(*(services.rooms_sweep() for _ in range(6)))
    assert sum(d.get("close", 0) for d in done) == 1
    assert [f["type"] for f in await listener.drain(0.2)] == ["round_result"]


@pytest.fixture
def short_republish(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpublished broadcasts are the sweeper's to publish after 50 ms instead of 5 s."""
    monkeypatch.setattr(services, "REPUBLISH_AFTER_MS", GRACE_MS)


async def close_without_publishing(code: str) -> list[dict[str, Any]]:
    """Close the open round past its deadline as a worker's round_deadline task does, and
    die (SIGKILL, the OOM killer) after its compare-and-set, before its broadcast."""
    room = await services.room_get(code=code)
    assert room.round is not None
    now = max(services.now_ms(), room.round.deadline)
    _, evts = await store.room_update(code, lambda r: rules.round_close(r, now=now, trigger=TRIGGER_DEADLINE))
    assert evts
    return evts


async def test_a_round_result_whose_process_died_before_broadcasting_it_is_broadcast_by_the_sweep(
    make_user, listen, short_republish
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=0.5, reveal_seconds=10)
    await answer(code, alice, 1, 0)
    listener = await listen(code)
    deadline = (await services.room_get(code=code)).round.deadline  # type: ignore[union-attr]
    await sleep_past(deadline)
    lost = await close_without_publishing(code)
    await asyncio.sleep(2 * GRACE_MS / 1000)
    # The redelivered task finds the round closed and does nothing.
    assert await services.round_close_due(code=code, round_number=1) is False
    done = await services.rooms_sweep()
    frames = await listener.drain(0.3)
    assert frames == lost and frames[0]["type"] == "round_result"
    assert done == {"republished": 1}
    result = frames[0]
    assert [r["option"] for r in result["results"]] == [0, None]
    assert await services.rooms_sweep() == {}
    assert await listener.drain(0.1) == []


async def test_a_game_over_whose_process_died_before_broadcasting_it_is_broadcast_by_the_sweep(
    make_user, listen, short_republish
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=1, answer_seconds=0.5)
    listener = await listen(code)
    deadline = (await services.room_get(code=code)).round.deadline  # type: ignore[union-attr]
    await sleep_past(deadline)
    await close_without_publishing(code)
    await asyncio.sleep(2 * GRACE_MS / 1000)
    done = await services.rooms_sweep()
    frames = await listener.drain(0.3)
    assert [f["type"] for f in frames] == ["round_result", "game_over"]
    assert done == {"republished": 1}
    # Written once, and before game_over went out.
    assert len(await results_rows(code)) == 2
    assert (await services.room_get(code=code)).results_stored
    assert await services.rooms_sweep() == {}
    assert await listener.drain(0.1) == []


async def test_broadcasts_published_by_their_process_are_not_published_again(
    make_user, listen, short_republish
):
    alice, bob = await users(make_user, "alice", "bob")
    code = await game_playing([alice, bob], rounds=2, answer_seconds=60, reveal_seconds=10)
    await answer(code, alice, 1, 0)
    listener = await listen(code)
    await answer(code, bob, 1, 1)
    assert [f["type"] for f in await listener.drain(0.2)] == ["round_result"]
    await asyncio.sleep(2 * GRACE_MS / 1000)
    assert await services.rooms_sweep() == {}
    assert await listener.drain(0.1) == []


# --- Readiness ------------------------------------------------------------------------------------


async def test_readiness_reports_the_database_and_redis_up():
    assert await services.readiness() == {"database": True, "redis": True}


async def test_readiness_reports_redis_down_when_it_cannot_be_reached():
    # A loop of its own, so that its Redis client is made for the unreachable address.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        checks = await asyncio.to_thread(asyncio.run, services.readiness())
    assert checks == {"database": True, "redis": False}


async def test_the_live_test_web_process_keeps_its_connections(make_user):
    (alice,) = await users(make_user, "alice")
    code = await game_playing([alice], answer_seconds=60)
    assert await store.instances_alive([LIVE_WEB, "deadweb"]) == {LIVE_WEB}
    assert await services.rooms_sweep() == {}
    assert (await services.room_get(code=code)).players[0].connected
