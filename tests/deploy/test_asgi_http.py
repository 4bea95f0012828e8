"""HTTP through the ASGI application: Django's middleware chain built in sync mode (one hop)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction
from asgiref.testing import ApplicationCommunicator


async def asgi_get(path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """GET `path` from nuxtest.asgi's application as an ASGI server would."""
    from nuxtest.asgi import application

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await app.receive_output(10)
    body = b""
    while True:
        message = await app.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await app.wait(10)
    return start["status"], {k.lower(): v for k, v in start["headers"]}, body


def test_the_http_middleware_chain_is_built_to_run_in_one_thread_hop():
    from nuxtest.asgi import django_asgi_app

    # Built in async mode, each middleware that is not async-native would cost its own hops.
    assert not iscoroutinefunction(django_asgi_app._middleware_chain)


async def test_a_request_through_the_asgi_application_passes_every_middleware_and_its_view():
    status, headers, body = await asgi_get("/healthz")
    assert status == 200
    assert body  # the view answered
    # Headers added by middlewares at both ends of the chain.
    assert headers[b"x-frame-options"] == b"DENY"
    assert b"content-security-policy" in headers
    assert headers[b"x-content-type-options"] == b"nosniff"
    missing_status, _, missing_body = await asgi_get("/api/rooms/NOPE22/")
    assert missing_status in (401, 404)
    assert missing_body.startswith(b"{")
