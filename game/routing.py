"""WebSocket URL routes."""

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from game.consumers import CLOSE_NO_ROOM, RoomConsumer


class NoRouteConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: nothing is there (4404), not a server error (Channels' default)."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(CLOSE_NO_ROOM)


websocket_urlpatterns = [
    # The trailing slash is GAME.md's; a client that leaves it off reaches the room too.
    re_path(r"^ws/rooms/(?P<code>[^/]+)/?$", RoomConsumer.as_asgi()),
    re_path(r"", NoRouteConsumer.as_asgi()),
]
