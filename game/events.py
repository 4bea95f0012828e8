"""Publishing room events to the channel layer; only services call this.

Each group_send is timed, traced and counted here (the one place broadcasts leave), and
carries the W3C trace context so that each process's fan-out (game/fanout.py) joins the
same trace.
Within one process a room's events leave in `seq` order (`order`, then `publish`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from channels.layers import get_channel_layer

from game import faults
from game.telemetry import metrics, tracing

logger = logging.getLogger(__name__)

# A transition's seqs are assigned under the store's per-room lock, but two transitions'
# group_sends (three or four Redis round trips each) run side by side and can finish in the
# other order. At 200 players dropping and reconnecting at once, a broadcast overtook the
# one before it by more than the consumers' reorder hold several times a minute, and every
# player of the room saw a gap (docs/capacity.md). So a transition takes its place in its
# room's order the moment its compare-and-set returns (`order`, synchronous: no other update
# of the room can come between), and `publish` waits for the places before its own. Across
# processes (a worker's timer, another web instance) the consumers' reorder hold still rules.
_ORDER_WAIT_SECONDS = 2.0
_places: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, dict[int, asyncio.Future[None]]]] = (
    weakref.WeakKeyDictionary()
)


def _room_places(code: str, *, create: bool) -> dict[int, asyncio.Future[None]] | None:
    loop = asyncio.get_running_loop()
    rooms = _places.get(loop)
    if rooms is None:
        if not create:
            return None
        rooms = _places[loop] = {}
    places = rooms.get(code)
    if places is None and create:
        places = rooms[code] = {}
    return places


def order(code: str, events: list[dict[str, Any]]) -> None:
    """Take these events' place in the room's publication order (right after the CAS that made them)."""
    if not events or "seq" not in events[0]:
        return
    places = _room_places(code, create=True)
    assert places is not None
    places.setdefault(events[0]["seq"], asyncio.get_running_loop().create_future())


async def _wait_turn(code: str, first: int) -> None:
    """Wait until this process has published the room's events ordered before seq `first`."""
    places = _room_places(code, create=False)
    if not places:
        return
    earlier = [f for seq, f in places.items() if seq < first and not f.done()]
    if not earlier:
        return
    _, late = await asyncio.wait(earlier, timeout=_ORDER_WAIT_SECONDS)
    if late:
        # A transition that took a place and never published (it failed in between): do
        # not make every later broadcast of the room wait for it too.
        for seq in [seq for seq, f in places.items() if f in late]:
            places.pop(seq).set_result(None)
        logger.warning(
            "publication order: %s earlier events of the room not published in %.0f s",
            len(late),
            _ORDER_WAIT_SECONDS,
            extra={"event": "publish_order_timeout", "room": code},
        )


def _done(code: str, first: int) -> None:
    places = _room_places(code, create=False)
    if places is None:
        return
    place = places.pop(first, None)
    if place is not None and not place.done():
        place.set_result(None)
    if not places:
        rooms = _places.get(asyncio.get_running_loop())
        if rooms is not None:
            rooms.pop(code, None)


def room_group(code: str) -> str:
    """The channel-layer group of a room's connections."""
    return f"room.{code}"


def _failure_kind(exc: BaseException) -> str:
    """A bounded label for a channel-layer failure."""
    name = type(exc).__name__
    if isinstance(exc, faults.FaultInjected):
        return "injected"
    if name == "MaxConnectionsError":
        return "max_connections"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) or "Timeout" in name:
        return "timeout"
    if isinstance(exc, ConnectionError | OSError) or "Connection" in name:
        return "connection"
    return "other"


async def publish(code: str, events: list[dict[str, Any]]) -> None:
    """Broadcast events to every connection of the room, in order."""
    if not events:
        return
    first = events[0].get("seq", 0)
    try:
        await _wait_turn(code, first)
        await _send_all(code, events)
    finally:
        _done(code, first)


async def _send_all(code: str, events: list[dict[str, Any]]) -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    group = room_group(code)
    fault = await faults.current()
    for event in events:
        with tracing.span("group_send", tracing.broadcast_attributes(code, event)):
            message: dict[str, Any] = {"type": "room.event", "room": code, "frame": event}
            headers = tracing.carrier()
            if headers:
                message["trace"] = headers
            started = time.perf_counter()
            try:
                if fault.channel_layer_delay_ms:
                    await asyncio.sleep(fault.channel_layer_delay_ms / 1000)
                if fault.channel_layer_fail:
                    raise faults.FaultInjected("channel layer failure injected by an operator")
                # The group_send span stands for the layer's own Redis commands (three or four
                # per send): a span each would be a quarter of all the game's spans.
                with tracing.quiet():
                    await layer.group_send(group, message)
            except Exception as exc:
                metrics.CHANNEL_LAYER_FAILURES.labels(kind=_failure_kind(exc)).inc()
                raise
            finally:
                metrics.GROUP_SEND_DURATION.observe(
                    time.perf_counter() - started, exemplar=tracing.exemplar()
                )
