"""PostgreSQL connections per process are bounded by Django's pool (DB_POOL_MAX_SIZE).

Daphne runs each HTTP request's sync view in a thread of its own, and each thread opens a
connection of its own: without a pool, a burst of sign-ins went past PostgreSQL's
max_connections and answered 500s (docs/capacity.md).
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from django.db import connection

from tests.deploy.support import run_python
from tests.deploy.test_replica import database_url

pytestmark = pytest.mark.django_db

# Twelve threads each hold a connection for a while, as twelve concurrent requests do,
# while the main thread counts this process's sessions in pg_stat_activity.
SCRIPT = """
import json, sys, threading, time, django
django.setup()
from django.db import connection, connections
app = sys.argv[1]
peak, done, errors = 0, [], []

def request():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.3)")
        done.append(1)
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connections.close_all()  # what Django does at the end of every request

threads = [threading.Thread(target=request) for _ in range(12)]
for t in threads:
    t.start()
import psycopg
with psycopg.connect(sys.argv[2], autocommit=True) as watch:
    while any(t.is_alive() for t in threads):
        count = watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app]
        ).fetchone()[0]
        peak = max(peak, count)
        time.sleep(0.02)
print(json.dumps({"peak": peak, "done": len(done), "errors": errors}))
"""


def burst(pool_max: int) -> dict:
    app = f"nuxtest-pooltest-{uuid.uuid4().hex[:8]}"
    url = database_url()
    env = {
        **os.environ,
        "DATABASE_URL": f"{url}?application_name={app}",
        "DB_POOL_MAX_SIZE": str(pool_max),
        "DB_POOL_TIMEOUT": "30",
        "NUXTEST_LOG_FORMAT": "text",
    }
    plain = url.replace("postgres://", "postgresql://", 1)
    result = run_python(["-c", SCRIPT, app, plain], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="Django's pool is PostgreSQL's")
def test_a_burst_of_requests_waits_for_the_pool_instead_of_opening_a_connection_each():
    pooled = burst(3)
    assert pooled["errors"] == [] and pooled["done"] == 12
    assert 1 <= pooled["peak"] <= 3, pooled
    # Without the pool, the same burst holds a connection per thread.
    unpooled = burst(0)
    assert unpooled["errors"] == [] and unpooled["done"] == 12
    assert unpooled["peak"] > 3, unpooled


# One pooled connection, held by another thread (a request in progress) while a sign-up
# comes in: it waits DB_POOL_TIMEOUT, then is told to come back (503, Retry-After).
BUSY = """
import json, threading, django
django.setup()
from django.db import connection, connections
from django.test import Client
held, release = threading.Event(), threading.Event()

def request_in_progress():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        held.set()
        release.wait(10)
    connections.close_all()

thread = threading.Thread(target=request_in_progress)
thread.start()
held.wait(10)
r = Client(HTTP_HOST="localhost").post(
    "/api/auth/signup/", {"username": "pool-waiter", "password": "correct horse battery"},
    content_type="application/json",
)
release.set()
thread.join()
connections.close_all()
after = Client(HTTP_HOST="localhost").post(
    "/api/auth/signup/", {"username": "pool-waiter", "password": "correct horse battery"},
    content_type="application/json",
)
print(json.dumps({"status": r.status_code, "retry": r.headers.get("Retry-After"), "body": r.json(),
                  "after": after.status_code}))
"""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="Django's pool is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_request_that_finds_every_pooled_connection_busy_is_answered_503_with_retry_after():
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DB_POOL_MAX_SIZE": "1",
        "DB_POOL_TIMEOUT": "0.5",
        "NUXTEST_LOG_FORMAT": "text",
    }
    result = run_python(["-c", BUSY], env)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["status"] == 503 and got["retry"] == "1", got
    assert got["body"] == {"detail": "the server is busy; try again in a moment"}
    assert "db_pool_exhausted" in result.stderr + result.stdout
    # Nothing was written by the refused request: the same sign-up then succeeds.
    assert got["after"] == 201, got


# The pool's connections are made (min_size 2), handed back, then PostgreSQL ends their
# sessions (as a restart does: "terminating connection due to administrator command");
# then four requests, one after another, each take a connection from the pool.
RESTARTED = """
import json, sys, django
django.setup()
from django.db import connection, connections
import psycopg
app, url = sys.argv[1], sys.argv[2]
for _ in range(2):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connections.close_all()
with psycopg.connect(url, autocommit=True) as admin:
    ended = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        [app],
    ).fetchone()[0]
errors = []
for _ in range(4):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        errors.append(repr(exc)[:200])
    finally:
        connections.close_all()
print(json.dumps({"ended": ended, "errors": errors}))
"""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="Django's pool is PostgreSQL's")
def test_pooled_connections_that_a_postgresql_restart_ended_are_not_handed_to_requests():
    # Each such connection failed the next request that took it (a 500), one per pooled
    # connection and process, whenever that came: a minute after PostgreSQL was back, too.
    app = f"nuxtest-pooltest-{uuid.uuid4().hex[:8]}"
    url = database_url()
    env = {
        **os.environ,
        "DATABASE_URL": f"{url}?application_name={app}",
        "DB_POOL_MAX_SIZE": "4",
        "NUXTEST_LOG_FORMAT": "text",
    }
    plain = url.replace("postgres://", "postgresql://", 1)
    result = run_python(["-c", RESTARTED, app, plain], env)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["ended"] >= 1, got
    assert got["errors"] == [], got
