"""Property-based fuzz of WebSocket frames: whatever arrives, the server answers with a
documented frame, never crashes, keeps the connection, and changes nothing in the room.

The player fuzzing is a member but not the host, in a game whose open round they have
already answered: no frame they can send may legitimately change the room.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game import presence
from game.aio import run_sync
from tests.conftest import recv, send, ws_join
from tests.play import room_dict, room_new

REPLIES = {"error", "answer_ack", "pong", "state"}
ERROR_CODES = {
    "bad_json",
    "unknown_type",
    "invalid_field",
    "not_host",
    "not_in_lobby",
    "rate_limited",
    "message_too_large",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
frames = st.one_of(
    # Objects shaped like the protocol's, with any values.
    st.fixed_dictionaries(
        {"type": st.sampled_from(["start", "answer", "ping", "sync", "Answer", "", "question"])},
        optional={"round": json_values, "option": json_values, "t": json_values, "extra": json_values},
    ).map(json.dumps),
    # Any JSON at all, and text that is not JSON.
    json_values.map(json.dumps),
    st.text(min_size=1, max_size=200),  # (the test communicator cannot send an empty frame)
    st.sampled_from(
        ['{"type": "ping", "t": NaN}', '{"type": "ping", "t": 1e999}', "[]", "null", "{", '{"type": 1}']
    ),
)


@pytest.fixture
def fuzz_room(
    make_user: Any, questions: None, timers: Any, settings: Any
) -> Iterator[tuple[str, WebsocketCommunicator]]:
    settings.NUXTEST_WS_RATE_PER_SECOND = 1e6
    settings.NUXTEST_WS_RATE_BURST = 10**6
    settings.NUXTEST_WS_USER_RATE_PER_SECOND = 1e6
    settings.NUXTEST_WS_USER_RATE_BURST = 10**6
    host, player = make_user("host"), make_user("fuzzer")

    async def setup() -> tuple[str, WebsocketCommunicator, WebsocketCommunicator]:
        code = await room_new(host, answer_seconds=60)
        first, _ = await ws_join(code, host)
        comm, _ = await ws_join(code, player)
        await send(first, {"type": "start"})
        while (await recv(comm))["type"] != "question":
            pass
        await send(comm, {"type": "answer", "round": 1, "option": 0})
        while (await recv(comm))["type"] != "answer_ack":
            pass
        return code, first, comm

    code, first, comm = run_sync(setup())
    yield code, comm
    run_sync(first.disconnect())
    run_sync(comm.disconnect())
    # The handshakes started this process's heartbeat on the service loop, which outlives
    # the test: it went on marking a web process alive under every later test's Redis
    # prefix (a later test that needs none running failed when a beat fell inside it).
    run_sync(heartbeat_stop())


async def heartbeat_stop() -> None:
    task = presence._heartbeats.pop(asyncio.get_running_loop(), None)
    if task is not None:
        task.cancel()


async def _one(code: str, comm: WebsocketCommunicator, raw: str) -> None:
    before = await room_dict(code)
    await comm.send_to(text_data=raw)
    reply = json.loads(await comm.receive_from(timeout=5))
    assert reply["type"] in REPLIES, reply
    if reply["type"] == "error":
        assert reply["code"] in ERROR_CODES, reply
    if reply["type"] == "answer_ack":
        assert reply["accepted"] is False, reply
    assert await comm.receive_nothing(timeout=0.01), "one reply per frame"
    assert await room_dict(code) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=frames)
def test_no_frame_crashes_the_server_or_changes_the_room(
    fuzz_room: tuple[str, WebsocketCommunicator], raw: str
) -> None:
    code, comm = fuzz_room
    run_sync(_one(code, comm, raw))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=1, max_size=100))
def test_no_binary_frame_crashes_the_server_or_changes_the_room(
    fuzz_room: tuple[str, WebsocketCommunicator], raw: bytes
) -> None:
    code, comm = fuzz_room

    async def one() -> None:
        before = await room_dict(code)
        await comm.send_to(bytes_data=raw)
        reply = json.loads(await comm.receive_from(timeout=5))
        assert reply["type"] in REPLIES and reply.get("accepted") is not True, reply
        assert await room_dict(code) == before

    run_sync(one())
