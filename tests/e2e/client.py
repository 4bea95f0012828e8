"""A small real WebSocket + HTTP client of the documented protocol, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from websockets.asyncio.client import ClientConnection, connect

PASSWORD = "e2e-password-Quiz-42"


def signup(base: str, name: str | None = None) -> tuple[str, str, int]:
    """Sign up through the API and get an access token: (username, token, user id)."""
    username = name or f"p{uuid.uuid4().hex[:10]}"
    r = requests.post(
        f"{base}/api/auth/signup/", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = requests.post(
        f"{base}/api/auth/token/", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert r.status_code == 200, r.text
    return username, r.json()["access"], user_id


def api(base: str, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    """An authenticated API call."""
    return requests.request(
        method, f"{base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10, **kwargs
    )


def create_room(base: str, token: str, settings: dict[str, Any] | None = None) -> str:
    """Create a room through the API as the token's player (its host); return its code."""
    r = api(base, token, "POST", "/api/rooms/", json=settings or {})
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return code


@dataclass
class Player:
    """One connected player: frames are collected in order as they arrive."""

    base: str
    token: str
    user_id: int
    ws: ClientConnection | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    _queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None

    async def connect(self, code: str, base: str | None = None) -> dict[str, Any]:
        """Open the room's socket; return the `state` frame."""
        ws_base = (base or self.base).replace("http://", "ws://")
        self.ws = await connect(
            f"{ws_base}/ws/rooms/{code}/",
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
        )
        self._queue = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(self.ws))
        state = await self.next("state")
        return state

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            self.frames.append(frame)
            self.received_at.append(time.time() * 1000)
            await self._queue.put(frame)

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(frame))

    async def next(self, kind: str | None = None, timeout: float = 15) -> dict[str, Any]:
        """The next frame (of type `kind`, skipping others)."""
        while True:
            frame = await asyncio.wait_for(self._queue.get(), timeout)
            if kind is None or frame["type"] == kind:
                return frame

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: S110 - reader ends with the socket
                pass
        self.ws = None

    def broadcasts(self) -> list[dict[str, Any]]:
        """Frames that carry a room seq (not state)."""
        return [f for f in self.frames if "seq" in f and f["type"] != "state"]


def new_player(base: str) -> Player:
    _, token, user_id = signup(base)
    return Player(base=base, token=token, user_id=user_id)
