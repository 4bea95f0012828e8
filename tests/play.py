"""Helpers shared by the consumer, service and task tests (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from game import events, services
from game.engine.model import room_to_dict
from tests.conftest import recv

BROADCASTS = {"player_joined", "player_left", "game_started", "question", "round_result", "game_over"}


async def users(make_user: Callable[..., Any], *names: str) -> list[Any]:
    """Create one user per name."""
    return [await sync_to_async(make_user)(name) for name in names]


async def room_new(host: Any, **room_settings: Any) -> str:
    """Create a room hosted by `host` and return its code."""
    room = await services.room_create(host_id=host.pk, settings_raw=room_settings)
    return room.code


async def room_dict(code: str) -> dict[str, Any]:
    """The room's whole stored state, as plain data (to compare before/after)."""
    return room_to_dict(await services.room_get(code=code))


async def correct_option(code: str) -> int:
    """The correct option of the room's current round (server-side knowledge)."""
    room = await services.room_get(code=code)
    assert room.round is not None
    return room.round.correct


async def wrong_option(code: str) -> int:
    """An option of the current round that is not the correct one."""
    return (await correct_option(code) + 1) % 4


async def sleep_past(deadline_ms: int, margin_ms: int = 30) -> None:
    """Sleep until the server clock has passed `deadline_ms` (by `margin_ms`)."""
    wait = deadline_ms + margin_ms - services.now_ms()
    if wait > 0:
        await asyncio.sleep(wait / 1000)


async def frames_until(comm: WebsocketCommunicator, kind: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Every frame up to and including the first one of type `kind`."""
    out = []
    while True:
        frame = await recv(comm, timeout)
        out.append(frame)
        if frame["type"] == kind:
            return out


async def ping_pong(comm: WebsocketCommunicator, t: int = 4242) -> dict[str, Any]:
    """Send a ping and return the pong, which must echo `t` and carry the server time."""
    await comm.send_to(text_data=json.dumps({"type": "ping", "t": t}))
    pong = await recv(comm)
    assert pong["type"] == "pong", pong
    assert pong["t"] == t
    assert isinstance(pong["server_time"], int)
    return pong


def strict_json(text: str) -> Any:
    """Parse JSON as RFC 8259 does (no NaN/Infinity), as browsers' JSON.parse does."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


class PublishSpy:
    """Records every event the services publish to any room (from any thread or loop)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._original = events.publish

    async def publish(self, code: str, evts: list[dict[str, Any]]) -> None:
        with self._lock:
            self.events.extend((code, e) for e in evts)
        await self._original(code, evts)

    def of(self, code: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The events published to one room (of one type if given)."""
        with self._lock:
            return [e for c, e in self.events if c == code and (kind is None or e["type"] == kind)]
