"""Helpers shared by the consumer, service and task tests.

Fixtures stay in conftest.py, except two that need these helpers: `game_ready` and
`listen`. The consumer, service and task conftests import them in one line, which makes
`game_ready` autouse in their directories only.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import re_path

from game import events, services, store
from game import tasks as game_tasks
from game.consumers import RoomConsumer
from game.engine import rules
from game.engine.model import Room, room_to_dict
from game.models import Category, GameResult, Question
from game.routing import websocket_urlpatterns
from game.ws_auth import BearerOrSessionAuthMiddleware
from nuxtest.celery import app as celery_app
from tests.conftest import recv, ws_join

BROADCASTS = {"player_joined", "player_left", "game_started", "question", "round_result", "game_over"}
# The apps that playing touches. Each test here is transactional (services reach the database
# from other threads); flushing only these apps' tables after it is several times faster.
PLAY_APPS = ["game", "django.contrib.auth", "django.contrib.contenttypes"]
# The marks of a module of playing tests: that database, and timers recorded, not sent to a broker.
PLAYING = [
    pytest.mark.django_db(transaction=True, available_apps=PLAY_APPS),
    pytest.mark.usefixtures("timers"),
]
QUESTIONS = 24
Timer = tuple[str, list[object], int]
T = TypeVar("T")
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
# Web processes a test can serve a connection from (`web_app`): 1 is the real application.
WEB_PROCESSES = 4


@pytest.fixture(autouse=True)
def game_ready(redis_prefix: str, transactional_db: None, settings: Any) -> None:
    """Rooms can be played: a small question bank ("general", 24 questions), cheap hashing,
    and channel layers for the other web processes of `web_app`."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for n in range(2, WEB_PROCESSES + 1):
        layers[f"web{n}"] = copy.deepcopy(layers["default"])
    settings.CHANNEL_LAYERS = layers
    category = Category.objects.create(slug="general", name="General")
    Question.objects.bulk_create(
        Question(
            category=category,
            text=f"Question {i}?",
            options=[f"q{i} option {o}" for o in range(4)],
            correct=i % 4,
        )
        for i in range(QUESTIONS)
    )


async def users(make_user: Callable[..., Any], *names: str) -> list[Any]:
    """Create one user per name."""
    return [await sync_to_async(make_user)(name) for name in names]


async def room_new(host: Any, **room_settings: Any) -> str:
    """Create a room hosted by `host` and return its code."""
    room = await services.room_create(host_id=host.pk, settings_raw=room_settings)
    return room.code


# A web process the service tests connect players through; it keeps a heartbeat, so the
# sweeper does not prune its connections.
LIVE_WEB = "liveweb"


def conn_id(user: Any, *, tab: int = 1, instance: str = LIVE_WEB) -> str:
    """A connection id as consumers make them ("<instance>|<channel>")."""
    return f"{instance}|{user.pk}.{tab}"


async def connect(code: str, user: Any, *, tab: int = 1, instance: str = LIVE_WEB) -> dict[str, Any]:
    """Open a connection of `user` to a room through the service, as a consumer does; the `state`."""
    if instance == LIVE_WEB:
        await store.instance_heartbeat(LIVE_WEB, 600)
    return await services.room_connect(
        code=code, user_id=user.pk, name=user.username, conn=conn_id(user, tab=tab, instance=instance)
    )


async def disconnect(code: str, user: Any, *, tab: int = 1, instance: str = LIVE_WEB) -> None:
    """Close a connection opened by `connect`."""
    await services.room_disconnect(code=code, user_id=user.pk, conn=conn_id(user, tab=tab, instance=instance))


async def game_playing(people: list[Any], **room_settings: Any) -> str:
    """A room hosted by the first of `people`, all connected, its game started; its code."""
    code = await room_new(people[0], **room_settings)
    for person in people:
        await connect(code, person)
    await services.game_start(code=code, by=people[0].pk)
    return code


async def answer(code: str, user: Any, round_number: int, option: int) -> rules.AnswerOutcome:
    """Submit `user`'s answer through the service, as the consumer does; the outcome."""
    return await services.answer_submit(code=code, user_id=user.pk, round_number=round_number, option=option)


async def quick_place(user: Any) -> str:
    """Quick-match `user` (POST /api/matchmaking/'s service: a held seat); the room's code."""
    return (await services.quickmatch_place(user_id=user.pk)).code


async def quick_join(user: Any) -> str:
    """Quick-match `user` and connect them, as a client does (a member from then on); the code."""
    code = await quick_place(user)
    await connect(code, user)
    return code


async def results_rows(code: str) -> list[GameResult]:
    """The stored results of the games of a room, by rank."""

    def fetch() -> list[GameResult]:
        return list(GameResult.objects.filter(room=code).order_by("rank"))

    return await sync_to_async(fetch)()


