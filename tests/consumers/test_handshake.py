"""The WebSocket handshake: refusals by close code, in GAME.md's order (origin, auth, room, capacity)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from game import faults, services, shutdown, store
from game.telemetry import metrics
from tests.conftest import ORIGIN, bearer, recv, recv_until, send, ws_join, ws_open
from tests.play import room_dict, room_new, users

pytestmark = pytest.mark.django_db(transaction=True)

EVIL = "http://evil.example"


async def refused_with(code: str, **kwargs: Any) -> int:
    """Open a socket that must be accepted and then closed before any frame; return the code."""
    comm = await ws_open(code, **kwargs)
    connected, _ = await comm.connect(timeout=5)
    assert connected, "the server accepts first, then closes with a code that says why"
    out = await comm.receive_output(5)
    assert out["type"] == "websocket.close", f"expected a close before any frame, got {out}"
    await comm.disconnect()
    return int(out["code"])


def session_cookie(user: Any) -> bytes:
    """A logged-in browser's Cookie header for this user."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def expired_token(user: Any) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(minutes=1))
    return str(token)


async def test_a_foreign_origin_is_refused_with_4403_even_with_a_valid_token(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    before = await room_dict(code)
    assert await refused_with(code, user=alice, origin=EVIL) == 4403
    assert await room_dict(code) == before


async def test_a_session_cookie_sent_from_a_foreign_origin_is_refused_with_4403(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    before = await room_dict(code)
    assert await refused_with(code, origin=EVIL, headers=[(b"cookie", cookie)]) == 4403
    assert await room_dict(code) == before


async def test_a_handshake_with_neither_origin_nor_token_is_refused_with_4403(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    before = await room_dict(code)
    assert await refused_with(code) == 4403
    assert await room_dict(code) == before


async def test_a_session_cookie_without_origin_is_refused_with_4403(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    assert await refused_with(code, headers=[(b"cookie", cookie)]) == 4403


async def test_the_origin_is_checked_before_authentication_and_the_room(make_user):
    assert await refused_with("ZZZZZZ", origin=EVIL) == 4403
    assert await refused_with("not-a-code", origin=EVIL) == 4403


async def test_a_local_origin_without_credentials_is_refused_with_4401(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    before = await room_dict(code)
    assert await refused_with(code, origin=ORIGIN) == 4401
    assert await room_dict(code) == before


@pytest.mark.parametrize("kind", ["garbage", "expired", "refresh_token", "deleted_user", "password_changed"])
async def test_a_bad_bearer_token_is_refused_with_4401(make_user, kind):
    alice, mallory = await users(make_user, "alice", "mallory")
    code = await room_new(alice)
    if kind == "garbage":
        token = "not.a.jwt"
    elif kind == "expired":
        token = await sync_to_async(expired_token)(mallory)
    elif kind == "refresh_token":
        token = str(await sync_to_async(RefreshToken.for_user)(mallory))
    elif kind == "deleted_user":
        token = str(await sync_to_async(AccessToken.for_user)(mallory))
        await sync_to_async(mallory.delete)()
    else:
        token = str(await sync_to_async(AccessToken.for_user)(mallory))
        mallory.set_password("a-new-long-password-7")
        await sync_to_async(mallory.save)()
    before = await room_dict(code)
    assert await refused_with(code, token=token) == 4401
    assert await refused_with(code, token=token, origin=ORIGIN) == 4401
    assert await room_dict(code) == before


async def test_authentication_is_checked_before_the_room(make_user):
    assert await refused_with("ZZZZZZ", origin=ORIGIN) == 4401
    assert await refused_with("ZZZZZZ", token="not.a.jwt") == 4401


async def test_an_unknown_room_of_valid_shape_is_refused_with_4404(make_user):
    (alice,) = await users(make_user, "alice")
    await room_new(alice)
    assert await refused_with("ZZZZZZ", user=alice) == 4404


@pytest.mark.parametrize("bad_code", ["AB0O1I", "ABCDE", "ABCDEFG", "ABC-DE", "ABC.DE", ""])
async def test_a_malformed_room_code_is_refused_with_4404(make_user, bad_code):
    (alice,) = await users(make_user, "alice")
    assert await refused_with(bad_code or "_", user=alice) == 4404


@pytest.mark.parametrize("bad_code", ["AB!CD$", "ABC DE", "ÄBCDEF"])
async def test_a_malformed_room_code_with_odd_characters_is_refused_and_closes_cleanly(make_user, bad_code):
    (alice,) = await users(make_user, "alice")
    comm = await ws_open(bad_code, user=alice)
    assert (await comm.connect(timeout=5))[0]
    out = await comm.receive_output(5)
    assert out == {"type": "websocket.close", "code": 4404}
    await comm.disconnect()  # the consumer must end without an exception


async def test_an_overlong_room_code_is_refused_with_4404(make_user):
    (alice,) = await users(make_user, "alice")
    comm = await ws_open("A" * 33, user=alice)
    assert await comm.connect(timeout=1) == (True, None)
    assert await comm.receive_output(1) == {"type": "websocket.close", "code": 4404}
    await comm.disconnect()


async def path_open(path: str, user: Any) -> WebsocketCommunicator:
    from nuxtest.asgi import application

    token = await sync_to_async(bearer)(user)
    return WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {token}".encode())])


@pytest.mark.parametrize("path", ["/ws/nothing/", "/ws/rooms/", "/ws/rooms/ABCDEF/extra/", "/ws/"])
async def test_a_websocket_path_that_is_no_room_is_refused_with_4404_not_a_server_error(make_user, path):
    (alice,) = await users(make_user, "alice")
    comm = await path_open(path, alice)
    assert await comm.connect(timeout=5) == (True, None)
    assert await comm.receive_output(5) == {"type": "websocket.close", "code": 4404}
    await comm.disconnect()


async def test_a_room_url_without_its_trailing_slash_reaches_the_room(make_user):
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    comm = await path_open(f"/ws/rooms/{code}", alice)
    assert (await comm.connect(timeout=5))[0]
    state = await recv(comm)
    assert state["type"] == "state" and state["room"] == code
    await comm.disconnect()


async def test_a_full_room_refuses_a_new_player_with_4409(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice, max_players=1)
    a, _ = await ws_join(code, alice)
    before = await room_dict(code)
    assert await refused_with(code, user=bob) == 4409
    assert await room_dict(code) == before
    assert await a.receive_nothing(0.1), "a refused player must not be announced"
    await a.disconnect()


async def test_a_started_game_refuses_a_non_member_with_4409_but_accepts_a_returning_member(make_user):
    alice, bob, carol = await users(make_user, "alice", "bob", "carol")
    code = await room_new(alice, rounds=2, answer_seconds=60, reveal_seconds=0)
    a, _ = await ws_join(code, alice)
    b, _ = await ws_join(code, bob)
    await send(a, {"type": "start"})
    question = await recv_until(b, "question")
    await b.disconnect()
    await recv_until(a, "player_left")

    before = await room_dict(code)
    assert await refused_with(code, user=carol) == 4409
    assert await room_dict(code) == before

    b2, state = await ws_join(code, bob)
    assert state["status"] == "playing"
    assert state["round"] == question["round"]
    assert state["question"]["text"] == question["text"]
    assert [p["id"] for p in state["players"]] == [alice.pk, bob.pk]
    await a.disconnect()
    await b2.disconnect()


async def test_too_many_connections_of_one_user_are_refused_with_4429(settings, make_user):
    settings.NUXTEST_WS_MAX_CONNECTIONS_PER_USER = 2
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    first, _ = await ws_join(code, alice)
    second, _ = await ws_join(code, alice)
    before = await room_dict(code)
    assert await refused_with(code, user=alice) == 4429
    # A refused connection does not hold a slot either.
    assert await refused_with(code, user=alice) == 4429
    assert await room_dict(code) == before
    # Closing one frees its slot.
    await second.disconnect()
    third, state = await ws_join(code, alice)
    assert state["players"] == [{"id": alice.pk, "name": "alice", "connected": True, "score": 0}]
    await first.disconnect()
    await third.disconnect()


async def test_the_room_is_checked_before_the_connection_limit(settings, make_user):
    settings.NUXTEST_WS_MAX_CONNECTIONS_PER_USER = 1
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    a, _ = await ws_join(code, alice)
    try:
        assert await refused_with("ZZZZZZ", user=alice) == 4404
    finally:
        await a.disconnect()


async def test_a_browser_session_cookie_with_a_local_origin_is_accepted(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    a, _ = await ws_join(code, alice)
    cookie = await sync_to_async(session_cookie)(bob)
    comm = await ws_open(code, origin=ORIGIN, headers=[(b"cookie", cookie)])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    state = await recv(comm)
    assert state["type"] == "state"
    assert [p["id"] for p in state["players"]] == [alice.pk, bob.pk]
    joined = await recv(a)
    assert joined["type"] == "player_joined"
    assert joined["player"] == {"id": bob.pk, "name": "bob"}
    room = await services.room_get(code=code)
    assert room.player(bob.pk) is not None and room.player(bob.pk).connected
    await comm.disconnect()
    await a.disconnect()


async def test_a_bearer_token_is_accepted_with_or_without_a_local_origin(make_user):
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    a, state_a = await ws_join(code, alice)
    b, state_b = await ws_join(code, bob, origin="http://localhost:8000")
    assert state_a["host"] == alice.pk
    assert [p["id"] for p in state_b["players"]] == [alice.pk, bob.pk]
    await a.disconnect()
    await b.disconnect()


async def test_a_handshake_that_fails_closes_with_1011_is_counted_and_holds_no_slot(
    settings, make_user, caplog
):
    # The channel layer failing under the handshake (its `player_joined` broadcast), as the
    # channel_layer_fail fault flag makes it: a 1011 close, an error outcome and log line,
    # and nothing left behind - the player's connections were counted until a restart.
    settings.NUXTEST_WS_MAX_CONNECTIONS_PER_USER = 1
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    host, _ = await ws_join(code, alice)
    errors = metrics.WS_CONNECTS.labels(outcome="error")
    before = errors._value.get()
    await faults.update({"channel_layer_fail": True})
    try:
        assert await refused_with(code, user=bob) == 1011
    finally:
        await faults.clear()
    assert errors._value.get() == before + 1
    failed = [r for r in caplog.records if getattr(r, "event", "") == "ws_connect_failed"]
    assert [(r.room, r.user_id) for r in failed] == [(code, bob.pk)]
    assert await store.client().zcard(store.key("userconns", bob.pk)) == 0
    # One connection allowed: bob's slot was given back, and he is not left connected.
    again, state = await ws_join(code, bob)
    assert [(p["name"], p["connected"]) for p in state["players"]] == [("alice", True), ("bob", True)]
    await again.disconnect()
    await host.disconnect()


async def test_a_handshake_reaching_a_draining_process_is_sent_elsewhere_with_1012(make_user, monkeypatch):
    # A load balancer may still hand a stopping process a connection (over one it kept
    # open): the player is told to reconnect elsewhere, and the room is left as it was.
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    host, _ = await ws_join(code, alice)
    before = await room_dict(code)
    restarting = metrics.WS_CONNECTS.labels(outcome="refused_restarting")
    count = restarting._value.get()
    monkeypatch.setattr(shutdown, "draining", True)
    assert await refused_with(code, user=bob) == shutdown.CLOSE_SERVICE_RESTART
    assert restarting._value.get() == count + 1
    assert await room_dict(code) == before
    assert await store.client().zcard(store.key("userconns", bob.pk)) == 0
    monkeypatch.setattr(shutdown, "draining", False)
    await host.disconnect()


async def test_a_player_admitted_as_the_drain_begins_is_drained_too(make_user, monkeypatch):
    # The drain closes the connections it knows of; one whose handshake was still under way
    # is closed with 1012 as soon as it is admitted, instead of being cut off when the
    # process exits (and holding the drain to its limit meanwhile).
    alice = (await users(make_user, "alice"))[0]
    code = await room_new(alice)
    track = shutdown.track

    def track_as_the_drain_begins(consumer: Any) -> bool:
        monkeypatch.setattr(shutdown, "draining", True)
        return track(consumer)

    monkeypatch.setattr(shutdown, "track", track_as_the_drain_begins)
    comm = await ws_open(code, user=alice)
    assert (await comm.connect(timeout=5))[0]
    assert (await recv(comm))["type"] == "state"
    out = await comm.receive_output(5)
    assert out["type"] == "websocket.close" and out["code"] == shutdown.CLOSE_SERVICE_RESTART
    await comm.disconnect()
    assert not list(shutdown._live), "the drain would wait for it"
    monkeypatch.setattr(shutdown, "draining", False)


async def test_a_drained_connection_is_counted_and_logged_under_the_servers_1012(make_user, caplog):
    # The client answers the drain's close with a code of its own (1000 here): the disconnect
    # metric and line say why the connection ended, so a deploy shows as 1012.
    alice = (await users(make_user, "alice"))[0]
    code = await room_new(alice)
    comm, _ = await ws_join(code, alice)
    drained = metrics.WS_DISCONNECTS.labels(code="1012")
    before = drained._value.get()
    (consumer,) = list(shutdown._live)
    await consumer.drain()
    out = await comm.receive_output(5)
    assert out["type"] == "websocket.close" and out["code"] == shutdown.CLOSE_SERVICE_RESTART
    await comm.disconnect(code=1000)
    assert drained._value.get() == before + 1
    lines = [r for r in caplog.records if getattr(r, "event", "") == "ws_disconnect"]
    assert [r.close_code for r in lines] == [shutdown.CLOSE_SERVICE_RESTART]
