"""An upper bound for the bench, not a design: the game with its rooms owned by one process.

`make bench BENCH_ARGS=--bound` starts extra game servers with this directory on
PYTHONPATH, so Python imports this module at start-up (`site`), and with
NUXTEST_BOUND_ROOMS=1 it changes the server as it loads:

- a room, once created, lives as an object in the process: each transition runs the
  engine on it, with no Redis read, decode, encode or compare-and-set;
- the per-player flood limit and the game's timers make no Redis round trip;
- with CHANNEL_LAYER_BACKEND=channels.layers.InMemoryChannelLayer, broadcasts skip Redis
  too (the layer is told to ignore the Redis settings it does not take).

Nothing is persisted, nothing survives the process, no other process sees the rooms, and
a timer never fires (the bench's rounds all close by every player answering). It measures
how fast the answer path could be if room state were owned by one process with Redis as
its log — the architecture docs/performance.md names as the way to the game/echo target —
before paying for that log and for handing rooms between processes.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


def _own_rooms() -> None:
    from game import scheduler, store

    rooms: dict[str, Any] = {}
    stored_room_get = store.room_get

    async def room_get(code: str) -> Any:
        room = rooms.get(code)
        return room if room is not None else await stored_room_get(code)

    async def room_update(code: str, change: Callable[[Any], Any]) -> tuple[Any, Any]:
        room = rooms.get(code)
        if room is None:
            loaded = await stored_room_get(code)
            room = rooms.setdefault(code, loaded)  # another update may have loaded it meanwhile
        return room, change(room)

    async def user_rate_take(user_id: int, *, rate: float, burst: int, want: int, now: float) -> int:
        return want

    async def run_at(*args: Any, **kwargs: Any) -> None:
        return None

    store.room_get = room_get
    store.room_update = room_update
    store.user_rate_take = user_rate_take
    scheduler.run_at = run_at
    print("bound: rooms owned by this process (loadtest/bound)", file=sys.stderr, flush=True)


def _in_memory_layer_ignores_redis_settings() -> None:
    from channels import layers

    init = layers.InMemoryChannelLayer.__init__

    def __init__(self: Any, *, hosts: Any = None, prefix: Any = None, **kwargs: Any) -> None:
        init(self, **kwargs)

    layers.InMemoryChannelLayer.__init__ = __init__


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `then` right after module `name` is first imported."""

    def __init__(self, name: str, then: Callable[[], None]) -> None:
        self.name, self.then = name, then

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        assert spec is not None and spec.loader is not None
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            self.then()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("NUXTEST_BOUND_ROOMS") == "1":
    # After game.services, which imports the store and the scheduler it calls through.
    sys.meta_path.insert(0, _AfterImport("game.services", _own_rooms))
    if os.environ.get("CHANNEL_LAYER_BACKEND", "").endswith("InMemoryChannelLayer"):
        _in_memory_layer_ignores_redis_settings()
