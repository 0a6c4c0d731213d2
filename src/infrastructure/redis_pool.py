"""The Redis connection for arq: one bounded, *blocking* pool per process.

A plain `ConnectionPool` raises "Too many connections" when exhausted (the ghost-worker incident);
a `BlockingConnectionPool` makes callers wait up to `REDIS_POOL_TIMEOUT` for a free connection.
`QueueingConnectionPool` is that pool with a fast path for the usual case, a free connection and
nobody waiting. Behind Sentinel (`redis+sentinel://`) it is the same pool following the primary
(src/infrastructure/redis_sentinel.py).
"""

from __future__ import annotations

from typing import Any, cast

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import AbstractConnection

from src.config import Settings
from src.domain.jobs import DEFAULT_QUEUE, queue_key
from src.infrastructure.job_serializer import make_serializers
from src.redis_urls import is_sentinel


class QueueingConnectionPool(BlockingConnectionPool):
    """redis-py's `BlockingConnectionPool` (same limit, timeout and "No connection available."
    error), which takes its condition lock and a timeout on every checkout and every release: about
    a quarter of the CPU of a one-command round trip on a 2-core machine. Here a checkout takes a
    free connection directly when nobody is queued for one, and a release notifies under the lock
    only when someone is. Once anyone is queued, every checkout takes the stock path.

    A checked-out connection is also checked for unread input (a reply left behind, or the server's
    close) by what the event loop has already received, instead of the stock check's extra read
    under a zero timeout, which costs a loop turn and a cancellation per command; either check is a
    snapshot, so a connection closed right after it fails that command the same way."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._queued = 0  # callers inside the blocking checkout, waiting or about to

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._queued == 0 and self.can_get_connection():
            # no await between the check and the take: nobody can come between them
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        self._queued += 1
        try:
            return cast(AbstractConnection, await super().get_connection())
        finally:
            self._queued -= 1

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if not _has_unread_input(connection):
            return
        await super().ensure_connection(connection)  # connect, or find out what is there

    async def release(self, connection: AbstractConnection) -> None:
        await ConnectionPool.release(self, connection)
        if self._queued:
            async with self._condition:
                self._condition.notify()


def _has_unread_input(connection: AbstractConnection) -> bool:
    """False only for a connected connection whose stream and parser hold nothing and have not seen
    the end of the stream; True (take the stock path) when unsure, e.g. another parser."""
    stream = getattr(connection, "_reader", None)
    parser: Any = getattr(getattr(connection, "_parser", None), "_reader", None)  # hiredis.Reader
    if stream is None or not connection.is_connected or not hasattr(parser, "has_data"):
        return True
    return bool(getattr(stream, "_buffer", True)) or stream.at_eof() or bool(parser.has_data())


def create_redis_pool(settings: Settings, *, max_connections: int | None = None) -> ArqRedis:
    """An `ArqRedis` over a blocking pool, speaking JSON, defaulting to the normalization queue."""
    options: dict[str, Any] = {
        "max_connections": max_connections or settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
    }
    pool: ConnectionPool
    if is_sentinel(settings.redis_url):
        from src.infrastructure.redis_sentinel import sentinel_pool  # it builds on this module's pool

        pool = sentinel_pool(settings.effective_redis_url, options)
    else:
        pool = QueueingConnectionPool.from_url(settings.effective_redis_url, **options)
    serialize, deserialize = make_serializers(settings.max_job_payload_bytes)
    return ArqRedis(
        pool_or_conn=pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_key(DEFAULT_QUEUE),
    )
