"""The game's timers: armed in Redis by the services, sent to Celery when due.

`run_at` adds the task to a sorted set in Redis (one round trip, no thread hop): arming a
question's deadline from the web process used to be a kombu publish of a Celery task with
a countdown in a worker thread, about a tenth of the web process's time at full answer
rate (docs/performance.md). Each Celery worker's main process runs a pump
(`pump_forever`, started by game.telemetry.celery_signals) that takes the due timers —
each timer is taken by one pump only — and sends their tasks to Celery, where any worker
runs them. The pumps sleep until the first due timer they know of; arming an earlier one
publishes a wake-up. A timer taken by a pump that dies before sending it is a lost timer,
which the sweeper (`rooms_sweep`, every second) makes up for, as before.

The trace context of the code that armed a timer travels with it and becomes the task's
parent (W3C `traceparent` in the task's headers), so a round closed by its deadline is
still one trace from the frame that opened it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from game import store
from game.telemetry import tracing
from nuxtest.celery import app

logger = logging.getLogger(__name__)

ROUND_DEADLINE = "game.tasks.round_deadline"
ROUND_ADVANCE = "game.tasks.round_advance"
QUICKMATCH_AUTOSTART = "game.tasks.quickmatch_autostart"
RESULTS_STORE = "game.tasks.results_store"

# A pump looks again at least this often, whatever it knows (a missed wake-up costs no more).
PUMP_MAX_SLEEP_SECONDS = 1.0
# Timers taken from Redis in one step.
PUMP_BATCH = 100
# A timer's task is sent this much before it is due: its trip through the broker to a
# pool process takes a few milliseconds, and every timer task waits for its due time
# itself when it arrives early (services._wait_until), to the millisecond.
PUMP_LEAD_MS = 10


async def run_at(task: str, *, args: list[object], due_ms: int) -> None:
    """Arm a timer: `task(*args)` runs on a Celery worker when the clock reaches `due_ms`."""
    member = orjson.dumps({"task": task, "args": args, "trace": tracing.carrier()})
    await store.timer_add(member, due_ms=due_ms)


Sender = Callable[[str, list[Any], dict[str, str] | None], None]


def _send_task(task: str, args: list[Any], trace: dict[str, str] | None) -> None:
    # Within the armer's context, so that a traced publish is its child; and its
    # traceparent in the headers too, for a process that traces no publishes (the main
    # process of a prefork worker).
    with tracing.attach_remote(trace):
        app.send_task(task, args=args, headers=dict(trace) if trace else None)


def pump_once(*, now_ms: int, send: Sender = _send_task) -> int | None:
    """Send every timer due by `now_ms`; return when the next one is due (None: none armed)."""
    while True:
        due, following = store.timers_due(now_ms=now_ms, limit=PUMP_BATCH)
        for member in due:
            task = "unknown"
            try:
                timer = orjson.loads(member)
                task = str(timer["task"])
                send(task, list(timer["args"]), timer.get("trace"))
            except Exception:
                # The sweeper does the step late; the next timers still go out.
                logger.exception("timer not sent", extra={"event": "timer_send_failed", "task": task})
        if len(due) < PUMP_BATCH:  # else more may be due at once
            return following


def pump_forever(stop: threading.Event, *, send: Sender = _send_task) -> None:
    """Send due timers until `stop` is set (a Celery worker's main process, in a thread)."""
    pubsub = None
    while not stop.is_set():
        try:
            if pubsub is None:
                pubsub = store.sync_client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(store.timers_wake_channel())
            now = time.time() * 1000 + PUMP_LEAD_MS
            following = pump_once(now_ms=int(now), send=send)
            wait = PUMP_MAX_SLEEP_SECONDS if following is None else (following - now) / 1000
            wait = min(max(wait, 0.0), PUMP_MAX_SLEEP_SECONDS)
            if wait > 0:
                # The client's own timeout (a blocking Redis command's is ~100 ms coarse).
                pubsub.get_message(timeout=wait)
        except Exception:
            # Redis away, most likely; whatever it is, the pump must outlive it.
            logger.warning("timer pump failed", exc_info=True, extra={"event": "timer_pump_failed"})
            if pubsub is not None:
                pubsub.close()
                pubsub = None
            stop.wait(1.0)
    if pubsub is not None:
        pubsub.close()
