"""What one unit of telemetry costs the web process, in CPU microseconds (part of `make bench`).

The bench's telemetry figures say *how much* throughput traces, Sentry and logs take; this
says *where*, per unit the answer path makes: one project span, one Redis command, one
INFO log line. Each is measured in a fresh process set up exactly as a web process is
(`telemetry_setup("web")` under the environment of the variant), on the real Redis of the
bench and with spans exported to the bench's sink, so the figures include what happens off
the hot path in the same process (the exporter's thread encoding and posting the spans,
flushed before the clock stops). CPU time of the whole process (`time.process_time`), not
wall time: a busy machine slows both the same way.

    python -m loadtest.telemetry_costs OUT.json   # with the variant's environment set
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

SPANS = 10_000
COMMANDS = 3_000
LINES = 10_000
REPEAT = 3


def _children_cpu() -> float:
    """CPU seconds of this process's children so far (the span relay)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _per_op(measure: Callable[[], int]) -> tuple[float, float]:
    """Medians over REPEAT runs of CPU µs per operation: this process's, and its relay's."""
    runs, relay = [], []
    for _ in range(REPEAT):
        start, children = time.process_time(), _children_cpu()
        count = measure()
        runs.append((time.process_time() - start) / count * 1e6)
        relay.append((_children_cpu() - children) / count * 1e6)
    return statistics.median(runs), statistics.median(relay)


def measure() -> dict[str, float]:
    """CPU µs per span, per Redis command (round trip included) and per INFO log line.

    `<unit>_relay`: what the same unit cost the span relay, the web process's child that
    encodes and posts its spans (on another core).
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nuxtest.settings")
    import django

    django.setup(set_prefix=False)
    from game import store
    from game.telemetry import context, tracing
    from game.telemetry.setup import telemetry_setup

    telemetry_setup("web", relay=True)  # as nuxtest/asgi.py does
    log = logging.getLogger("game.consumers")
    attributes: dict[str, str | int] = {"nuxtest.room": "BENCH2", "nuxtest.round": 3, "enduser.id": 42}

    def spans() -> int:
        for _ in range(SPANS):
            with tracing.span("ws.answer", attributes):
                pass
        tracing.flush()  # the export of these spans is part of their cost
        return SPANS

    loop = asyncio.new_event_loop()

    async def take(count: int) -> None:
        for _ in range(count):
            await store.user_rate_take(7, rate=1e9, burst=10**9, want=1, now=time.time())

    async def close() -> None:
        await store.client().aclose()

    loop.run_until_complete(take(10))  # connected, script loaded

    def commands() -> int:
        async def run() -> None:
            with tracing.span("ws.answer", attributes):
                await take(COMMANDS)

        loop.run_until_complete(run())
        tracing.flush()
        return COMMANDS

    def sdk_spans() -> int:
        # The same span from a provider with no processor: what creating and ending costs.
        from opentelemetry.sdk.trace import TracerProvider

        bare = TracerProvider().get_tracer("nuxtest")
        for _ in range(SPANS):
            with bare.start_as_current_span("ws.answer", attributes=attributes):
                pass
        return SPANS

    def lines() -> int:
        # The answer's line, as the consumer writes it, inside a span and a bound room.
        with tracing.span("ws.answer", attributes), context.bound(room="BENCH2", round=3, user_id=42):
            for _ in range(LINES):
                log.info(
                    "answer %s",
                    "accepted",
                    extra={"event": "answer_received", "accepted": True, "reason": None},
                )
        tracing.flush()
        return LINES

    try:
        costs = {}
        for key, measure_one in (("span", spans), ("redis_command", commands), ("log_line", lines)):
            costs[key], relay = _per_op(measure_one)
            if relay:
                costs[f"{key}_relay"] = relay
        if tracing.enabled():
            costs["span_sdk"] = _per_op(sdk_spans)[0]
        return costs
    finally:
        loop.run_until_complete(close())
        loop.close()


def main(argv: list[str] | None = None) -> int:
    """Measure and write the figures as JSON to the path given."""
    out = Path((argv or sys.argv[1:])[0])
    out.write_text(json.dumps(measure()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
