"""The Redis connection for arq: one bounded, *blocking* pool per process.

A plain `ConnectionPool` raises "Too many connections" when exhausted (the ghost-worker incident);
a `BlockingConnectionPool` makes callers wait up to `REDIS_POOL_TIMEOUT` for a free connection.
`QueueingConnectionPool` is that pool with a fast path for the usual case, a free connection and
nobody waiting. Behind Sentinel (`redis+sentinel://`), `SentinelQueueingPool` is the same pool whose
connections ask the sentinels for the primary; a command refused by a demoted primary (READONLY) or
cut by the failover is retried on the new one (redis-py's Retry), briefly, then raised as any
outage is.
"""

from __future__ import annotations

import time
from typing import Any, cast

import structlog
from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from src.config import Settings
from src.domain.jobs import QueueName, queue_key
from src.infrastructure.job_serializer import make_serializers
from src.redis_urls import is_sentinel, parse_sentinel_url

FAILOVER_RETRIES = 6  # 0.05 s doubling to 1 s: about 2.5 s for the sentinels to name the new primary
PRIMARY_CHECK_S = 1.0  # how often a Sentinel pool asks which server is the primary

log = structlog.get_logger(__name__)


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


class SentinelQueueingPool(SentinelConnectionPool, QueueingConnectionPool):
    """`QueueingConnectionPool` (bounded, blocking) whose connections go to the primary the sentinels
    name; redis-py's `SentinelConnectionPool` supplies the discovery and the READONLY handling.

    redis-py asks the sentinels only when a connection connects, so after a failover whose old
    primary stays up, kept connections would write to it (until the sentinels demote it, about
    10 s later) and those writes would be lost. So the pool asks at most once a second, and on a
    new primary closes every connection, in use or not: in-flight commands are retried on the new
    primary, subscriptions reconnect to it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._checked_at = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        now = time.monotonic()
        if now - self._checked_at >= PRIMARY_CHECK_S:
            self._checked_at = now
            try:
                await self.get_master_address()
            except RedisError:
                pass  # mid-failover: the connection's own connect retries and reports
        return await super().get_connection(*args, **kwargs)

    async def get_master_address(self) -> tuple[str, int]:
        previous = self.master_address
        address: tuple[str, int] = await super().get_master_address()  # type: ignore[no-untyped-call]
        if previous is not None and address != previous:
            log.warning(
                "Redis primary changed (Sentinel failover): reconnecting",
                previous=f"{previous[0]}:{previous[1]}",
                primary=f"{address[0]}:{address[1]}",
            )
            await super().disconnect(inuse_connections=True)
        return address

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # the pool is closed (redis-py leaves the sentinels' clients open)
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


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
        target = parse_sentinel_url(settings.effective_redis_url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels), sentinel_kwargs={"socket_connect_timeout": 5, "socket_timeout": 5}
        )
        pool = SentinelQueueingPool(
            target.service_name,
            sentinel,
            db=target.db,
            username=target.username,
            password=target.password,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), FAILOVER_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            **options,
        )
    else:
        pool = QueueingConnectionPool.from_url(settings.effective_redis_url, **options)
    serialize, deserialize = make_serializers(settings.max_job_payload_bytes)
    return ArqRedis(
        pool_or_conn=pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_key(QueueName.NORMALIZATION),
    )
