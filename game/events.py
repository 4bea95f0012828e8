"""Publishing room events to the channel layer; only services call this."""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer


def room_group(code: str) -> str:
    """The channel-layer group of a room's connections."""
    return f"room.{code}"


async def publish(code: str, events: list[dict[str, Any]]) -> None:
    """Broadcast events to every connection of the room, in order."""
    if not events:
        return
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    group = room_group(code)
    for event in events:
        await layer.group_send(group, {"type": "room.event", "frame": event})
