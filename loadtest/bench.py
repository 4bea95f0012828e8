"""`make bench`: server throughput as ratios measured in one run on this machine.

Starts its own processes (a Redis — embedded, or REDIS_URL under a key prefix of its own —,
a migrated database, a Celery worker, and one web process at a time) and drives them with
one asyncio `websockets` client. On a machine with 2+ cores the web process is pinned to
CPU 0 and the client, Redis and the worker to CPU 1, so the web process under test has a
core to itself. Measures:

1. bare Channels echo (stock consumer, and without Channels' per-frame DB thread trip);
2. game answers: rooms of 4 answering every question at once, reveal 0 — acks/s and
   answer→ack latency; ratio game / stock echo (target ≥ 0.5); then answers only
   (`--answer-rooms` rooms set up before the window, none set up or ended in it);
3. room broadcast (1 in, 4 out) over RedisChannelLayer and RedisPubSubChannelLayer, and
   the game itself over each layer (lost frames = seq gaps);
4. telemetry cost: the game again with telemetry fully off (no exporter, OTEL_SDK_DISABLED,
   warnings-only logs) and fully on (100 % trace sampling exported by OTLP/HTTP to a local
   sink in this process, INFO JSON logs, Sentry pointed at the same sink); ratio on / off
   (target ≥ 0.90); then both again below saturation (players think 0.5-1.5 s,
   `--paced-think`) for the p99 difference (target ≤ 1 ms: at saturation a closed loop's
   latency is its queue, which any slowdown lengthens); and once more fully on but without
   the Redis instrumentations (no span and no Sentry breadcrumb per Redis command: the
   operator's switches for the costliest part). `--no-telemetry` skips it;
   `--telemetry-answers` adds each variant's answers-only figure (the answer path alone,
   without the rooms' set-up that the game figure also holds);
5. variants: `--variant NAME:KEY=VALUE[,KEY=VALUE]` runs the game measurement again with
   those variables in the server's environment (and its answers-only figure); `--bound`
   adds two: the game with its rooms owned by the web process, without and with the
   in-memory channel layer (loadtest/bound/sitecustomize.py: an upper bound, not a design).

Every figure is taken `--repeat` times, interleaved, and the median is reported (the
machine is shared; see docs/performance.md). Writes the table into docs/performance.md
(between the bench markers) unless --no-docs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import requests
from websockets.asyncio.client import ClientConnection, connect

from loadtest.stack import ROOT, Stack

CORE_LAYER = "channels_redis.core.RedisChannelLayer"
PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"
LAYERS = {"core": CORE_LAYER, "pubsub": PUBSUB_LAYER}
ANSWER = '{"type":"answer","round":1,"option":2}'
# Telemetry fully on but for the Redis instrumentations (no commas: --paced splits on them).
TELEMETRY_WITHOUT_REDIS = "telemetry on without Redis"
# A player that hears nothing for this long gives up on its room (counted as a stall).
STALL_SECONDS = 5.0
# --bound's variants (loadtest/bound/sitecustomize.py): what the answer path could reach.
BOUND_ROOMS = "bound: rooms in the process"
BOUND_ROOMS_AND_LAYER = "bound: rooms in the process, in-memory channel layer"
# The game's per-connection flood limit (10 frames/s) would refuse a bench player that
# answers every 20 ms; the bench measures throughput, so the game servers get a high limit.
GAME_ENV = {
    "NUXTEST_WS_RATE_PER_SECOND": "100000",
    "NUXTEST_WS_RATE_BURST": "100000",
    "NUXTEST_WS_USER_RATE_PER_SECOND": "100000",
    "NUXTEST_WS_USER_RATE_BURST": "100000",
}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Figure:
    """One measurement: a rate, its latencies, and what it cost the server."""

    name: str
    rate: float
    unit: str
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    lost: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def pct(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


class Window:
    """The measuring window: counts only between `warmup` and `warmup + duration`."""

    def __init__(self, warmup: float, duration: float) -> None:
        now = time.perf_counter()
        self.start = now + warmup
        self.end = self.start + duration
        self.duration = duration

    def open(self) -> bool:
        now = time.perf_counter()
        return self.start <= now < self.end

    def over(self) -> bool:
        return time.perf_counter() >= self.end


def _cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


def _helpers_cpu_seconds(pid: int) -> float:
    """CPU of the web process's children (its span relay) so far."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0.0
    return sum(_cpu_seconds(child.pid) for child in children)


