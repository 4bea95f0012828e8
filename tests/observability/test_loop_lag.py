"""The event-loop lag monitor sees a step that holds the loop."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from game.telemetry import loop


def _lag(suffix: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"nuxtest_event_loop_lag_seconds_{suffix}", labels) or 0.0


async def test_a_step_that_holds_the_loop_is_observed_as_lag():
    loop.monitor_ensure()
    loop.monitor_ensure()  # once per loop: a second call starts nothing
    assert sum(t.get_name() == "nuxtest-loop-lag" for t in asyncio.all_tasks()) == 1
    await asyncio.sleep(0.25)  # a few quiet samples first
    slow_before, lag_before = _lag("count") - _lag("bucket", le="0.1"), _lag("sum")
    time.sleep(0.3)  # a blocking step: the monitor's timer is due during it
    await asyncio.sleep(0.25)
    slow_after = _lag("count") - _lag("bucket", le="0.1")
    assert slow_after - slow_before >= 1, "the 0.3 s stall should be a sample over 100 ms"
    assert _lag("sum") - lag_before >= 0.15


async def test_quiet_loop_shows_small_lag():
    loop.monitor_ensure()
    count, quick = _lag("count"), _lag("bucket", le="0.05")
    await asyncio.sleep(1.5)
    samples = _lag("count") - count
    assert samples >= 8
    # Most samples are quick; one pause of the test process (a full collection, a busy
    # machine) may make a slow one without failing the test.
    assert _lag("bucket", le="0.05") - quick >= samples - 2, "a quiet loop's timer is not an interval late"
