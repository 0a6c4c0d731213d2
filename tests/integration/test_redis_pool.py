"""The pool `create_redis_pool` builds (redis-py's stock `BlockingConnectionPool`) against a real
redis-server: bounded, blocking, and never handing out a dead or dirty connection. These are the
promises docs/architecture.md lists to re-check on a redis-py upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from scripts.local_redis import RedisServer
from src.infrastructure.redis_pool import create_redis_pool
from tests.conftest import make_settings


def pool_of(redis_server: RedisServer, tmp_path: Path, size: int, timeout: float) -> BlockingConnectionPool:
    settings = make_settings(redis_server.url, tmp_path, redis_pool_timeout=timeout)
    pool = create_redis_pool(settings, max_connections=size).connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    return pool


@pytest.fixture
async def client(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Redis]:
    redis = Redis(connection_pool=pool_of(redis_server, tmp_path, 3, 5))
    try:
        yield redis
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_many_callers_share_the_bounded_connections(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 concurrent commands over 3 connections all succeed (they queue, never "Too many
    connections"), the pool never opens a fourth, and every connection is back afterwards."""
    pool = client.connection_pool
    made = 0
    make_connection = pool.make_connection

    def counted() -> object:
        nonlocal made
        made += 1
        return make_connection()

    monkeypatch.setattr(pool, "make_connection", counted)

    async def one(n: int) -> None:
        assert await client.set(f"pool-test:{n}", n)
        assert await client.get(f"pool-test:{n}") == str(n).encode()

    await asyncio.gather(*(one(n) for n in range(200)))
    assert 1 <= made <= 3
    held = await asyncio.gather(*(pool.get_connection() for _ in range(3)))  # all 3 free again
    for connection in held:
        await pool.release(connection)


async def test_exhausted_pool_waits_for_a_release_then_times_out(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With every connection held, a checkout waits: it gets the next one released, and without
    a release it fails with redis-py's "No connection available." after REDIS_POOL_TIMEOUT."""
    pool = pool_of(redis_server, tmp_path, 1, 0.3)
    try:
        held = await pool.get_connection()
        waiting = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await pool.release(held)
        assert await asyncio.wait_for(waiting, 5) is held
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await pool.get_connection()
        await pool.release(held)
        assert await pool.get_connection() is held  # released and usable again
    finally:
        await pool.disconnect()


async def test_a_connection_the_server_closed_is_replaced_at_checkout(client: Redis) -> None:
    """The server drops the pooled connection (as on `timeout` or a restart): the next command
    gets a fresh connection instead of failing on the dead one."""
    victim = int(await client.client_id())
    async with Redis.from_url(_url(client)) as admin:
        assert await admin.client_kill_filter(_id=victim) == 1
    await asyncio.sleep(0.2)  # the event loop sees the close
    assert await client.set("pool-test:after-kill", "ok")
    assert int(await client.client_id()) != victim


async def test_a_reply_left_unread_never_answers_the_next_command(client: Redis) -> None:
    """A connection released with a reply still unread (a command sent, its answer never read) is
    not reused as is: the next command reads its own answer, not the stale one."""
    pool = client.connection_pool
    connection = await pool.get_connection()
    await connection.send_command("ECHO", "stale")
    await pool.release(connection)
    await asyncio.sleep(0.2)  # the stale reply arrives
    assert await client.echo("fresh") == b"fresh"


def _url(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
