"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nuxtest.settings")
django.setup(set_prefix=False)

# Telemetry before the handler loads MIDDLEWARE: the Django instrumentation adds its own.
from game.telemetry.setup import telemetry_setup  # noqa: E402

# Spans are exported from a child process: encoding them here cost the game's own CPU.
telemetry_setup("web", relay=True)

from game.transport import daphne_tune  # noqa: E402

daphne_tune()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from nuxtest.handlers import SyncChainASGIHandler  # noqa: E402

# What get_asgi_application() returns, with the middleware chain in one thread hop.
django_asgi_app = SyncChainASGIHandler()

from game.routing import websocket_urlpatterns  # noqa: E402
from game.telemetry.loop import LoopLagMiddleware  # noqa: E402
from game.ws_auth import BearerOrSessionAuthMiddleware  # noqa: E402

application = LoopLagMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Origin checks happen in the consumer, after accept, so that a refusal can be
            # told apart by its close code (4403) instead of a bare handshake rejection.
            "websocket": BearerOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns)),
        }
    )
)

# Everything loaded so far (Django, the libraries, the URL conf: most of the process's
# objects) goes to the permanent generation, so a full garbage collection walks only what
# was made since. Without it, each full collection held the event loop for 85-110 ms under
# traced load, a few times per ten seconds: the telemetry p99 (docs/performance.md).
gc.collect()
gc.freeze()
