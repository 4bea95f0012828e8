"""/metrics is served to the private network only (NUXTEST_METRICS_ALLOWED_NETWORKS), behind the proxy too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.support import ROOT


@pytest.mark.parametrize("address", ["203.0.113.5", "8.8.8.8", "2001:db8::1", "not-an-address", ""])
def test_a_public_address_gets_403(client, address):
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 403
    assert response.json() == {"detail": "metrics are not served to this network"}


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.3.4", "172.18.0.5", "192.168.1.9", "::1"])
def test_a_private_address_gets_the_exposition(client, address):
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 200
    assert b"nuxtest_build_info" in response.content


def test_a_forged_x_forwarded_for_does_not_open_metrics_to_a_public_address(client):
    # Without Daphne's --proxy-headers, Django sees the connecting address only.
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="10.0.0.1")
    assert response.status_code == 403


@pytest.mark.parametrize("forwarded", ["203.0.113.5", "10.0.0.1, 203.0.113.5"])
def test_behind_a_trusted_proxy_on_the_same_host_a_public_client_gets_403(client, settings, forwarded):
    # A proxy on the same host connects from 127.0.0.1: the client it names is what counts
    # (served before: a security walk-through).
    settings.NUXTEST_TRUSTED_PROXY_COUNT = 1
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert response.status_code == 403


def test_behind_a_trusted_proxy_a_private_client_and_a_direct_scrape_get_the_exposition(client, settings):
    settings.NUXTEST_TRUSTED_PROXY_COUNT = 1
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.0.3.4").status_code == 200


def test_a_public_client_naming_a_private_address_past_the_proxy_gets_403(client, settings):
    settings.NUXTEST_TRUSTED_PROXY_COUNT = 1
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="10.0.0.1")
    assert response.status_code == 403


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def daphne_behind_proxy() -> Iterator[str]:
    """A real Daphne with --proxy-headers, as in docker-compose.yml behind nginx."""
    port = _free_port()
    env = {**os.environ, "NUXTEST_LOG_FORMAT": "text", "NUXTEST_WORKER_METRICS_PORT": "0"}
    daphne = Path(sys.executable).with_name("daphne")
    proc = subprocess.Popen(
        [
            str(daphne),
            "-v",
            "0",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "--proxy-headers",
            "nuxtest.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("daphne did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _status(url: str, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:  # noqa: S310
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.e2e
def test_behind_the_proxy_a_public_client_gets_403_and_prometheus_200(daphne_behind_proxy):
    url = f"{daphne_behind_proxy}/metrics"
    # nginx (deploy/nginx/nginx.conf) sets X-Forwarded-For to the address it saw.
    assert _status(url, "203.0.113.5") == 403
    assert _status(url, "2001:db8::7") == 403
    # Prometheus on the private network scrapes Daphne directly, or through the proxy.
    assert _status(url, "10.0.0.9") == 200
    assert _status(url, None) == 200
