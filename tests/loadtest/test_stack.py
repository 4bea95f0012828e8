"""loadtest.stack on a shared Redis: it takes its keys away with it."""

from __future__ import annotations

import uuid

import redis
from django.conf import settings

from loadtest.stack import Stack


def test_a_stack_on_a_shared_redis_deletes_its_own_keys_and_no_others_when_it_stops(tmp_path):
    run = f"lt-{uuid.uuid4().hex[:8]}:"
    other = f"test-{uuid.uuid4().hex[:8]}:keep"
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        mine = [f"{run}room:ABCDEF", f"{run}celery:_kombu.binding.{run.rstrip(':')}", f"{run}asgi:group:x"]
        mine += [f"{run}conn:{n}" for n in range(1500)]  # more than one batch of deletes
        for k in mine:
            client.set(k, b"1")
        client.set(other, b"1")
        stack = Stack(logs=tmp_path, env={"REDIS_URL": settings.REDIS_URL, "NUXTEST_REDIS_PREFIX": run})
        stack.stop_all()
        assert list(client.scan_iter(match=f"{run}*", count=1000)) == []
        assert client.get(other) == b"1"
    finally:
        client.delete(other)
        client.close()