async def _measure(pid: int, window: Window, load: Any, helpers: dict[str, Any] | None = None) -> float:
    """Run `load` (a coroutine) and return the server's CPU share (of one core) in the window.

    `helpers`, if given, gets "helpers_cpu": the share its children (the span relay) used.
    """

    async def sample() -> float:
        await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
        before, helpers_before = _cpu_seconds(pid), _helpers_cpu_seconds(pid)
        await asyncio.sleep(window.duration)
        if helpers is not None:
            used = _helpers_cpu_seconds(pid) - helpers_before
            if used > 0:
                helpers["helpers_cpu"] = f"{used / window.duration:.0%}"
        return (_cpu_seconds(pid) - before) / window.duration

    cpu, _ = await asyncio.gather(sample(), load)
    return cpu


# --- 1. echo ------------------------------------------------------------------------------


async def echo(url: str, pid: int, name: str, conns: int, warmup: float, duration: float) -> Figure:
    """Closed-loop echo on `conns` connections; frames/s answered."""
    window = Window(warmup, duration)
    lat: list[float] = []
    count = 0

    async def one() -> None:
        nonlocal count
        async with connect(url, max_queue=None, compression=None) as ws:
            while not window.over():
                t0 = time.perf_counter()
                await ws.send(ANSWER)
                await ws.recv()
                if window.open():
                    count += 1
                    lat.append((time.perf_counter() - t0) * 1000)

    cpu = await _measure(pid, window, asyncio.gather(*(one() for _ in range(conns))))
    return Figure(name, count / duration, "frames/s", lat, cpu)


# --- 2. game answers ----------------------------------------------------------------------


@dataclass
class GameCounters:
    acks: int = 0
    frames: int = 0
    lost: int = 0
    games: int = 0  # ended inside the window
    ended: int = 0  # ended at all (the answers-only figure wants none before the window is over)
    refused: int = 0
    errors: int = 0
    stalls: int = 0
    lat: list[float] = field(default_factory=list)


async def _player(
    ws: ClientConnection,
    state: dict[str, Any],
    window: Window,
    counters: GameCounters,
    host: bool,
    think: float = 0.0,
) -> None:
    """Answer every question (at once, or after 0.5-1.5 x `think` s); count acks; check the room's seq."""
    last_seq = int(state["seq"])
    sent_at: dict[int, float] = {}
    if host:
        await ws.send('{"type":"start"}')
    while not window.over():
        try:
            raw = await asyncio.wait_for(ws.recv(), STALL_SECONDS)
        except TimeoutError:
            counters.stalls += 1
            return
        frame = json.loads(raw)
        kind = frame["type"]
        if window.open():
            counters.frames += 1
        if "seq" in frame and kind != "state":
            if frame["seq"] > last_seq + 1:
                counters.lost += frame["seq"] - last_seq - 1
            last_seq = max(last_seq, frame["seq"])
        if kind == "question":
            n = int(frame["round"])
            if think:
                await asyncio.sleep(think * random.uniform(0.5, 1.5))
            sent_at[n] = time.perf_counter()
            await ws.send(f'{{"type":"answer","round":{n},"option":{n % 4}}}')
        elif kind == "answer_ack":
            t0 = sent_at.pop(int(frame["round"]), None)
            if window.open() and t0 is not None:
                counters.acks += 1
                counters.lat.append((time.perf_counter() - t0) * 1000)
                if not frame["accepted"]:
                    counters.refused += 1
        elif kind == "error":
            counters.errors += 1
        elif kind == "game_over":
            counters.ended += 1
            if window.open():
                counters.games += 1
            return


async def _room_open(
    base: str, tokens: list[str]
) -> tuple[str, list[ClientConnection], list[dict[str, Any]]]:
    """A new 20-round room of len(tokens) (reveal 0), every player connected: its code, the
    sockets and `state` frames (every player a member before the host starts)."""
    ws_base = base.replace("http://", "ws://")
    r = await asyncio.to_thread(
        requests.post,
        f"{base}/api/rooms/",
        json={"rounds": 20, "answer_seconds": 60, "reveal_seconds": 0, "max_players": len(tokens)},
        headers={"Authorization": f"Bearer {tokens[0]}"},
        timeout=30,
    )
    r.raise_for_status()
    code = r.json()["code"]
    socks: list[ClientConnection] = []
    try:
        for token in tokens:
            socks.append(
                await connect(
                    f"{ws_base}/ws/rooms/{code}/",
                    additional_headers={"Authorization": f"Bearer {token}"},
                    max_queue=None,
                    compression=None,
                    open_timeout=30,
                )
            )
        states = [json.loads(await ws.recv()) for ws in socks]
    except BaseException:
        for ws in socks:
            await ws.close()
        raise
    assert all(s["type"] == "state" for s in states), states
    return code, socks, states


