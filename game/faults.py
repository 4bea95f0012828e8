"""Fault flags for closing the loop: operators switch them at run time to prove the alerts.

Stored in Redis (every process sees them), read through a one-second per-process cache
so the hot path pays nothing. Off by default; players cannot reach them (`manage.py
faults` needs the server and its settings).

    answer_delay_ms          slow every answer's handling by this much (0-10000)
    round_close_fail         the round-deadline task fails instead of closing the round
    channel_layer_delay_ms   slow every group_send by this much (0-10000)
    channel_layer_fail       every group_send fails
    handshake_refuse         every WebSocket handshake is refused (close 1013, try again later)
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.conf import settings

from game import store

logger = logging.getLogger(__name__)

MAX_DELAY_MS = 10_000


class FaultInjected(RuntimeError):
    """An error an operator asked for with a fault flag."""


@dataclass(frozen=True)
class Faults:
    """The flags in force."""

    answer_delay_ms: int = 0
    round_close_fail: bool = False
    channel_layer_delay_ms: int = 0
    channel_layer_fail: bool = False
    handshake_refuse: bool = False

    def any(self) -> bool:
        """True if any flag is on."""
        return self != NONE

    def as_dict(self) -> dict[str, Any]:
        """The flags as JSON-ready data."""
        return asdict(self)


NONE = Faults()
NAMES = tuple(f.name for f in fields(Faults))


def parse(values: dict[str, Any]) -> dict[str, str]:
    """Validate flag values given by an operator; ValueError names the bad one."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if name not in NAMES:
            raise ValueError(f"{name}: unknown fault flag (known: {', '.join(NAMES)})")
        if name.endswith("_ms"):
            if isinstance(value, bool):
                raise ValueError(f"{name}: must be an integer of milliseconds")
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name}: must be an integer of milliseconds") from None
            if not 0 <= number <= MAX_DELAY_MS:
                raise ValueError(f"{name}: must be between 0 and {MAX_DELAY_MS}")
            out[name] = str(number)
        else:
            text = str(value).strip().lower()
            if text not in {"true", "false", "1", "0", "on", "off"}:
                raise ValueError(f"{name}: must be true or false")
            out[name] = "1" if text in {"true", "1", "on"} else "0"
    return out


def decode(raw: dict[str, str]) -> Faults:
    """The flags from their stored strings."""
    values: dict[str, Any] = {}
    for name in NAMES:
        if name not in raw:
            continue
        values[name] = int(raw[name]) if name.endswith("_ms") else raw[name] == "1"
    return Faults(**values)


_cached: Faults = NONE
_cached_until = 0.0
_cached_prefix = ""
_generation = 0  # bumped by every write from this process: a read begun before it is stale


async def current() -> Faults:
    """The flags in force (at most NUXTEST_FAULTS_CACHE_SECONDS old).

    One caller refreshes the cache; the others, while its read is in flight, keep the flags
    they had: one Redis read per period, not one per caller of that moment."""
    global _cached, _cached_until, _cached_prefix
    now = time.monotonic()
    prefix = settings.NUXTEST_REDIS_PREFIX
    if now < _cached_until and _cached_prefix == prefix:
        return _cached
    if _cached_prefix != prefix:
        _cached, _cached_prefix = NONE, prefix
    _cached_until = now + settings.NUXTEST_FAULTS_CACHE_SECONDS
    generation = _generation
    try:
        raw = await store.faults_get()
    except Exception:
        # A Redis hiccup must not turn into a fault of its own: keep the last known flags.
        logger.warning("fault flags unreadable", exc_info=True, extra={"event": "faults_unreadable"})
        return _cached
    if generation == _generation and _cached_prefix == prefix:
        seen = decode(raw)
        if seen != _cached:
            # Once per change and process: the operator's own `faults_changed` line is the
            # command's output (`docker compose exec` output is no container log, so Loki
            # never gets it); this one is each serving process's, and reaches Loki.
            logger.warning("fault flags in force here now %s", seen.as_dict(), extra={"event": "faults_seen"})
        _cached = seen
    return _cached


async def update(values: dict[str, Any]) -> Faults:
    """Set flags (validated; a false/0 value lifts one) and return the flags in force."""
    parsed = parse(values)
    off = [n for n, v in parsed.items() if v in {"0"}]
    await store.faults_set({n: v for n, v in parsed.items() if n not in off})
    await store.faults_clear(off)
    return _refresh(await store.faults_get())


async def clear() -> Faults:
    """Lift every flag."""
    await store.faults_clear()
    return _refresh({})


def _refresh(raw: dict[str, str]) -> Faults:
    global _cached, _cached_until, _generation
    _cached, _cached_until, _generation = decode(raw), 0.0, _generation + 1
    logger.warning("fault flags now %s", _cached.as_dict(), extra={"event": "faults_changed"})
    return _cached
