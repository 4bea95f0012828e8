"""Scenario names, their knobs and their pass/fail thresholds.

Plain data, no Locust import (importing locust monkey-patches the process with gevent),
so tests and the benchmark can read it anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

# Names under which the WebSocket exchanges are reported to Locust (request_type "WS").
WS = "WS"
HANDSHAKE = "handshake"
ANSWER_ACK = "answer_ack"
QUESTION_FANOUT = "question_fanout"
RESULT_AFTER_DEADLINE = "round_result_after_deadline"
PING = "ping"
RECONNECT = "reconnect"
GAME = "game"
LOST_FRAME = "lost_frame"
ABUSE_PREFIX = "abuse:"


@dataclass(frozen=True)
class Thresholds:
    """What a run must meet; checked from Locust's own statistics when it quits."""

    max_error_ratio: float
    max_p99_answer_ack_ms: float
    max_lost_frames: int
    # The server's resident memory after the ramp, last sample / first: only a scenario that
    # samples it (soak) judges it; None elsewhere.
    max_memory_growth: float | None = None


@dataclass(frozen=True)
class Scenario:
    """How honest players behave, plus the thresholds the run must meet."""

    name: str
    description: str
    thresholds: Thresholds
    # "quick" (POST /api/matchmaking/, rooms of 4) or "party" (hosts create rooms of 8).
    rooms: str = "quick"
    # Honest players answer after a think time drawn from [think_min, think_max] seconds
    # and skip a round with this probability (so some rounds close at the deadline).
    think_min: float = 0.5
    think_max: float = 7.0
    skip_probability: float = 0.1
    # Spike: every player waits for the whole crowd to be spawned, then all join at once.
    burst: bool = False
    # Reconnect storm: every `storm_period` seconds this fraction of players drops its
    # socket without a close frame and reconnects after up to `reconnect_delay` seconds.
    storm_fraction: float = 0.0
    storm_period: float = 15.0
    reconnect_delay: float = 1.0
    # Abuse: this share of the users are abusers (the rest are honest players).
    abuse_share: float = 0.0
    # Soak: sample the server's memory from its /metrics.
    watch_memory: bool = False


_STRICT = Thresholds(max_error_ratio=0.0, max_p99_answer_ack_ms=50, max_lost_frames=0)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "steady",
            "quick-match players in rooms of 4 answering after a random think time",
            _STRICT,
        ),
        Scenario(
            "party",
            "hosts create rooms of 8, friends join by code, the host starts",
            _STRICT,
            rooms="party",
        ),
        Scenario(
            "spike",
            "players gather, then all join quick match at once",
            Thresholds(max_error_ratio=0.0, max_p99_answer_ack_ms=100, max_lost_frames=0),
            burst=True,
        ),
        Scenario(
            "reconnect",
            "reconnect storm: a share of players drops and reconnects mid-game, at once",
            Thresholds(max_error_ratio=0.0, max_p99_answer_ack_ms=100, max_lost_frames=0),
            storm_fraction=0.3,
        ),
        Scenario(
            "soak",
            "steady for a long time (an hour), watching the server's memory",
            # A leak shows as growth once the crowd is in: the ramp's own growth (rooms,
            # caches, the allocator's first arenas) is left out.
            replace(_STRICT, max_memory_growth=1.25),
            watch_memory=True,
        ),
        Scenario(
            "abuse",
            "malformed frames, floods and bad handshakes beside honest players",
            # The error ratio counts honest players only: they must not notice.
            Thresholds(max_error_ratio=0.0, max_p99_answer_ack_ms=100, max_lost_frames=0),
            abuse_share=0.2,
        ),
    )
}


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a number") from None