async def _rooms_drop(codes: list[str]) -> None:
    """Take a figure's rooms out of Redis once it is measured: the ones still under way would
    otherwise be swept every second by the worker and have their rounds closed by its timers
    a minute later, on the client's core, during the figures that follow."""
    from game import store

    try:
        for code in codes:
            await store.room_drop(code)
    finally:
        await store.client().aclose()


async def _room_loop(
    base: str, tokens: list[str], window: Window, counters: GameCounters, codes: list[str], think: float = 0.0
) -> None:
    """Play 20-round games in rooms of len(tokens) until the window is over (their codes in `codes`)."""
    while not window.over():
        code, socks, states = await _room_open(base, tokens)
        codes.append(code)
        try:
            await asyncio.gather(
                *(
                    _player(ws, st, window, counters, host=i == 0, think=think)
                    for i, (ws, st) in enumerate(zip(socks, states, strict=False))
                )
            )
        finally:
            for ws in socks:
                await ws.close()


def make_tokens(n: int) -> list[str]:
    """n fresh accounts in the run's database (no password hashing) and their access tokens."""
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    user_model = get_user_model()
    run = uuid.uuid4().hex[:8]
    users = [user_model(username=f"bench{run}{i}") for i in range(n)]
    for u in users:
        u.set_unusable_password()
    user_model.objects.bulk_create(users)
    created = user_model.objects.filter(username__startswith=f"bench{run}")
    return [str(AccessToken.for_user(u)) for u in created]


async def game(
    base: str, pid: int, name: str, rooms: int, warmup: float, duration: float, think: float = 0.0
) -> Figure:
    """Answer throughput of one web process: `rooms` rooms of 4 answering at once.

    With `think`, players wait 0.5-1.5 x `think` s before each answer: a load below
    saturation, where answer->ack latency is the server's handling rather than its queue.
    """
    tokens = await asyncio.to_thread(make_tokens, rooms * 4)
    window = Window(warmup, duration)
    counters = GameCounters()
    codes: list[str] = []
    loops = [
        _room_loop(base, tokens[i * 4 : i * 4 + 4], window, counters, codes, think) for i in range(rooms)
    ]
    helpers: dict[str, Any] = {}
    cpu = await _measure(pid, window, asyncio.gather(*loops), helpers)
    await _rooms_drop(codes)
    return _game_figure(name, counters, duration, cpu, helpers)


def _game_figure(
    name: str, counters: GameCounters, duration: float, cpu: float, extra: dict[str, Any]
) -> Figure:
    return Figure(
        name,
        counters.acks / duration,
        "acks/s",
        counters.lat,
        cpu,
        counters.lost,
        {
            "frames_per_s": round(counters.frames / duration),
            "games": counters.games,
            "refused": counters.refused,
            "errors": counters.errors,
            "stalls": counters.stalls,
            **extra,
        },
    )


async def game_answers(base: str, pid: int, name: str, rooms: int, warmup: float, duration: float) -> Figure:
    """Answer throughput with no room set up or ended in the window: `rooms` rooms of 4 are
    created and joined first, started together, and measured while every game is under way.

    `game` above plays game after game, so its window also holds what a game costs besides
    its answers (the room's HTTP creation, four handshakes, the results written, four
    closes: a third of the web process's CPU in a py-spy profile); the echo it is compared
    with opens its connections once. A game that ends before the window does is flagged
    (more rooms, or a shorter window, then).
    """
    tokens = await asyncio.to_thread(make_tokens, rooms * 4)
    opening = asyncio.Semaphore(16)

    async def room(i: int) -> tuple[str, list[ClientConnection], list[dict[str, Any]]]:
        async with opening:
            return await _room_open(base, tokens[i * 4 : i * 4 + 4])

    opened = await asyncio.gather(*(room(i) for i in range(rooms)))
    window = Window(warmup, duration)
    counters = GameCounters()
    players = [
        _player(ws, st, window, counters, host=j == 0)
        for _, socks, states in opened
        for j, (ws, st) in enumerate(zip(socks, states, strict=False))
    ]
    helpers: dict[str, Any] = {}
    try:
        cpu = await _measure(pid, window, asyncio.gather(*players), helpers)
    finally:
        await asyncio.gather(*(ws.close() for _, socks, _ in opened for ws in socks))
        await _rooms_drop([code for code, _, _ in opened])
    if counters.ended:
        print(
            f"  ! {name}: {counters.ended // 4} of {rooms} games ended before the window did"
            " (raise --answer-rooms)",
            flush=True,
        )
    return _game_figure(name, counters, duration, cpu, {"rooms": rooms, **helpers})


