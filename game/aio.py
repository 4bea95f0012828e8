"""Run the project's async services from sync code (DRF views, Celery tasks, commands).

Each process keeps one event loop in a daemon thread, so Redis and channel-layer
connection pools (which belong to one loop) are created once and reused, instead of a
fresh loop and fresh connections for every call.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _pid
    with _lock:
        # After a fork (Celery prefork) the parent's thread does not exist: start anew.
        if _loop is None or _pid != os.getpid() or not _loop.is_running():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=run, name="nuxtest-aio", daemon=True).start()
            started.wait()
            _loop, _pid = loop, os.getpid()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
    """Run a coroutine on this process's service loop and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("run_sync() called from async code: await the coroutine instead")
    future = asyncio.run_coroutine_threadsafe(coro, _background_loop())
    return future.result(timeout)


def process_task(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """A task of the process (a heartbeat, a hub, a monitor), not of the connection that
    happened to start it: it runs in an empty context, so its log lines, spans and Sentry
    events carry no player's room, user or trace."""
    return asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())


def process_signal_handler(sig: int, callback: Callable[[], object]) -> None:
    """`loop.add_signal_handler` for the process, in an empty context (as `process_task`)."""
    loop = asyncio.get_running_loop()
    contextvars.Context().run(loop.add_signal_handler, sig, callback)
