"""Baselines for `make bench`: bare Channels consumers on the game's own settings.

    daphne loadtest.echo_asgi:application

- `/echo/`: a stock AsyncWebsocketConsumer that sends every frame back (with Channels'
  per-message thread trip to close old database connections, as any consumer has).
- `/echo-nodb/`: the same without that trip (as the game's consumer skips it).
- `/broadcast/<room>/`: every frame a member sends goes to the room's channel-layer group
  and every member forwards it (1 in, N out), over CHANNEL_LAYERS from nuxtest.settings
  (so CHANNEL_LAYER_BACKEND picks the layer).
- `/healthz` (HTTP): 200, so a starter can wait for the server.
"""

from __future__ import annotations

import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nuxtest.settings")
django.setup()

from channels.consumer import get_handler_name  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    """Sends every frame back, nothing else."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class EchoNoDbConsumer(EchoConsumer):
    """EchoConsumer without Channels' per-message database-connection thread trip."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class BroadcastConsumer(EchoNoDbConsumer):
    """A room of connections: a frame from one member reaches every member via the layer."""

    group: str

    async def connect(self) -> None:
        self.group = "bench." + str(self.scope["url_route"]["kwargs"]["room"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send(self.group, {"type": "room.event", "text": text_data})

    async def room_event(self, message: dict[str, Any]) -> None:
        """A frame of the room: forward it."""
        await self.send(text_data=message["text"])


async def healthz(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """HTTP: 200 "ok" for any path."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter(
    {
        "http": healthz,
        "websocket": URLRouter(
            [
                re_path(r"^echo/$", EchoConsumer.as_asgi()),
                re_path(r"^echo-nodb/$", EchoNoDbConsumer.as_asgi()),
                re_path(r"^broadcast/(?P<room>[A-Za-z0-9_-]+)/$", BroadcastConsumer.as_asgi()),
            ]
        ),
    }
)