# --- 3. room broadcast ---------------------------------------------------------------------


async def broadcast(url: str, pid: int, name: str, rooms: int, warmup: float, duration: float) -> Figure:
    """Rooms of 4 on the broadcast consumer; one member sends, all 4 must receive it."""
    window = Window(warmup, duration)
    done = 0
    lost = 0
    lat: list[float] = []

    async def room(i: int) -> None:
        nonlocal done, lost
        name = f"r{i}-{uuid.uuid4().hex[:6]}"
        members = [
            await connect(f"{url}/broadcast/{name}/", max_queue=None, compression=None) for _ in range(4)
        ]
        try:
            n = 0
            while not window.over():
                n += 1
                t0 = time.perf_counter()
                await members[0].send(str(n))
                for ws in members:
                    try:
                        while True:
                            got = int(await asyncio.wait_for(ws.recv(), 2))
                            if got >= n:
                                lost += got - n
                                break
                    except TimeoutError:
                        lost += 1
                if window.open():
                    done += 1
                    lat.append((time.perf_counter() - t0) * 1000)
        finally:
            for ws in members:
                await ws.close()

    cpu = await _measure(pid, window, asyncio.gather(*(room(i) for i in range(rooms))))
    return Figure(name, done / duration, "rooms/s", lat, cpu, lost)


# --- 5. idle players' memory -------------------------------------------------------------


async def idle(base: str, pid: int, players: int) -> Figure:
    """The web process's memory per idle connected player (lobby rooms of 8)."""
    tokens = await asyncio.to_thread(make_tokens, players)
    ws_base = base.replace("http://", "ws://")
    await asyncio.sleep(1)
    before = psutil.Process(pid).memory_info().rss

    def create_room(token: str) -> str:
        r = requests.post(
            f"{base}/api/rooms/",
            json={"max_players": 8},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        r.raise_for_status()
        return str(r.json()["code"])

    codes = [await asyncio.to_thread(create_room, tokens[i]) for i in range(0, players, 8)]
    socks: list[ClientConnection] = []
    sem = asyncio.Semaphore(50)

    async def join(i: int) -> None:
        async with sem:
            ws = await connect(
                f"{ws_base}/ws/rooms/{codes[i // 8]}/",
                additional_headers={"Authorization": f"Bearer {tokens[i]}"},
                max_queue=None,
                compression=None,
                open_timeout=60,
            )
            socks.append(ws)
            await ws.recv()  # its `state`: the player is in

    try:
        await asyncio.gather(*(join(i) for i in range(players)))
        await asyncio.sleep(5)  # let the joins' broadcasts drain
        after = psutil.Process(pid).memory_info().rss
    finally:
        await asyncio.gather(*(ws.close() for ws in socks), return_exceptions=True)
    per_player = (after - before) / players / 1024
    return Figure(
        f"idle players ({players})",
        per_player,
        "KiB/player",
        extra={"rss_before_mib": round(before / 2**20), "rss_after_mib": round(after / 2**20)},
    )


# --- Running it all ------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(
        f"{p} {metadata.version(p)}"
        for p in ("Django", "channels", "channels-redis", "daphne", "uvicorn", "websockets", "redis")
        if _has(p)
    )
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": versions,
        "os": platform.platform(),
    }


