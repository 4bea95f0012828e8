"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nuxtest.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from game.routing import websocket_urlpatterns  # noqa: E402
from game.ws_auth import BearerOrSessionAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin checks happen in the consumer, after accept, so that a refusal can be
        # told apart by its close code (4403) instead of a bare handshake rejection.
        "websocket": BearerOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