def scenario_get(name: str) -> Scenario:
    """The named scenario, with thresholds overridden by LOADTEST_MAX_* variables if set."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise SystemExit(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None
    t = scenario.thresholds
    error_ratio = _env_float("LOADTEST_MAX_ERROR_RATIO")
    p99 = _env_float("LOADTEST_MAX_P99_ACK_MS")
    lost = _env_float("LOADTEST_MAX_LOST_FRAMES")
    growth = _env_float("LOADTEST_MAX_MEMORY_GROWTH")
    t = Thresholds(
        max_error_ratio=t.max_error_ratio if error_ratio is None else error_ratio,
        max_p99_answer_ack_ms=t.max_p99_answer_ack_ms if p99 is None else p99,
        max_lost_frames=t.max_lost_frames if lost is None else int(lost),
        # Only a scenario that samples the server's memory can judge its growth.
        max_memory_growth=t.max_memory_growth if growth is None or not scenario.watch_memory else growth,
    )
    think_min = _env_float("LOADTEST_THINK_MIN")
    think_max = _env_float("LOADTEST_THINK_MAX")
    skip = _env_float("LOADTEST_SKIP_PROBABILITY")
    storm_fraction = _env_float("LOADTEST_STORM_FRACTION")
    storm_period = _env_float("LOADTEST_STORM_PERIOD")
    if scenario.storm_fraction:
        scenario = replace(
            scenario,
            storm_fraction=scenario.storm_fraction if storm_fraction is None else storm_fraction,
            storm_period=scenario.storm_period if storm_period is None else storm_period,
        )
    return replace(
        scenario,
        thresholds=t,
        think_min=scenario.think_min if think_min is None else think_min,
        think_max=scenario.think_max if think_max is None else think_max,
        skip_probability=scenario.skip_probability if skip is None else skip,
    )


@dataclass(frozen=True)
class Verdict:
    """The figures a run is judged on and the thresholds it missed."""

    requests: int
    failures: int
    error_ratio: float
    p99_answer_ack_ms: float | None
    answer_acks: int
    lost_frames: int
    missed: list[str]
    # The server's memory growth after the ramp (None: not sampled).
    memory_growth: float | None = None

    @property
    def passed(self) -> bool:
        return not self.missed


def verdict(
    thresholds: Thresholds,
    entries: list[tuple[str, str, int, int, float | None]],
    memory_growth: float | None = None,
) -> Verdict:
    """Judge a run from Locust's stats rows: (request_type, name, requests, failures, p99 ms),
    and the server's memory growth after the ramp where the thresholds limit it.

    Abusers' own exchanges (names starting with "abuse:") are left out of the error ratio:
    they measure whether the server refuses them, not whether honest players noticed.
    A figure the run did not measure misses its threshold: every scenario plays the game,
    so a run without an acknowledged answer (too short, too few players) showed nothing.
    """
    requests = failures = 0
    p99: float | None = None
    acks = 0
    lost = 0
    for request_type, name, n, nf, p in entries:
        if name.startswith(ABUSE_PREFIX):
            continue
        requests += n
        failures += nf
        if request_type == WS and name == ANSWER_ACK:
            p99, acks = p, n
        if request_type == WS and name == LOST_FRAME:
            lost += nf
    ratio = failures / requests if requests else 0.0
    missed = []
    if ratio > thresholds.max_error_ratio:
        missed.append(f"error ratio {ratio:.4f} > {thresholds.max_error_ratio}")
    if p99 is None:
        missed.append("no answer was acknowledged: run longer or with more users")
    elif p99 > thresholds.max_p99_answer_ack_ms:
        missed.append(f"p99 answer ack {p99:.0f} ms > {thresholds.max_p99_answer_ack_ms:.0f} ms")
    if lost > thresholds.max_lost_frames:
        missed.append(f"lost frames {lost} > {thresholds.max_lost_frames}")
    if thresholds.max_memory_growth is not None:
        if memory_growth is None:
            missed.append("server memory growth not measured: no two samples of its /metrics after the ramp")
        elif memory_growth > thresholds.max_memory_growth:
            missed.append(f"server memory growth {memory_growth:.2f} > {thresholds.max_memory_growth}")
    if requests == 0:
        missed.append("no requests were made")
    return Verdict(requests, failures, ratio, p99, acks, lost, missed, memory_growth)
