"""Publishing room events to the channel layer; only services call this.

Each group_send is timed, traced and counted here (the one place broadcasts leave), and
carries the W3C trace context so that each connection's forward joins the same trace.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels.layers import get_channel_layer

from game import faults
from game.telemetry import metrics, tracing


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
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    group = room_group(code)
    fault = await faults.current()
    for event in events:
        with tracing.span(
            "group_send",
            {"nuxtest.room": code, "nuxtest.event": event["type"], "nuxtest.seq": event.get("seq", 0)},
        ):
            message: dict[str, Any] = {"type": "room.event", "frame": event}
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
