"""A close Redis could not take when it happened is recorded once Redis is back (game/presence.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from game import presence, store
from tests.play import NAMES, PLAYING, PlayerSocket, room_new, sockets_open, start_over_socket, users

pytestmark = PLAYING


@pytest.fixture(autouse=True)
def heartbeat_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests call closes_retry themselves, as the heartbeat would: the process's own
    heartbeat (its first beat at the first connection, then one every 10 s) must not beat
    them to it, as it did in a slow CI run, recording a close inside a window the test
    asserts is quiet."""
    monkeypatch.setattr(presence, "HEARTBEAT_SECONDS", 3600)


@contextlib.contextmanager
def redis_away() -> Iterator[None]:
    """The game state's Redis refuses this process's connections (nothing listens where it points)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.get_running_loop()
    real = store.client()
    store._clients[loop] = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        yield
    finally:
        store._clients[loop] = real


async def user_conns(user_id: int) -> list[bytes]:
    """The connections Redis counts for a user."""
    return list(await store.client().zrange(store.key("userconns", user_id), 0, -1))


async def test_a_player_leaving_while_redis_is_away_leaves_the_room_once_redis_is_back(make_user, caplog):
    alice_user, bob_user = await users(make_user, *NAMES[:2])
    code = await room_new(alice_user, rounds=1, answer_seconds=60, reveal_seconds=0)
    (alice,) = await sockets_open(code, alice_user)
    bob = await PlayerSocket.open(code, bob_user, web=2)
    await alice.until("player_joined")
    await start_over_socket([alice, bob])
    assert (await alice.answer(1, 0))["accepted"]
    with redis_away():
        await bob.close()  # the disconnect completes in the process all the same
    assert await alice.quiet(0.2), "nothing reached the room while Redis was away"
    assert len(await user_conns(bob_user.pk)) == 1
    deferred = [r for r in caplog.records if getattr(r, "event", "") == "ws_close_deferred"]
    assert [(r.room, r.user_id) for r in deferred] == [(code, bob_user.pk)]

    # The next heartbeat records it: Bob leaves, and the round everyone connected answered closes.
    assert await presence.closes_retry() == 0
    left = await alice.recv()
    assert left["type"] == "player_left" and left["player"]["id"] == bob_user.pk
    result = await alice.recv()
    assert result["type"] == "round_result" and [r["option"] for r in result["results"]] == [0, None]
    assert (await alice.recv())["type"] == "game_over"
    assert await user_conns(bob_user.pk) == []
    recorded = [r for r in caplog.records if getattr(r, "event", "") == "ws_close_recorded"]
    assert [(r.room, r.user_id) for r in recorded] == [(code, bob_user.pk)]
    await alice.close()


async def test_closes_wait_while_redis_is_still_away_and_none_is_recorded_twice(make_user):
    alice_user, bob_user, carol_user = await users(make_user, *NAMES[:3])
    code = await room_new(alice_user)
    (alice,) = await sockets_open(code, alice_user)
    bob = await PlayerSocket.open(code, bob_user, web=2)
    carol = await PlayerSocket.open(code, carol_user, web=3)
    await alice.until("player_joined")
    await alice.until("player_joined")
    with redis_away():
        await bob.close()
        await carol.close()
        assert await presence.closes_retry() == 2
    assert await presence.closes_retry() == 0
    assert await presence.closes_retry() == 0
    left = [await alice.recv(), await alice.recv()]
    assert [f["type"] for f in left] == ["player_left", "player_left"]
    assert sorted(f["player"]["id"] for f in left) == [bob_user.pk, carol_user.pk]
    assert await alice.quiet(0.2)
    state = await alice.sync()
    assert [p["connected"] for p in state["players"]] == [True, False, False]
    await alice.close()
