"""WebSocket URL routes."""

from django.urls import re_path

from game.consumers import RoomConsumer

websocket_urlpatterns = [
    re_path(r"^ws/rooms/(?P<code>[^/]+)/$", RoomConsumer.as_asgi()),
]
