"""Client frames that cannot be parsed, validated or allowed: an `error`, the room untouched, still open."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from tests.conftest import closed_with, recv, recv_until, send, ws_join
from tests.play import ping_pong, room_dict, room_new, strict_json, users

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Table:
    code: str
    alice: Any
    bob: Any
    a: WebsocketCommunicator
    b: WebsocketCommunicator
    round: int | None = None


async def table_open(make_user: Any) -> Table:
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice, rounds=3, answer_seconds=60, reveal_seconds=0)
    a, _ = await ws_join(code, alice)
    b, _ = await ws_join(code, bob)
    assert (await recv(a))["type"] == "player_joined"
    return Table(code, alice, bob, a, b)


async def table_start(t: Table) -> Table:
    await send(t.a, {"type": "start"})
    t.round = (await recv_until(t.a, "question"))["round"]
    await recv_until(t.b, "question")
    return t


@pytest.fixture
async def lobby(make_user: Any) -> AsyncIterator[Table]:
    t = await table_open(make_user)
    yield t
    await t.a.disconnect()
    await t.b.disconnect()


@pytest.fixture
async def playing(settings: Any, make_user: Any) -> AsyncIterator[Table]:
    settings.NUXTEST_WS_RATE_BURST = 500  # these tests send many frames on purpose
    t = await table_start(await table_open(make_user))
    yield t
    await t.a.disconnect()
    await t.b.disconnect()


async def refused(t: Table, comm: WebsocketCommunicator, frame: str | bytes, code: str) -> None:
    """Send one bad frame: an `error` with `code` comes back, the room is unchanged, the socket open."""
    before = await room_dict(t.code)
    if isinstance(frame, bytes):
        await comm.send_to(bytes_data=frame)
    else:
        await comm.send_to(text_data=frame)
    error = await recv(comm)
    assert error["type"] == "error", (frame, error)
    assert error["code"] == code, (frame, error)
    assert isinstance(error["message"], str) and error["message"], error
    await ping_pong(comm)
    assert await room_dict(t.code) == before, frame


async def test_frames_that_are_not_json_objects_get_bad_json(playing):
    for frame in [
        "not json",
        "{",
        '{"type": "ping"',
        "[1, 2, 3]",
        '[{"type": "ping"}]',
        '"ping"',
        "42",
        "null",
        # Nested deeper than the parser goes (it raises RecursionError, not ValueError).
        "[" * 5000 + "]" * 5000,
        '{"a": ' * 5000 + "1" + "}" * 5000,
    ]:
        await refused(playing, playing.a, frame, "bad_json")


async def test_binary_frames_that_are_not_json_get_bad_json(playing):
    for frame in [b"\x80\xff\xfe", b"\x00\x01\x02", b"{not json}", b"[1]"]:
        await refused(playing, playing.a, frame, "bad_json")


async def test_a_missing_or_non_string_type_gets_invalid_field(playing):
    for frame in [{}, {"type": 5}, {"type": None}, {"type": ["ping"]}, {"type": True}, {"t": 1}]:
        await refused(playing, playing.a, json.dumps(frame), "invalid_field")


async def test_an_unknown_type_gets_unknown_type(playing):
    for kind in ["dance", "ANSWER", "Ping", "", "state", "game_over", "x" * 200]:
        await refused(playing, playing.a, json.dumps({"type": kind}), "unknown_type")


async def test_an_answer_with_a_round_that_is_not_an_integer_gets_invalid_field(playing):
    for rnd in [True, False, "1", 1.0, 1.5, None, [1], {"n": 1}]:
        frame = {"type": "answer", "round": rnd, "option": 0}
        await refused(playing, playing.a, json.dumps(frame), "invalid_field")
    await refused(playing, playing.a, json.dumps({"type": "answer", "option": 0}), "invalid_field")


async def test_an_answer_with_an_option_outside_0_to_3_gets_invalid_field(playing):
    for option in [4, -1, 99, "1", 1.0, True, None, [0]]:
        frame = {"type": "answer", "round": playing.round, "option": option}
        await refused(playing, playing.a, json.dumps(frame), "invalid_field")
    await refused(playing, playing.a, json.dumps({"type": "answer", "round": playing.round}), "invalid_field")


async def test_a_ping_whose_time_is_not_a_number_gets_invalid_field(playing):
    for t in ["now", "1700000000000", True, [1], {"ms": 1}]:
        await refused(playing, playing.a, json.dumps({"type": "ping", "t": t}), "invalid_field")


async def test_a_ping_is_answered_by_a_pong_echoing_its_time(playing):
    for t in [0, 1_700_000_000_123, 12.5, -3]:
        await ping_pong(playing.a, t)
    await send(playing.a, {"type": "ping"})
    pong = await recv(playing.a)
    assert pong["type"] == "pong" and pong["t"] is None and isinstance(pong["server_time"], int)


async def test_a_player_who_is_not_the_host_cannot_start_the_game(lobby):
    await refused(lobby, lobby.b, json.dumps({"type": "start"}), "not_host")
    assert (await room_dict(lobby.code))["status"] == "lobby"


async def test_starting_a_game_twice_gets_not_in_lobby(lobby):
    await table_start(lobby)
    await refused(lobby, lobby.a, json.dumps({"type": "start"}), "not_in_lobby")
    assert (await room_dict(lobby.code))["round"]["number"] == 1


async def test_a_frame_over_64_kib_gets_message_too_large_and_one_of_64_kib_is_read(playing):
    limit = 64 * 1024

    def ping_of(size: int, pad: str = "x") -> str:
        bare = '{"type": "ping", "t": 7, "pad": ""}'
        text = bare[:-2] + pad * ((size - len(bare)) // len(pad.encode())) + bare[-2:]
        assert len(text.encode()) == size
        return text

    await refused(playing, playing.a, ping_of(limit + 1), "message_too_large")
    await refused(playing, playing.a, ping_of(limit + 1 + 4 * 3000), "message_too_large")
    # The limit counts bytes, not characters: 2-byte characters reach it at half the length.
    size = limit + 2 if (limit + 2 - 35) % 2 == 0 else limit + 1
    assert len(ping_of(size, "é")) < limit
    await refused(playing, playing.a, ping_of(size, "é"), "message_too_large")
    await refused(playing, playing.a, ("x" * (limit + 1)).encode(), "message_too_large")
    await playing.a.send_to(text_data=ping_of(limit))
    pong = await recv(playing.a)
    assert pong["type"] == "pong" and pong["t"] == 7


async def test_a_burst_over_the_rate_limit_gets_rate_limited_and_the_socket_stays_open(settings, make_user):
    settings.NUXTEST_WS_RATE_BURST = 3
    # Slow enough a refill that a busy machine handles the burst and the answer before it.
    settings.NUXTEST_WS_RATE_PER_SECOND = 1
    t = await table_start(await table_open(make_user))
    before = await room_dict(t.code)
    for n in range(4):
        await send(t.b, {"type": "ping", "t": n})
    assert [(await recv(t.b))["t"] for _ in range(3)] == [0, 1, 2]
    error = await recv(t.b)
    assert error["type"] == "error" and error["code"] == "rate_limited", error
    # A refused frame has no effect, even a well-formed answer.
    await send(t.b, {"type": "answer", "round": t.round, "option": 0})
    error = await recv(t.b)
    assert error["type"] == "error" and error["code"] == "rate_limited", error
    assert await room_dict(t.code) == before
    # The bucket refills at a frame a second.
    assert await t.b.receive_nothing(1.1)
    await ping_pong(t.b)
    await t.a.disconnect()
    await t.b.disconnect()


async def test_a_flooding_player_is_closed_with_4429_while_the_other_plays_on(settings, make_user, caplog):
    settings.NUXTEST_WS_RATE_BURST = 4  # Alice needs 3: start, ping, answer
    settings.NUXTEST_WS_RATE_PER_SECOND = 0.01
    settings.NUXTEST_WS_FLOOD_CLOSE_AFTER = 5
    t = await table_start(await table_open(make_user))
    before = await room_dict(t.code)
    for n in range(12):
        await send(t.b, {"type": "ping", "t": n})
    frames = []
    while True:
        out = await t.b.receive_output(5)
        if out["type"] == "websocket.close":
            assert out["code"] == 4429
            break
        frames.append(json.loads(out["text"]))
    assert [f["type"] for f in frames] == ["pong"] * 4 + ["error"] * 4
    assert {f.get("code") for f in frames[4:]} == {"rate_limited"}
    assert await room_dict(t.code) == before

    # Alice was never limited: she pings, answers and gets the round's frames.
    await ping_pong(t.a)
    await t.b.disconnect()
    # The frames still queued behind the close are dropped, not answered or logged again.
    flood_logs = [r for r in caplog.records if getattr(r, "event", None) == "ws_flood_closed"]
    assert len(flood_logs) == 1
    left = await recv(t.a)
    assert left["type"] == "player_left" and left["player"]["id"] == t.bob.pk
    await send(t.a, {"type": "answer", "round": t.round, "option": 0})
    ack = await recv(t.a)
    assert ack == {"type": "answer_ack", "round": t.round, "accepted": True}
    result = await recv(t.a)
    assert result["type"] == "round_result" and result["round"] == t.round
    assert (await recv(t.a))["type"] == "question"
    await t.a.disconnect()


async def test_a_ping_with_nan_is_not_json_and_gets_bad_json(playing):
    await playing.a.send_to(text_data='{"type": "ping", "t": NaN}')
    reply = strict_json(await playing.a.receive_from(5))
    assert reply["type"] == "error" and reply["code"] == "bad_json"


async def test_a_ping_whose_time_overflows_gets_invalid_field_not_a_non_json_pong(playing):
    await playing.a.send_to(text_data='{"type": "ping", "t": 1e999}')
    reply = strict_json(await playing.a.receive_from(5))
    assert reply["type"] == "error" and reply["code"] == "invalid_field"


async def test_every_error_leaves_the_connection_open_to_play(playing):
    for frame in ["nope", "[]", "{}", '{"type": "dance"}', '{"type": "answer", "round": 1, "option": 9}']:
        await playing.a.send_to(text_data=frame)
        assert (await recv(playing.a))["type"] == "error"
    await send(playing.a, {"type": "answer", "round": playing.round, "option": 1})
    assert await recv(playing.a) == {"type": "answer_ack", "round": playing.round, "accepted": True}
    await send(playing.b, {"type": "answer", "round": playing.round, "option": 2})
    assert (await recv_until(playing.a, "round_result"))["round"] == playing.round


async def test_a_closed_flooder_cannot_reconnect_past_the_connection_limit(settings, make_user):
    settings.NUXTEST_WS_MAX_CONNECTIONS_PER_USER = 1
    settings.NUXTEST_WS_RATE_BURST = 1
    settings.NUXTEST_WS_RATE_PER_SECOND = 0.01
    settings.NUXTEST_WS_FLOOD_CLOSE_AFTER = 2
    t = await table_open(make_user)
    for n in range(3):
        await send(t.b, {"type": "ping", "t": n})
    assert await closed_with(t.b) == 4429
    await t.b.disconnect()
    b2, state = await ws_join(t.code, t.bob)
    assert [p["connected"] for p in state["players"]] == [True, True]
    await b2.disconnect()
    await t.a.disconnect()


async def test_the_rate_limit_holds_over_all_connections_of_one_player(settings, make_user):
    # Each connection alone stays under its own limit; together they pass the player's.
    settings.NUXTEST_WS_RATE_PER_SECOND = 0.001
    settings.NUXTEST_WS_RATE_BURST = 10
    settings.NUXTEST_WS_USER_RATE_PER_SECOND = 0.001
    settings.NUXTEST_WS_USER_RATE_BURST = 12
    alice, bob = await users(make_user, "alice", "bob")
    code = await room_new(alice)
    first, _ = await ws_join(code, alice)
    second, _ = await ws_join(code, alice)
    other, _ = await ws_join(code, bob)
    try:
        replies = []
        for comm in (first, second):
            for _ in range(8):
                await send(comm, {"type": "ping", "t": 1})
                frame = await recv(comm)
                while frame["type"] not in {"pong", "error"}:  # broadcasts of the joins
                    frame = await recv(comm)
                replies.append(frame["type"] if frame["type"] == "pong" else frame["code"])
        assert replies.count("pong") == 12
        assert replies.count("rate_limited") == 4
        # Another player is not limited by alice's bucket.
        await send(other, {"type": "ping", "t": 2})
        assert (await recv_until(other, "pong"))["t"] == 2
    finally:
        for comm in (first, second, other):
            await comm.disconnect()


async def test_tokens_a_connection_took_ahead_are_its_own_and_the_players_connections_never_pass_the_burst(
    settings, make_user
):
    # Burst 40 over at most 5 connections: each connection takes 4 tokens at a time.
    settings.NUXTEST_WS_RATE_PER_SECOND = 0.001
    settings.NUXTEST_WS_RATE_BURST = 100
    settings.NUXTEST_WS_USER_RATE_PER_SECOND = 0.001
    settings.NUXTEST_WS_USER_RATE_BURST = 40
    settings.NUXTEST_WS_MAX_CONNECTIONS_PER_USER = 5
    (alice,) = await users(make_user, "alice")
    code = await room_new(alice)
    first, _ = await ws_join(code, alice)
    second, _ = await ws_join(code, alice)

    async def reply(comm: WebsocketCommunicator) -> str:
        await send(comm, {"type": "ping", "t": 1})
        frame = await recv(comm)
        while frame["type"] not in {"pong", "error"}:  # broadcasts of the joins
            frame = await recv(comm)
        return "pong" if frame["type"] == "pong" else str(frame["code"])

    try:
        assert await reply(first) == "pong"  # took 4, keeps 3
        from_second = [await reply(second) for _ in range(37)]
        assert from_second == ["pong"] * 36 + ["rate_limited"]
        from_first = [await reply(first) for _ in range(4)]
        assert from_first == ["pong"] * 3 + ["rate_limited"]
    finally:
        for comm in (first, second):
            await comm.disconnect()


async def test_integers_too_large_to_echo_get_invalid_field_and_the_largest_that_fit_are_answered(playing):
    for frame in [
        '{"type": "answer", "round": 1000000000000000000000000000000, "option": 1}',
        '{"type": "answer", "round": -9223372036854775809, "option": 1}',
        '{"type": "ping", "t": 100000000000000000000000000000000000000000000000000}',
        # Too large for a float as well: the range is checked before finiteness.
        '{"type": "ping", "t": ' + "9" * 400 + "}",
        '{"type": "ping", "t": -' + "9" * 400 + "}",
    ]:
        await refused(playing, playing.a, frame, "invalid_field")
    await send(playing.a, {"type": "answer", "round": 2**64 - 1, "option": 1})
    assert await recv(playing.a) == {
        "type": "answer_ack",
        "round": 2**64 - 1,
        "accepted": False,
        "reason": "wrong_round",
    }
    await ping_pong(playing.a, -(2**63))


async def test_a_round_too_large_for_otlp_stays_off_the_frame_span_and_every_attribute_encodes(
    playing, monkeypatch
):
    # OTLP carries integers as int64; an answer may name a round up to 2**64 - 1 (answered
    # wrong_round, above). On the span, such a round would fail the encoding of its whole
    # export batch, losing the other players' spans with it.
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_attributes
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from game.telemetry import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    for number in (2**64 - 1, 2**63 - 1, playing.round):
        await send(playing.a, {"type": "answer", "round": number, "option": 1})
        assert (await recv_until(playing.a, "answer_ack"))["round"] == number
    answers = [s for s in exporter.get_finished_spans() if s.name == "ws.answer"]
    assert [s.attributes.get("nuxtest.round") for s in answers] == [None, 2**63 - 1, playing.round]
    for span in exporter.get_finished_spans():
        _encode_attributes(span.attributes)  # raises for a value OTLP cannot carry
    assert tracing.round_attribute(True) is None and tracing.round_attribute(-(2**63) - 1) is None
