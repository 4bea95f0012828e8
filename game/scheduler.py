"""Enqueuing the game's timers as Celery tasks (by name, so services need not import tasks)."""

from __future__ import annotations

import asyncio
import time

from nuxtest.celery import app

ROUND_DEADLINE = "game.tasks.round_deadline"
ROUND_ADVANCE = "game.tasks.round_advance"
QUICKMATCH_AUTOSTART = "game.tasks.quickmatch_autostart"
RESULTS_STORE = "game.tasks.results_store"


async def run_at(task: str, *, args: list[object], due_ms: int) -> None:
    """Enqueue `task(*args)` to run when the clock reaches `due_ms`."""
    countdown = max(0.0, (due_ms - time.time() * 1000) / 1000)
    # kombu's producer is blocking I/O: keep it off the event loop.
    await asyncio.to_thread(app.send_task, task, args=args, countdown=countdown)
