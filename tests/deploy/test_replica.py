"""Read replicas: with DATABASE_REPLICA_URL, leaderboard and history reads use "replica"; writes "default".

The replica here is the test database itself (as TEST MIRROR would make it), opened under a
second alias by a subprocess with DATABASE_REPLICA_URL set, so the routing is seen per alias.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from django.db import connection

from game import db_router
from game.db_router import ReplicaRouter, replica_reads
from game.models import GameResult
from tests.deploy.support import run_python

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = """
import json, uuid, django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from game.api.views import leaderboard_compute, results_for
from game.models import GameResult

user = get_user_model().objects.create_user(username="replica-" + uuid.uuid4().hex[:8])
out = {"aliases": sorted(connections.settings)}

def queries(fn):
    d, r = CaptureQueriesContext(connections["default"]), CaptureQueriesContext(connections["replica"])
    with d, r:
        value = fn()
    return {"default": len(d.captured_queries), "replica": len(r.captured_queries), "value": value}

out["write"] = queries(lambda: GameResult.objects.create(
    user=user, game_id=uuid.uuid4().hex, room="ABCDEF", score=900, rank=1, correct=2, rounds=2,
    avg_answer_ms=1200, created_at=timezone.now()).pk)
out["leaderboard"] = queries(lambda: [r["score"] for r in leaderboard_compute("all")])
out["history"] = queries(lambda: [r["score"] for r in results_for(user.pk)])
out["plain_read"] = queries(lambda: GameResult.objects.filter(user=user).count())
def in_transaction():
    with transaction.atomic():
        return [r["score"] for r in results_for(user.pk)]
out["in_transaction"] = queries(in_transaction)
print(json.dumps(out))
"""


def database_url() -> str:
    """A URL of the test database this session uses (any engine the suite runs on)."""
    s: dict[str, Any] = connection.settings_dict
    vendor = connection.vendor
    if vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[vendor]
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = s["HOST"] or "localhost"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"{scheme}://{auth}@{host}{port}/{s['NAME']}"


def test_leaderboard_and_history_read_from_the_replica_and_writes_go_to_default():
    url = database_url()
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_REPLICA_URL": url, "NUXTEST_LOG_FORMAT": "text"}
    result = run_python(["-c", SCRIPT], env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["aliases"] == ["default", "replica"]
    assert out["write"]["default"] >= 1 and out["write"]["replica"] == 0
    assert out["leaderboard"]["replica"] >= 1 and out["leaderboard"]["default"] == 0
    assert 900 in out["leaderboard"]["value"]
    assert out["history"] == {"default": 0, "replica": 1, "value": [900]}
    # Reads not marked for the replica, and reads inside a transaction, stay on the primary.
    assert out["plain_read"] == {"default": 1, "replica": 0, "value": 1}
    assert out["in_transaction"]["replica"] == 0 and out["in_transaction"]["value"] == [900]


def test_without_a_replica_everything_uses_default(settings):
    assert "replica" not in settings.DATABASES
    router = ReplicaRouter()
    with replica_reads():
        assert router.db_for_read(GameResult) is None
    assert router.db_for_write(GameResult) == "default"
    assert router.allow_migrate("replica", "game") is False
    assert router.allow_migrate("default", "game") is True


def test_the_router_sends_marked_reads_to_a_configured_replica(monkeypatch):
    monkeypatch.setattr(db_router, "has_replica", lambda: True)
    router = ReplicaRouter()
    assert router.db_for_read(GameResult) is None
    with replica_reads():
        assert router.db_for_read(GameResult) == "replica"
    assert router.db_for_read(GameResult) is None
