"""The process's own tasks and signal handlers run outside any player's context."""

from __future__ import annotations

import asyncio
import os
import signal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from game import aio
from game.telemetry import context


def a_players_trace() -> object:
    """Attach a (valid, sampled) span context, as a player's frame handling has one."""
    span = NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(1)))
    return otel_context.attach(trace.set_span_in_context(span))


def what_it_sees() -> tuple[dict[str, object], bool]:
    return context.current(), trace.get_current_span().get_span_context().is_valid


async def test_a_process_task_started_by_a_connection_carries_none_of_its_context() -> None:
    token = a_players_trace()
    try:
        with context.bound(room="ABCDEF", user_id=7, round=2):
            assert what_it_sees() == ({"room": "ABCDEF", "user_id": 7, "round": 2}, True)

            async def work() -> tuple[dict[str, object], bool]:
                return what_it_sees()

            assert await aio.process_task(work(), name="test") == ({}, False)
            # An ordinary task, for contrast, inherits the player's context.
            assert (await asyncio.create_task(work()))[0]["room"] == "ABCDEF"
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]


async def test_a_process_signal_handler_runs_outside_the_installing_connections_context() -> None:
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[tuple[dict[str, object], bool]] = loop.create_future()
    token = a_players_trace()
    try:
        with context.bound(room="ABCDEF", user_id=7):
            aio.process_signal_handler(signal.SIGUSR1, lambda: seen.set_result(what_it_sees()))
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await asyncio.wait_for(seen, 10) == ({}, False)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
