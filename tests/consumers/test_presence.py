"""A close Redis could not take when it happened is recorded once Redis is back (game/presence.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from game import presence, services, store
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


async def heartbeat_lapse() -> None:
    """This process's heartbeat key is gone while it lives: Redis restarted without its data,
    or was away for longer than the key's TTL."""
    await store.client().delete(store.key("instance", presence.INSTANCE_ID))


async def connected(code: str) -> list[bool]:
    """Whether each member of the room is connected, as the room in Redis says."""
    return [bool(p.conns) for p in (await store.room_get(code)).players]


async def test_open_connections_the_sweeper_took_out_during_a_heartbeat_lapse_are_put_back(
    make_user, monkeypatch
):
    # The heartbeat every 50 ms here (10 s in production), so that the test sees the next one.
    monkeypatch.setattr(presence, "HEARTBEAT_SECONDS", 0.05)
    alice_user, bob_user = await users(make_user, *NAMES[:2])
    code = await room_new(alice_user, rounds=2, answer_seconds=60, reveal_seconds=0)
    (alice,) = await sockets_open(code, alice_user)
    bob = await PlayerSocket.open(code, bob_user, web=2)
    await alice.until("player_joined")
    await start_over_socket([alice, bob])
    # The sweeper runs while the heartbeat is gone: it takes both open connections out, as it
    # would a dead process's (the bug: the process lived on, and they stayed out for good —
    # rounds no longer waited for these players, and the room was abandoned 60 s later).
    await heartbeat_lapse()
    await services.rooms_sweep()
    assert await connected(code) == [False, False]
    # The next heartbeat finds its key gone and puts them back.
    for _ in range(100):
        if await connected(code) == [True, True]:
            break
        await asyncio.sleep(0.05)
    assert await connected(code) == [True, True]
    assert (await store.room_get(code)).empty_since is None, "the room would be abandoned"
    state = await bob.resync()
    assert [p["connected"] for p in state["players"]] == [True, True]
    # Play goes on: the round still waits for both, and closes when both have answered.
    assert (await alice.answer(1, 0))["accepted"]
    room = await store.room_get(code)
    assert room.round is not None and room.round.is_open, "the round waits for Bob"
    assert (await bob.answer(1, 1))["accepted"]
    result = await bob.until("round_result")
    assert [r["option"] for r in result["results"]] == [0, 1]
    await alice.close()
    await bob.close()


async def game_of_two(make_user: Any) -> tuple[str, PlayerSocket, PlayerSocket]:
    """Alice (web process 1) and Bob (web process 2) playing round 1 of a room."""
    alice_user, bob_user = await users(make_user, *NAMES[:2])
    code = await room_new(alice_user, rounds=2, answer_seconds=60)
    (alice,) = await sockets_open(code, alice_user)
    bob = await PlayerSocket.open(code, bob_user, web=2)
    await alice.until("player_joined")
    await start_over_socket([alice, bob])
    return code, alice, bob


async def redis_data_lost(code: str) -> None:
    """Redis restarted without its data: the room is gone, and the heartbeat with it."""
    await store.client().delete(store.key("room", code))
    await heartbeat_lapse()


async def closed_with(sock: PlayerSocket) -> int:
    """The close code of the next message the server sends this socket (it must be a close)."""
    message = await sock.comm.receive_output(5)
    assert message["type"] == "websocket.close", message
    return int(message["code"])


async def test_a_frame_on_a_connection_whose_room_redis_lost_closes_it_4404(make_user):
    code, alice, bob = await game_of_two(make_user)
    await redis_data_lost(code)
    # `sync` (what `internal_error` tells a client to send) and `answer` got `internal_error`,
    # the connection left open on a room that no longer existed; a handshake gets 4404.
    await bob.send({"type": "sync"})
    assert await closed_with(bob) == 4404
    await alice.send({"type": "answer", "round": 1, "option": 0})
    assert await closed_with(alice) == 4404


async def test_a_silent_connection_whose_room_redis_lost_is_closed_4404_after_the_next_heartbeat(
    make_user, monkeypatch
):
    monkeypatch.setattr(presence, "HEARTBEAT_SECONDS", 0.05)
    code, alice, bob = await game_of_two(make_user)
    await redis_data_lost(code)
    # Neither sends anything: they heard nothing more, for as long as they stayed.
    assert await closed_with(alice) == 4404
    assert await closed_with(bob) == 4404
