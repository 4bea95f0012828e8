"""GET /healthz (liveness) and GET /readyz (readiness: database and Redis)."""

from __future__ import annotations

import threading

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_200_status_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_answers_are_not_cached(client, path):
    assert "max-age=0" in client.get(path)["Cache-Control"]


def test_readyz_answers_200_with_database_and_redis_reachable(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["database"] is True
    assert body["redis"] is True
    assert body["status"] == "ok"


def test_readyz_answers_503_when_redis_is_unreachable(client):
    # Restored inside the test: the per-test Redis clean-up needs the real address.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        response = client.get("/readyz")
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["redis"] is False
    assert body["database"] is True


def test_readyz_answers_within_its_bound_when_the_database_does_not_answer(client, monkeypatch):
    # PostgreSQL down: a pooled connection is waited for DB_POOL_TIMEOUT (10 s). The check's
    # 2 s bound did not hold (its ping ran in the view's own thread, which async_to_sync kept
    # busy until it returned): /readyz answered after 10 s, past a probe's timeout.
    import time

    from game import services

    release = threading.Event()
    monkeypatch.setattr(services, "_database_ping", lambda: release.wait(6))
    started = time.monotonic()
    try:
        response = client.get("/readyz")
    finally:
        release.set()
    assert time.monotonic() - started < 4
    assert response.status_code == 503, response.content
    assert response.json()["database"] is False
