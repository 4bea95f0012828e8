"""The pool's connection check (game/redis_tune.py) still refuses a connection that is not clean."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from django.conf import settings
from redis._parsers.base import _AsyncRESPBase

from game import redis_tune


def test_the_check_is_installed_where_redis_py_needs_it():
    import redis

    if int(redis.__version__.split(".")[0]) >= 8:
        pytest.skip("redis-py 8 has it")
    assert _AsyncRESPBase.can_read_destructive is redis_tune._can_read_destructive


async def test_an_idle_connection_is_clean_and_one_with_an_unread_reply_is_not():
    pool = aioredis.ConnectionPool.from_url(settings.REDIS_URL)
    conn = await pool.get_connection()
    try:
        assert await conn.can_read_destructive() is False
        await conn.send_command("PING")  # a reply the pool's next user would read as its own
        for _ in range(100):
            if await conn.can_read_destructive():
                break
            await asyncio.sleep(0.01)
        assert await conn.can_read_destructive() is True
    finally:
        await pool.release(conn)
        await pool.disconnect()


async def test_a_connection_the_server_closed_is_not_handed_out_again():
    pool = aioredis.ConnectionPool.from_url(settings.REDIS_URL, max_connections=1)
    admin = aioredis.Redis.from_url(settings.REDIS_URL)
    conn = await pool.get_connection()
    try:
        await conn.send_command("CLIENT", "SETNAME", "nuxtest-tune-victim")
        assert await conn.read_response() in (b"OK", "OK")
        victims = [c["id"] for c in await admin.client_list() if c.get("name") == "nuxtest-tune-victim"]
        assert len(victims) == 1
        await admin.client_kill_filter(_id=victims[0])
        for _ in range(100):
            if await conn.can_read_destructive():
                break
            await asyncio.sleep(0.01)
        assert await conn.can_read_destructive() is True
        await pool.release(conn)
        # The pool reconnects it before handing it out again, and a command goes through.
        conn = await pool.get_connection()
        await conn.send_command("PING")
        assert await conn.read_response() in (b"PONG", "PONG")
    finally:
        await pool.release(conn)
        await pool.disconnect()
        await admin.aclose()
