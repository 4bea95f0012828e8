"""Event-loop lag of a web process: how late the loop runs a timer.

Every frame, broadcast and timer of a web process waits for its one event loop; a step
that holds the loop (a slow callback, a full garbage collection, a thread holding the GIL)
delays all of them at once. The answer-latency histogram shows such a stall smeared over
many frames; this shows it as what it is. A task per loop sleeps `INTERVAL` and observes
how much later than asked it woke up (what Node's `eventloop_lag` and libuv's monitors do).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from game import aio
from game.telemetry import metrics

INTERVAL = 0.1

_monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


async def _monitor_forever() -> None:
    clock = time.perf_counter
    while True:
        asked = clock()
        await asyncio.sleep(INTERVAL)
        metrics.EVENT_LOOP_LAG.observe(max(0.0, clock() - asked - INTERVAL))


def monitor_ensure() -> None:
    """Start the lag monitor on the running loop (once per loop)."""
    loop = asyncio.get_running_loop()
    task = _monitors.get(loop)
    if task is None or task.done():
        _monitors[loop] = aio.process_task(_monitor_forever(), name="nuxtest-loop-lag")


class LoopLagMiddleware:
    """ASGI wrapper that starts the monitor with the first connection or request of a loop.

    Servers start their loop after loading the application (Daphne, uvicorn), so the
    monitor cannot start at import; the check per connection is one dictionary lookup.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            monitor_ensure()
        await self.app(scope, receive, send)
