"""deploy/nginx/nginx.conf under a real nginx: what it forwards to the web instances.

The compose stack cannot run here (no Docker), so the config is run by the machine's nginx,
rendered for it: the two web instances become two local servers that record what they are
sent, the ports are free local ones and the certificate a fresh self-signed one. Everything
else is the file as shipped. Skipped without nginx, unless NUXTEST_REQUIRE_NGINX=1 (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        message = "nginx is not installed (apt-get install nginx)"
        if os.environ.get("NUXTEST_REQUIRE_NGINX") == "1":
            pytest.fail(message + "; NUXTEST_REQUIRE_NGINX=1 requires it")
        pytest.skip(message)
    return found


def nginx_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(n) for n in match.groups())


def substitute(text: str, pattern: str, replacement: str | Callable[[re.Match[str]], str], count: int) -> str:
    """Replace `pattern` exactly `count` times: a config that changed shape fails here, loudly."""
    new, found = re.subn(pattern, replacement, text, flags=re.M)
    assert found == count, f"{pattern!r} matched {found} times in nginx.conf, expected {count}"
    return new


def render(
    *, prefix: Path, upstreams: list[int], http_port: int, https_port: int, version: tuple[int, ...]
) -> str:
    text = CONF.read_text()
    text = substitute(text, r"^pid .*;$", f"pid {prefix}/nginx.pid;", 1)
    ports = iter(upstreams)
    text = substitute(
        text,
        r"^(\s*)server web[12]:8000 (.*?) resolve;$",
        lambda m: f"{m.group(1)}server 127.0.0.1:{next(ports)} {m.group(2)};",
        2,
    )
    text = substitute(text, r"listen 80 default_server;", f"listen 127.0.0.1:{http_port} default_server;", 1)
    text = substitute(
        text, r"listen 443 ssl default_server;", f"listen 127.0.0.1:{https_port} ssl default_server;", 1
    )
    text = substitute(text, r"/etc/nginx/certs/", f"{prefix}/", 2)
    if version < (1, 25, 1):  # `http2 on;` is newer than this nginx; HTTP/2 is not tested here
        text = substitute(text, r"^\s*http2 on;$", "", 1)
    temp = "".join(
        f"  {kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return substitute(text, r"^http \{$", "http {\n" + temp, 1)


@dataclass
class Upstream:
    """A web instance stand-in: answers 200 with what it was sent, and remembers it."""

    port: int
    # Every instance's requests in one list, in the order they arrived.
    seen: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        seen, port = self.seen, self.port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen.append(
                    {"port": port, "method": self.command, "path": self.path, "headers": dict(self.headers)}
                )
                body = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                # No kept-alive connections: a stopped instance must take no more requests.
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Proxy:
    https: str
    http: str
    cert: Path
    upstreams: list[Upstream]

    def seen(self) -> list[dict[str, Any]]:
        return self.upstreams[0].seen


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    binary = nginx_binary()
    prefix = tmp_path_factory.mktemp("nginx")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(prefix / "privkey.pem"), "-out", str(prefix / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    seen: list[dict[str, Any]] = []
    upstreams = [Upstream(free_port(), seen), Upstream(free_port(), seen)]
    for upstream in upstreams:
        upstream.start()
    http_port, https_port = free_port(), free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        render(
            prefix=prefix,
            upstreams=[u.port for u in upstreams],
            http_port=http_port,
            https_port=https_port,
            version=nginx_version(binary),
        )
    )
    check = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    log = open(prefix / "nginx.log", "wb")
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    https = f"https://127.0.0.1:{https_port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(f"{https}/metrics", verify=str(prefix / "fullchain.pem"), timeout=1)
            break
        except requests.ConnectionError:
            assert proc.poll() is None, (prefix / "nginx.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.1)
    try:
        yield Proxy(
            https=https,
            http=f"http://127.0.0.1:{http_port}",
            cert=prefix / "fullchain.pem",
            upstreams=upstreams,
        )
    finally:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        for upstream in upstreams:
            upstream.stop()


def through(proxy: Proxy, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, dict[str, Any]]:
    """A request through nginx, and the request a web instance received for it."""
    before = len(proxy.seen())
    headers = {"Host": "quiz.example.com", "X-Forwarded-For": "203.0.113.9", **kwargs.pop("headers", {})}
    r = requests.request(
        method, proxy.https + path, headers=headers, verify=str(proxy.cert), timeout=5, **kwargs
    )
    seen = proxy.seen()
    assert len(seen) == before + 1, f"{path}: {len(seen) - before} requests reached the web instances"
    return r, seen[-1]


def forwarded(received: dict[str, Any]) -> dict[str, str]:
    headers = {k.lower(): v for k, v in received["headers"].items()}
    return {k: headers.get(k, "") for k in ("host", "x-forwarded-for", "x-forwarded-proto", "x-real-ip")}


CLIENT = {
    "host": "quiz.example.com",  # the public name, which ALLOWED_HOSTS lists: not the upstream's
    "x-forwarded-for": "127.0.0.1",  # the connecting address, the client's own value overwritten
    "x-forwarded-proto": "https",
    "x-real-ip": "127.0.0.1",
}


def test_http_requests_reach_the_web_instances_with_the_clients_host_address_and_scheme(proxy: Proxy) -> None:
    r, received = through(proxy, "GET", "/healthz")
    assert r.status_code == 200
    assert forwarded(received) == CLIENT
    r, received = through(proxy, "POST", "/api/matchmaking/", json={})
    assert r.status_code == 200 and received["method"] == "POST"
    assert forwarded(received) == CLIENT


def test_websocket_upgrades_reach_the_web_instances_with_the_clients_host_address_and_scheme(
    proxy: Proxy,
) -> None:
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Origin": "https://quiz.example.com",
    }
    _, received = through(proxy, "GET", "/ws/rooms/ABCDEF/", headers=upgrade)
    headers = {k.lower(): v for k, v in received["headers"].items()}
    assert headers["upgrade"] == "websocket" and headers["connection"].lower() == "upgrade"
    assert headers["origin"] == "https://quiz.example.com"
    assert forwarded(received) == CLIENT


def test_metrics_are_refused_on_the_public_side_without_reaching_an_instance(proxy: Proxy) -> None:
    before = len(proxy.seen())
    for base in (proxy.https, proxy.http):
        r = requests.get(f"{base}/metrics", verify=str(proxy.cert), timeout=5, allow_redirects=False)
        assert r.status_code == 403
    assert len(proxy.seen()) == before


def test_plain_http_is_redirected_to_https(proxy: Proxy) -> None:
    r = requests.get(
        f"{proxy.http}/rooms/ABCDEF/?x=1",
        headers={"Host": "quiz.example.com"},
        timeout=5,
        allow_redirects=False,
    )
    assert r.status_code == 301 and r.headers["Location"] == "https://quiz.example.com/rooms/ABCDEF/?x=1"


def test_a_stopped_instance_is_skipped_for_requests_and_websocket_reconnects(proxy: Proxy) -> None:
    # What a deploy's drain relies on: a stopping instance closes its listening socket, and
    # every request and reconnect nginx tried there goes to the other instance instead.
    stopped, running = proxy.upstreams
    stopped.stop()
    try:
        for _ in range(6):
            r, received = through(proxy, "GET", "/healthz")
            assert r.status_code == 200 and received["port"] == running.port
            _, received = through(
                proxy, "GET", "/ws/rooms/ABCDEF/", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
            )
            assert received["port"] == running.port and received["headers"].get("Upgrade") == "websocket"
    finally:
        stopped.start()