def _has(dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def _parse_env(pairs: str) -> dict[str, str]:
    out = {}
    for pair in filter(None, pairs.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--variant/--server-env: {pair!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every measurement, print the table, write the docs."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per figure")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each figure (median reported)")
    parser.add_argument("--conns", type=int, default=64, help="echo connections")
    parser.add_argument("--rooms", type=int, default=32, help="game rooms of 4 players")
    parser.add_argument("--broadcast-rooms", type=int, default=32, help="broadcast rooms of 4")
    parser.add_argument(
        "--answer-rooms",
        type=int,
        default=96,
        help="rooms of 4 of the answers-only game figure, all under way in its window (0: skip it)",
    )
    parser.add_argument(
        "--answer-duration", type=float, default=4.0, help="seconds measured of the answers-only figure"
    )
    parser.add_argument("--servers", default="daphne,uvicorn", help="web servers to compare")
    parser.add_argument("--layers", default="core,pubsub", help="channel layers to compare")
    parser.add_argument(
        "--server-env", default="", help="KEY=VALUE[,KEY=VALUE] for every server process of the run"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE[,...]: measure the game again with this server environment",
    )
    parser.add_argument(
        "--idle-players", type=int, default=2000, help="idle players for the memory figure (0: skip)"
    )
    parser.add_argument("--no-telemetry", action="store_true", help="skip the telemetry on/off comparison")
    parser.add_argument(
        "--telemetry-answers",
        action="store_true",
        help="also the answers-only figure of each telemetry variant (the answer path alone)",
    )
    parser.add_argument(
        "--bound",
        action="store_true",
        help="also the game with rooms owned by the web process (loadtest/bound/): an upper bound",
    )
    parser.add_argument(
        "--paced-think",
        type=float,
        default=1.0,
        help="mean think time (s) of the paced telemetry on/off latency figures (0: skip them)",
    )
    parser.add_argument(
        "--paced",
        default=f"telemetry off,telemetry on,{TELEMETRY_WITHOUT_REDIS}",
        help="variants measured again below saturation (comma-separated names)",
    )
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/ alone")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    server_cpu, client_cpu = (0, 1) if cores >= 2 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    base_env = _parse_env(args.server_env)
    variants = []
    telemetry_variants: list[tuple[str, dict[str, str]]] = []
    sink = None
    if not args.no_telemetry:
        sink = TelemetrySink()
        on = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_TRACES_SAMPLER": "always_on",
            "LOG_LEVEL": "INFO",
            "SENTRY_DSN": sink.dsn,
        }
        variants += [
            ("telemetry off", {"OTEL_SDK_DISABLED": "true", "LOG_LEVEL": "WARNING"}),
            ("telemetry on", on),
            # The operator's switches for the costliest part (docs/telemetry.md): no span and
            # no Sentry breadcrumb per Redis command, everything else as above.
            (
                TELEMETRY_WITHOUT_REDIS,
                {**on, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "redis", "NUXTEST_SENTRY_REDIS": "false"},
            ),
        ]
        telemetry_variants = list(variants)
    for v in args.variant:
        name, _, pairs = v.partition(":")
        # {sink} / {sink_dsn}: the bench's own sink, e.g. OTEL_EXPORTER_OTLP_ENDPOINT={sink}
        if "{sink" in pairs:
            sink = sink or TelemetrySink()
            pairs = pairs.replace("{sink}", sink.url).replace("{sink_dsn}", sink.dsn)
        variants.append((name, _parse_env(pairs)))
    if args.bound:
        bound = {"NUXTEST_BOUND_ROOMS": "1", "PYTHONPATH": str(ROOT / "loadtest" / "bound")}
        variants += [
            (BOUND_ROOMS, bound),
            (
                BOUND_ROOMS_AND_LAYER,
                {
                    **bound,
                    "CHANNEL_LAYER_BACKEND": "channels.layers.InMemoryChannelLayer",
                    "CHANNEL_LAYER_CAPACITY": "100000",
                },
            ),
        ]
    servers = [s for s in args.servers.split(",") if s]
    layers = [layer for layer in args.layers.split(",") if layer]

    def answers_only(url: str, pid: int, name: str) -> Any:
        return game_answers(url, pid, name, args.answer_rooms, min(args.warmup, 1.0), args.answer_duration)

    logs = ROOT / "loadtest" / "reports" / "bench-logs"
    print("starting Redis, database, worker …", flush=True)
    stack = Stack.create(logs, redis_cpu=client_cpu)
    stack.env.update(base_env)
    os.environ.update(stack.env)
    import django

    django.setup()
    figures: dict[str, list[Figure]] = {}
    unit_costs: dict[str, dict[str, float]] = {}

    def keep(fig: Figure) -> None:
        figures.setdefault(fig.name, []).append(fig)
        extra = f" {fig.extra}" if fig.extra else ""
        print(
            f"  {fig.name:34s} {fig.rate:9.0f} {fig.unit:9s} p50 {fig.pct(0.5) or 0:6.1f} ms"
            f"  p99 {fig.pct(0.99) or 0:6.1f} ms  server CPU {fig.server_cpu:4.0%}  lost {fig.lost}{extra}",
            flush=True,
        )

    def run(coro: Any) -> None:
        keep(_run(coro))

    try:
        stack.start_worker(cpu=client_cpu)
        for rep in range(args.repeat):
            print(f"round {rep + 1}/{args.repeat}", flush=True)
            for server in servers:
                url = stack.start_web(
                    "echo", server=server, app="loadtest.echo_asgi:application", cpu=server_cpu
                )
                pid = stack.procs["echo"].pid
                ws = url.replace("http://", "ws://")
                run(echo(f"{ws}/echo/", pid, f"echo {server}", args.conns, args.warmup, args.duration))
                run(
                    echo(
                        f"{ws}/echo-nodb/",
                        pid,
                        f"echo {server} (no DB trip)",
                        args.conns,
                        args.warmup,
                        args.duration,
                    )
                )
                stack.stop("echo")
                url = stack.start_web("game", server=server, cpu=server_cpu, env=GAME_ENV)
                run(
                    game(
                        url, stack.procs["game"].pid, f"game {server}", args.rooms, args.warmup, args.duration
                    )
                )
                stack.stop("game")
                if args.answer_rooms:
                    url = stack.start_web("game", server=server, cpu=server_cpu, env=GAME_ENV)
                    run(answers_only(url, stack.procs["game"].pid, f"game answers {server}"))
                    stack.stop("game")
            for layer in layers:
                env = {"CHANNEL_LAYER_BACKEND": LAYERS[layer]}
                url = stack.start_web("bcast", app="loadtest.echo_asgi:application", cpu=server_cpu, env=env)
                ws = url.replace("http://", "ws://")
                run(
                    broadcast(
                        ws,
                        stack.procs["bcast"].pid,
                        f"broadcast daphne {layer}",
                        args.broadcast_rooms,
                        args.warmup,
                        args.duration,
                    )
                )
                stack.stop("bcast")
                if layer != "core":  # the core layer's game figure is `game daphne` above
                    url = stack.start_web("game", cpu=server_cpu, env={**GAME_ENV, **env})
                    run(
                        game(
                            url,
                            stack.procs["game"].pid,
                            f"game daphne {layer}",
                            args.rooms,
                            args.warmup,
                            args.duration,
                        )
                    )
                    stack.stop("game")
            for name, env in variants:
                url = stack.start_web("game", cpu=server_cpu, env={**GAME_ENV, **env})
                run(
                    game(
                        url,
                        stack.procs["game"].pid,
                        f"game daphne [{name}]",
                        args.rooms,
                        args.warmup,
                        args.duration,
                    )
                )
                if args.answer_rooms and ((name, env) not in telemetry_variants or args.telemetry_answers):
                    stack.stop("game")  # a fresh process, as for the plain answers-only figure
                    url = stack.start_web("game", cpu=server_cpu, env={**GAME_ENV, **env})
                    run(answers_only(url, stack.procs["game"].pid, f"game answers daphne [{name}]"))
                if name in args.paced.split(",") and args.paced_think:
                    # The same server again below saturation: the latency the telemetry adds.
                    run(
                        game(
                            url,
                            stack.procs["game"].pid,
                            f"game daphne paced [{name}]",
                            args.rooms,
                            args.warmup,
                            args.duration,
                            think=args.paced_think,
                        )
                    )
                stack.stop("game")
        if args.idle_players:
            url = stack.start_web("game", cpu=server_cpu, env=GAME_ENV)
            run(idle(url, stack.procs["game"].pid, args.idle_players))
            stack.stop("game")
        for name, env in telemetry_variants:
            unit_costs[name] = telemetry_unit_costs(env, cpu=server_cpu, logs=logs)
            print(f"  unit costs [{name}]: {unit_costs[name]}", flush=True)
    finally:
        stack.stop_all()
        if sink is not None:
            sink.close()
            print(f"telemetry sink received {sink.requests} export requests", flush=True)
            if sink.spans:
                print("spans received, by name:", flush=True)
                for name, count in sink.spans.most_common(25):
                    print(f"  {count:8d}  {name}", flush=True)

    table = render(figures, args, unit_costs)
    print()
    print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {k: [f.__dict__ | {"latencies_ms": None} for f in v] for k, v in figures.items()}, indent=1
            )
        )
    if not args.no_docs:
        write_docs(table)
        print(f"\nwritten to {ROOT / 'docs' / 'performance.md'}")
    return 0