async def results_unstore(code: str, *, rows_too: bool = True) -> None:
    """As if the process that finished the game died before storing (or marking) its results."""

    def unmark(room: Room) -> None:
        room.results_stored = False

    await store.room_update(code, unmark)
    if rows_too:
        await sync_to_async(lambda: GameResult.objects.filter(room=code).delete())()


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


# --- Timers ----------------------------------------------------------------------------------


def timers_of(armed: list[Timer], task: str) -> list[Timer]:
    """The timers of one task among those the `timers` fixture recorded."""
    return [t for t in armed if t[0] == task]


async def timers_armed(armed: list[Timer], task: str, count: int = 1) -> list[Timer]:
    """`timers_of`, once `count` of them are armed: a broadcast is published before the timer
    it brings is armed (services._after), so a client can hold the frame first."""
    for _ in range(500):
        found = timers_of(armed, task)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.01)
    return timers_of(armed, task)


def task_run(name: str, *args: object) -> Any:
    """Run a Celery task of the project in this thread, as a worker would, and return its result."""
    assert name.startswith(game_tasks.__name__ + ".")
    return celery_app.tasks[name].apply(args=tuple(args), throw=True).get()


async def task_call(name: str, *args: object) -> Any:
    """Run a Celery task of the project off the event loop (in a thread, as a worker would)."""
    return await asyncio.to_thread(task_run, name, *args)


async def timer_fire(timer: Timer) -> Any:
    """Fire a recorded timer now: run its task."""
    name, args, _ = timer
    return await task_call(name, *args)


# --- Concurrency -----------------------------------------------------------------------------


