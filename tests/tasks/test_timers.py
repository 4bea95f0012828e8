"""The game's timers: armed in Redis by `scheduler.run_at`, sent to Celery by the workers' pumps.

Real Redis (the test's own key prefix); the pump's `send` is the test's, so nothing reaches a
broker: the Celery side is the e2e tests' (tests/e2e/test_telemetry.py follows a deadline
timer from the frame that armed it to the worker that closed the round).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync

from game import scheduler, store
from game.telemetry.collectors import ClockOffsetCollector, RedisStateCollector


def _now_ms() -> int:
    return int(time.time() * 1000)


class Sent:
    """A pump's `send` that records what it was given (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any], dict[str, str] | None]] = []
        self.lock = threading.Lock()
        self.event = threading.Event()

    def __call__(self, task: str, args: list[Any], trace: dict[str, str] | None) -> None:
        with self.lock:
            self.calls.append((task, args, trace))
        self.event.set()


def test_an_armed_timer_is_sent_once_when_due_and_not_before():
    now = _now_ms()
    async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=["ABCDEF", 3], due_ms=now + 5000)
    async_to_sync(scheduler.run_at)(scheduler.ROUND_ADVANCE, args=["ABCDEF", 2], due_ms=now + 1000)
    sent = Sent()
    assert scheduler.pump_once(now_ms=now, send=sent) == now + 1000, "the next one due"
    assert sent.calls == []
    assert scheduler.pump_once(now_ms=now + 1000, send=sent) == now + 5000
    assert sent.calls == [(scheduler.ROUND_ADVANCE, ["ABCDEF", 2], None)]
    assert scheduler.pump_once(now_ms=now + 9000, send=sent) is None, "none left"
    assert scheduler.pump_once(now_ms=now + 9000, send=sent) is None
    assert [c[0] for c in sent.calls] == [scheduler.ROUND_ADVANCE, scheduler.ROUND_DEADLINE]


def test_two_pumps_taking_timers_together_send_each_exactly_once():
    now = _now_ms()
    for n in range(450):  # several batches of the pump's
        async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=[f"ROOM{n}", 1], due_ms=now - n)
    sent = Sent()
    pumps = [
        threading.Thread(target=scheduler.pump_once, kwargs={"now_ms": now, "send": sent}) for _ in range(2)
    ]
    for t in pumps:
        t.start()
    for t in pumps:
        t.join(30)
    rooms = [args[0] for _, args, _ in sent.calls]
    assert sorted(rooms) == sorted(f"ROOM{n}" for n in range(450))


def test_a_timer_that_cannot_be_sent_does_not_hold_back_the_others(caplog):
    now = _now_ms()
    for code in ("FIRST1", "SECOND"):
        async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=[code, 1], due_ms=now)
    async_to_sync(store.timer_add)(b"not a timer", due_ms=now)
    sent = Sent()

    def send(task: str, args: list[Any], trace: dict[str, str] | None) -> None:
        if args[0] == "FIRST1":
            raise ConnectionError("broker away")
        sent(task, args, trace)

    scheduler.pump_once(now_ms=now, send=send)
    assert sent.calls == [(scheduler.ROUND_DEADLINE, ["SECOND", 1], None)]
    failed = [r for r in caplog.records if getattr(r, "event", "") == "timer_send_failed"]
    assert sorted(r.task for r in failed) == [scheduler.ROUND_DEADLINE, "unknown"]


def test_the_trace_context_a_timer_was_armed_in_goes_with_its_task():
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    member = orjson.dumps({"task": scheduler.ROUND_DEADLINE, "args": ["ABCDEF", 1], "trace": carrier})
    async_to_sync(store.timer_add)(member, due_ms=_now_ms())
    sent = Sent()
    scheduler.pump_once(now_ms=_now_ms(), send=sent)
    assert sent.calls == [(scheduler.ROUND_DEADLINE, ["ABCDEF", 1], carrier)]


def test_a_sleeping_pump_wakes_for_a_timer_armed_before_every_other(monkeypatch: pytest.MonkeyPatch):
    # The pump would otherwise look again only after a minute: the wake-up is what sends it.
    monkeypatch.setattr(scheduler, "PUMP_MAX_SLEEP_SECONDS", 60.0)
    far = _now_ms() + 3_600_000
    async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=["LATER1", 1], due_ms=far)
    stop = threading.Event()
    sent = Sent()
    pump = threading.Thread(target=scheduler.pump_forever, args=(stop,), kwargs={"send": sent})
    pump.start()
    try:
        time.sleep(0.5)  # the pump is asleep, until the timer an hour away
        assert sent.calls == []
        async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=["SOONER", 1], due_ms=_now_ms() + 200)
        assert sent.event.wait(30), "the earlier timer woke the pump"
        assert sent.calls == [(scheduler.ROUND_DEADLINE, ["SOONER", 1], None)]
    finally:
        stop.set()
        # Wake it to see `stop` (it sleeps on the channel, not on the event).
        async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=["LAST01", 1], due_ms=0)
        pump.join(30)
    assert not pump.is_alive()


def _scraped(name: str) -> float:
    families = {f.name: f for f in RedisStateCollector().collect()}
    return float(families[name].samples[0].value)


def test_the_scrape_shows_the_timers_no_pump_has_sent_and_how_late_the_oldest_is():
    assert _scraped("nuxtest_timers_overdue") == 0
    assert _scraped("nuxtest_timers_overdue_seconds") == 0
    now = _now_ms()
    async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=["ABCDEF", 1], due_ms=now - 3000)
    async_to_sync(scheduler.run_at)(scheduler.ROUND_ADVANCE, args=["GHIJKL", 1], due_ms=now - 1000)
    async_to_sync(scheduler.run_at)(scheduler.ROUND_DEADLINE, args=["MNOPQR", 1], due_ms=now + 60_000)
    assert _scraped("nuxtest_timers_overdue") == 2, "the one due in a minute is not overdue"
    assert 3.0 <= _scraped("nuxtest_timers_overdue_seconds") < 10.0
    scheduler.pump_once(now_ms=_now_ms(), send=Sent())
    assert _scraped("nuxtest_timers_overdue") == 0
    assert _scraped("nuxtest_timers_overdue_seconds") == 0


def _offset(clock: Callable[[], float]) -> float:
    (family,) = ClockOffsetCollector(clock).collect()
    assert family.name == "nuxtest_clock_offset_seconds"
    return float(family.samples[0].value)


def test_the_scrape_shows_this_process_clock_against_redis_s():
    # Redis runs on this host: the same clock, to within the round trip.
    assert abs(_offset(time.time)) < 0.05
    # A host whose clock runs 300 ms ahead, or 2 s behind, says so.
    assert 0.25 < _offset(lambda: time.time() + 0.3) < 0.35
    assert -2.05 < _offset(lambda: time.time() - 2) < -1.95
