"""Shared fixtures: real Redis with a random key prefix per test, timers, users, tokens, sockets."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from rest_framework_simplejwt.tokens import AccessToken

from game import scheduler

# The e2e stack's fixtures (`stack`, `live`, `otlp`, `sentry_server`), for tests/e2e and
# tests/loadtest alike: started once per session, only if a test asks for them.
pytest_plugins = ["tests.e2e.stack"]

ORIGIN = "http://localhost"
PASSWORD = "correct-horse-battery-9"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Load the ASGI application before any test runs.

    Its import sets Django up again, and Django's logging set-up replaces the root logger's
    handlers: in the first test that opened a socket, `caplog` saw nothing after that.
    """
    import nuxtest.asgi  # noqa: F401


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database, whose teardown also closes the connection that
    asgiref's shared thread holds (`database_sync_to_async` runs there, and its connection
    outlives the tests): otherwise the database cannot be dropped at the end ("is being
    accessed by other users") and is left behind."""
    yield
    with django_db_blocker.unblock():
        asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(autouse=True)
def redis_prefix(settings: Any) -> Iterator[str]:
    """Give each test its own Redis key space (state, channel layer, cache), removed after."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    settings.NUXTEST_REDIS_PREFIX = prefix
    layers: dict[str, Any] = copy.deepcopy(django_settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["prefix"] = prefix + "asgi"
    settings.CHANNEL_LAYERS = layers
    caches = copy.deepcopy(django_settings.CACHES)
    caches["default"]["KEY_PREFIX"] = prefix + "cache"
    settings.CACHES = caches
    yield prefix
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def questions(transactional_db: None) -> None:
    """The shipped question bank."""
    call_command("loaddata", "questions", verbosity=0)


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[object], int]]:
    """Record the timers the services arm instead of sending them to a Celery broker.

    Nothing runs them: a test fires one by calling its task (tests/play.py `timer_fire`).
    """
    armed: list[tuple[str, list[object], int]] = []

    async def run_at(task: str, *, args: list[object], due_ms: int) -> None:
        armed.append((task, list(args), due_ms))

    monkeypatch.setattr(scheduler, "run_at", run_at)
    return armed


@pytest.fixture
def make_user(transactional_db: None) -> Callable[..., Any]:
    """Create users: make_user("alice")."""

    def make(username: str | None = None, password: str = PASSWORD) -> Any:
        name = username or f"u{uuid.uuid4().hex[:8]}"
        return get_user_model().objects.create_user(username=name, password=password)

    return make


def bearer(user: Any) -> str:
    """An access JWT for a user."""
    return str(AccessToken.for_user(user))


async def ws_open(
    code: str,
    *,
    user: Any | None = None,
    token: str | None = None,
    origin: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    app: Any | None = None,
) -> WebsocketCommunicator:
    """Open a WebSocket to a room through the real ASGI application (not yet connected).

    `app`: the application of another web process (tests/play.py `web_app`).
    """
    from nuxtest.asgi import application

    hdrs = list(headers or [])
    if user is not None:
        token = await sync_to_async(bearer)(user)
    if token is not None:
        hdrs.append((b"authorization", f"Bearer {token}".encode()))
    if origin is not None:
        hdrs.append((b"origin", origin.encode()))
    return WebsocketCommunicator(app or application, f"/ws/rooms/{code}/", headers=hdrs)


async def ws_join(code: str, user: Any, **kwargs: Any) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """Connect a player to a room and return the communicator and its first `state` frame."""
    comm = await ws_open(code, user=user, **kwargs)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    frame = await recv(comm)
    assert frame["type"] == "state", frame
    return comm, frame


async def recv(comm: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    """The next JSON frame."""
    return json.loads(await comm.receive_from(timeout=timeout))


async def recv_until(comm: WebsocketCommunicator, kind: str, timeout: float = 10) -> dict[str, Any]:
    """Skip frames until one of type `kind` arrives."""
    while True:
        frame = await recv(comm, timeout)
        if frame["type"] == kind:
            return frame


async def send(comm: WebsocketCommunicator, frame: dict[str, Any]) -> None:
    """Send a JSON frame."""
    await comm.send_to(text_data=json.dumps(frame))


async def closed_with(comm: WebsocketCommunicator, timeout: float = 5) -> int:
    """Wait for the server to close the socket; return its close code."""
    while True:
        out = await comm.receive_output(timeout)
        if out["type"] == "websocket.close":
            return int(out.get("code", 1000))


@pytest.fixture
async def close_all() -> AsyncIterator[list[WebsocketCommunicator]]:
    """Collect communicators; they are disconnected at the end of the test."""
    comms: list[WebsocketCommunicator] = []
    yield comms
    for comm in comms:
        try:
            await comm.disconnect(timeout=2)
        except Exception:  # noqa: S110 - already closed by the server
            pass


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the end-to-end tests last: their session-wide stack (web, worker, beat) keeps
    using the test database, and a database flush of a later test would race it."""
    # The live Prometheus drills kill workers and inject faults into the shared stack: last.
    items.sort(
        key=lambda item: (item.get_closest_marker("e2e") is not None, "test_prometheus_live" in item.nodeid)
    )