def in_threads(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Call `call(i)` from `count` threads released at once; return the results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def on_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on an event loop of its own, as another worker process would."""
    return asyncio.run(make())


async def together(*calls: Awaitable[Any]) -> list[Any]:
    """Await several calls concurrently on this loop; return their results in order."""
    return list(await asyncio.gather(*calls))


# --- Listening to a room like a connection does ----------------------------------------------


class RoomListener:
    """A bare channel-layer subscriber to a room's group: sees every broadcast of the room.

    A task receives continuously into a queue, so that waiting with a timeout never cancels
    a channel-layer receive (channels-redis can lose a message then). Open through the
    `listen` fixture, which closes it.
    """

    def __init__(self, code: str, channel: str, alias: str) -> None:
        self.code = code
        self.channel = channel
        self.alias = alias
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, code: str, *, web: int = 1) -> RoomListener:
        """Subscribe a new channel (of web process `web`) to the room's group."""
        alias = "default" if web == 1 else f"web{web}"
        layer = get_channel_layer(alias)
        assert layer is not None
        channel = await layer.new_channel()
        await layer.group_add(events.room_group(code), channel)
        listener = cls(code, channel, alias)
        listener.task = asyncio.get_running_loop().create_task(listener._pump())
        return listener

    async def _pump(self) -> None:
        layer = get_channel_layer(self.alias)
        assert layer is not None
        while True:
            message = await layer.receive(self.channel)
            assert message["type"] == "room.event", message
            self.queue.put_nowait(dict(message["frame"]))

    async def close(self) -> None:
        """Stop listening."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        """The next broadcast frame."""
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def until(self, kind: str, timeout: float = 5) -> list[dict[str, Any]]:
        """Every broadcast up to and including the first one of type `kind`."""
        out = []
        while True:
            frame = await self.next(timeout)
            out.append(frame)
            if frame["type"] == kind:
                return out

    async def until_seq(self, seq: int, timeout: float = 5) -> list[dict[str, Any]]:
        """Broadcasts until one of each seq up to `seq` has come (in whatever order)."""
        out: list[dict[str, Any]] = []
        while {f["seq"] for f in out} != set(range(1, seq + 1)):
            out.append(await self.next(timeout))
        return out

    async def drain(self, quiet: float = 0.2) -> list[dict[str, Any]]:
        """Every broadcast until none has come for `quiet` seconds."""
        out = []
        while True:
            try:
                out.append(await self.next(quiet))
            except TimeoutError:
                return out


@pytest.fixture
async def listen() -> AsyncIterator[Callable[..., Awaitable[RoomListener]]]:
    """Open room listeners: `await listen(code)`; they are closed at the end of the test."""
    opened: list[RoomListener] = []

    async def open_(code: str, *, web: int = 1) -> RoomListener:
        listener = await RoomListener.open(code, web=web)
        opened.append(listener)
        return listener

    yield open_
    for listener in opened:
        await listener.close()


# --- Other web processes ------------------------------------------------------------------


@functools.cache
def web_app(n: int) -> Any:
    """The WebSocket application of web process `n` (1: the real one; 2..WEB_PROCESSES: others).

    Another process runs the same consumer, routes and authentication with a channel-layer
    client of its own. All connections of one process share one client (one Redis key), and
    channels-redis can lose a message meant for all of them when one of them is cancelled as
    it closes (django/channels_redis#366). A test that closes a connection mid-game and then
    expects broadcasts on the others serves the closing one from another process, so that it
    tests what it names and stays deterministic.
    """
    if n == 1:
        from nuxtest.asgi import application

        return application
    assert 2 <= n <= WEB_PROCESSES, n
    consumer: Any = type(f"RoomConsumerOnWeb{n}", (RoomConsumer,), {"channel_layer_alias": f"web{n}"})
    route = websocket_urlpatterns[0]
    return BearerOrSessionAuthMiddleware(URLRouter([re_path(str(route.pattern), consumer.as_asgi())]))


# --- A player's connection that checks the seq promise ----------------------------------------


@dataclass
class PlayerSocket:
    """One connection of one player; every frame it reads is checked against GAME.md's `seq` promise.

    A `state` sets the expected sequence; each broadcast after it must carry the last seq + 1.
    While `lenient` (see `resync`), a broadcast need only carry a higher seq than the last.
    """

    user: Any
    comm: WebsocketCommunicator
    state: dict[str, Any]
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    lenient: bool = False

    @classmethod
    async def open(cls, code: str, user: Any, *, web: int = 1) -> PlayerSocket:
        """Connect `user` to room `code` through web process `web`; the `state` frame comes first."""
        comm, state = await ws_join(code, user, app=web_app(web))
        return cls(user=user, comm=comm, state=state, seq=state["seq"], frames=[state])

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        """The next frame (seq-checked)."""
        frame = await recv(self.comm, timeout)
        self.frames.append(frame)
        if frame["type"] == "state":
            assert frame["seq"] >= self.seq, ("a state went back in time", self.seq, frame)
            self.seq = frame["seq"]
            self.state = frame
        elif frame["type"] in BROADCASTS:
            expected = frame["seq"] > self.seq if self.lenient else frame["seq"] == self.seq + 1
            assert expected, (
                f"{self.user.username}: after seq {self.seq} came {frame['type']} seq {frame['seq']}"
            )
            self.seq = frame["seq"]
        return frame

    async def until(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        """Read (and check) frames up to the first one of type `kind`; return it."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a JSON frame."""
        await self.comm.send_to(text_data=json.dumps(frame))

    async def answer(self, round_number: int, option: int) -> dict[str, Any]:
        """Answer and return the `answer_ack` (broadcasts before it are read and checked too)."""
        await self.send({"type": "answer", "round": round_number, "option": option})
        return await self.until("answer_ack")

    async def sync(self) -> dict[str, Any]:
        """Ask for a fresh `state` (broadcasts before it are read and checked too)."""
        await self.send({"type": "sync"})
        return await self.until("state")

    async def resync(self) -> dict[str, Any]:
        """Do what GAME.md tells a client that may have seen a gap: `sync`, continue from the state.

        Frames before the state need only go up in seq; from the state on, the promise holds.
        """
        self.lenient = True
        try:
            return await self.sync()
        finally:
            self.lenient = False

    async def catch_up(self, seq: int, timeout: float = 5) -> None:
        """Read (and check) frames until the last broadcast read carries `seq`."""
        while self.seq < seq:
            await self.recv(timeout)

    async def quiet(self, timeout: float = 0.1) -> bool:
        """True if no frame arrives within `timeout`."""
        return await self.comm.receive_nothing(timeout)

    async def close(self) -> None:
        """Close the connection (as a browser tab does)."""
        await self.comm.disconnect(timeout=5)


async def sockets_open(code: str, *people: Any, web: int = 1) -> list[PlayerSocket]:
    """Connect players one by one; every earlier player sees each later one join."""
    out: list[PlayerSocket] = []
    for person in people:
        sock = await PlayerSocket.open(code, person, web=web)
        for other in out:
            joined = await other.recv()
            assert joined["type"] == "player_joined" and joined["player"]["id"] == person.pk, joined
        out.append(sock)
    return out


async def sockets_close(socks: list[PlayerSocket]) -> None:
    """Close every one of these connections."""
    for s in socks:
        await s.close()


async def lobby_sockets(make_user: Any, players: int, **room_settings: Any) -> tuple[str, list[PlayerSocket]]:
    """A room hosted by the first of `players` users (NAMES), all connected (web process 1)."""
    people = await users(make_user, *NAMES[:players])
    code = await room_new(people[0], **room_settings)
    return code, await sockets_open(code, *people)


async def start_over_socket(socks: list[PlayerSocket]) -> dict[str, Any]:
    """The host (first socket) starts; every socket gets `game_started`, then round 1's question."""
    await socks[0].send({"type": "start"})
    question: dict[str, Any] = {}
    for s in socks:
        started = await s.until("game_started")
        assert started["rounds"] >= 1
        question = await s.recv()
        assert question["type"] == "question" and question["round"] == 1, question
    return question


def keys_anywhere(data: Any) -> set[str]:
    """Every dictionary key anywhere inside JSON-like data."""
    if isinstance(data, dict):
        return set(data).union(*(keys_anywhere(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(keys_anywhere(v) for v in data))
    return set()