class TelemetrySink:
    """A local OTLP/HTTP and Sentry endpoint that accepts everything and keeps only counts
    (requests, and spans by name: what the hot path costs in spans).

    It runs in a process of its own: decoding the exports in the client's process held the
    client's GIL for tens of milliseconds at a time, and the players' answer→ack latency
    included it (the paced figures' p99 with traces on was the sink's, not the server's).
    """

    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_sink_serve, args=(child,), daemon=True)
        self._proc.start()
        port = self._conn.recv()
        self.url = f"http://127.0.0.1:{port}"
        self.dsn = f"http://bench@127.0.0.1:{port}/1"
        self.requests = 0
        self.spans: Counter[str] = Counter()

    def close(self) -> None:
        """Stop the sink and collect its counts."""
        self._conn.send("close")
        self.requests, spans = self._conn.recv()
        self.spans = Counter(spans)
        self._proc.join(10)


def _sink_serve(conn: Any) -> None:
    """The sink's process: serve until told to close, then send back the counts."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    requests_seen = 0
    spans: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            nonlocal requests_seen
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            names: list[str] = []
            if self.path.rstrip("/") == "/v1/traces":
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        names.extend(span.name for span in scope_spans.spans)
            with lock:
                requests_seen += 1
                spans.update(names)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    conn.send(httpd.server_address[1])
    conn.recv()
    httpd.shutdown()
    httpd.server_close()
    with lock:
        conn.send((requests_seen, dict(spans)))


def _run(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (the client costs less per frame)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _median(figs: list[Figure]) -> Figure:
    """The figure of median rate among the repeats (its latencies are that run's)."""
    ordered = sorted(figs, key=lambda f: f.rate)
    return ordered[(len(ordered) - 1) // 2]


def telemetry_unit_costs(env: dict[str, str], *, cpu: int | None, logs: Path) -> dict[str, float]:
    """CPU µs per span, Redis command and log line in a process set up as the web is, under `env`."""
    out = logs / "telemetry-costs.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "loadtest.telemetry_costs", str(out)]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    with (logs / "telemetry-costs.log").open("ab") as log:
        # The log lines it writes are what it measures: they go to the log file, as a web
        # process's go to its pipe.
        subprocess.run(  # noqa: S603 - our own module, argv built here
            argv, env={**os.environ, **env}, stdout=log, stderr=log, check=True, cwd=ROOT, timeout=600
        )
    costs: dict[str, float] = json.loads(out.read_text())
    return costs


def render(
    figures: dict[str, list[Figure]],
    args: argparse.Namespace,
    unit_costs: dict[str, dict[str, float]] | None = None,
) -> str:
    """A Markdown table of medians, with the ratios the targets are set on."""
    info = machine()
    medians = {name: _median(figs) for name, figs in figures.items()}  # the table's rows
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {info['cores']} cores "
        f"({info['cpu']}), Python {info['python']}; {info['versions']}. "
        "Web process pinned to CPU 0, client + Redis + worker + the web process's span relay to CPU 1; "
        f"{args.duration:.0f} s per figure after {args.warmup:.0f} s warm-up, "
        f"median of {args.repeat} interleaved runs (every run's rate in `all runs`).",
        "",
        "| measurement | rate (median) | all runs | p50 ms | p95 ms | p99 ms | web CPU | lost |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, fig in medians.items():
        runs = ", ".join(f"{f.rate:.0f}" for f in figures[name])
        lines.append(
            f"| {name} | {fig.rate:,.0f} {fig.unit} | {runs} | {fig.pct(0.5) or 0:.1f} | "
            f"{fig.pct(0.95) or 0:.1f} | {fig.pct(0.99) or 0:.1f} | {fig.server_cpu:.0%} | "
            f"{sum(f.lost for f in figures[name])} |"
        )
    lines.append("")
    # Ratios are taken within each round (figures measured minutes apart on the same
    # machine state), then the median over rounds: a noisy neighbour moves both sides.
    pairs = []
    for server in args.servers.split(","):
        pairs += [
            (f"game {server}", f"echo {server}", f"game / echo on {server} (target ≥ 0.5)"),
            (f"game {server}", f"echo {server} (no DB trip)", f"game / echo without the DB trip on {server}"),
            (f"echo {server} (no DB trip)", f"echo {server}", f"echo without / with the DB trip on {server}"),
        ]
    pairs += [
        ("broadcast daphne pubsub", "broadcast daphne core", "room broadcast, pub/sub / core layer"),
        ("game daphne pubsub", "game daphne", "game answers, pub/sub / core layer"),
        ("game uvicorn", "game daphne", "game answers, uvicorn / Daphne"),
    ]
    for server in args.servers.split(","):
        pairs.append(
            (
                f"game answers {server}",
                f"echo {server}",
                f"game / echo on {server}, answers only (no room set up or ended in the window)",
            )
        )
    pairs += [
        (name, "game daphne", f"{name} / game daphne") for name in figures if name.startswith("game daphne [")
    ]
    for name in figures:
        if name.startswith("game answers daphne ["):
            pairs.append((name, "echo daphne", f"{name} / echo daphne"))
            pairs.append((name, "game answers daphne", f"{name} / game answers daphne"))
    pairs.append(
        ("game daphne [telemetry on]", "game daphne [telemetry off]", "telemetry on / off (target ≥ 0.90)")
    )
    for variant in ("telemetry on", TELEMETRY_WITHOUT_REDIS):  # --telemetry-answers
        pairs.append(
            (
                f"game answers daphne [{variant}]",
                "game answers daphne [telemetry off]",
                f"{variant} / off, answers only",
            )
        )
    pairs.append(
        (
            f"game daphne [{TELEMETRY_WITHOUT_REDIS}]",
            "game daphne [telemetry off]",
            f"{TELEMETRY_WITHOUT_REDIS} / off",
        )
    )
    ratios = []
    for top, bottom, label in pairs:
        if top not in figures or bottom not in figures:
            continue
        per_round = [a.rate / b.rate for a, b in zip(figures[top], figures[bottom], strict=False) if b.rate]
        if per_round:
            runs = ", ".join(f"{r:.2f}" for r in per_round)
            ratios.append(f"- {label}: **{statistics.median(per_round):.2f}** (rounds: {runs})")
    for variant in ("telemetry on", TELEMETRY_WITHOUT_REDIS):
        for prefix, what in (("game daphne paced", "below saturation"), ("game daphne", "at saturation")):
            on, off = figures.get(f"{prefix} [{variant}]"), figures.get(f"{prefix} [telemetry off]")
            if on and off:
                deltas = [(a.pct(0.99) or 0) - (b.pct(0.99) or 0) for a, b in zip(on, off, strict=False)]
                runs = ", ".join(f"{d:+.1f}" for d in deltas)
                target = "target ≤ +1 ms; " if prefix.endswith("paced") else "a queue, not a target; "
                ratios.append(
                    f"- {variant} minus off, answer→ack p99 {what}: **{statistics.median(deltas):+.1f} ms** "
                    f"({target}rounds: {runs})"
                )
    for name, fig in medians.items():
        if name.startswith("idle players"):
            ratios.append(f"- {name}: **{fig.rate:.0f} KiB** of the web process each (target < 50 KiB)")
    return "\n".join(lines + ratios + _render_unit_costs(figures, unit_costs or {}))


UNIT_ROWS = (
    ("span", "a project span (`tracing.span`: created, ended, handed to the exporter)"),
    ("span_sdk", "of which the SDK's span alone (created and ended, no export)"),
    ("span_relay", "the span's export in the relay process (another core)"),
    ("redis_command", "a Redis command (the rate limit's `EVALSHA`, round trip included)"),
    ("redis_command_relay", "the Redis command's spans' export in the relay"),
    ("log_line", "the answer's INFO log line"),
)


def _render_unit_costs(figures: dict[str, list[Figure]], costs: dict[str, dict[str, float]]) -> list[str]:
    """What one span, Redis command and log line cost, and the budget the 0.90 target leaves."""
    if not costs:
        return []
    names = list(costs)
    lines = [
        "",
        "Telemetry per unit (CPU µs of a process set up as the web is, `loadtest/telemetry_costs.py`; "
        "medians of 3):",
        "",
        "| unit | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key, label in UNIT_ROWS:
        if any(key in c for c in costs.values()):
            cells = [f"{costs[n][key]:.1f}" if key in costs[n] else "—" for n in names]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def per_answer(name: str) -> float | None:
        figs = figures.get(f"game daphne [{name}]")
        if not figs:
            return None
        return statistics.median(f.server_cpu / f.rate * 1e6 for f in figs if f.rate)

    off, on = per_answer("telemetry off"), per_answer("telemetry on")
    if off is not None and on is not None:
        lines += [
            "",
            f"- web CPU per answer (its share of the game's work) with telemetry off: **{off:.0f} µs**; "
            f"the 0.90 target leaves telemetry **{off / 0.9 - off:.0f} µs** of it",
            f"- telemetry on costs **{on - off:.0f} µs** more per answer",
        ]
        nored = per_answer(TELEMETRY_WITHOUT_REDIS)
        if nored is not None:
            lines.append(f"- {TELEMETRY_WITHOUT_REDIS}: **{nored - off:.0f} µs** more per answer")
    return lines


def write_docs(table: str) -> None:
    """Replace the generated block of docs/performance.md (created if missing)."""
    path = ROOT / "docs" / "performance.md"
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
