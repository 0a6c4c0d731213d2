"""Our pool behind Redis Sentinel (`REDIS_URL=redis+sentinel://…`), on redis-py's own Sentinel support.

redis-py's `SentinelConnectionPool` is not bounded-and-blocking; `SentinelBlockingPool` is it
combined with the stock `BlockingConnectionPool` (same bound, timeout and error as the plain pool),
overriding only public methods.

redis-py asks the sentinels which server is the primary only when a connection connects. After a
failover whose old primary stays up (a `SENTINEL FAILOVER`, a network split), kept connections would
go on writing to it until the sentinels demote it (about 10 s here), and those writes would be lost.
So `SentinelBlockingPool` asks at most once every PRIMARY_CHECK_S; on a new primary it closes every
connection, in use or not, once (one caller sees the change), and a connection still pointing at
the old primary is dropped before reuse. A command refused by a demoted primary (READONLY, which
redis-py turns into a ConnectionError) or cut off by the switch is retried on the new primary:
one level of retries, a short budget, and never for a refused password.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from src.redis_urls import parse_sentinel_url

T = TypeVar("T")
PRIMARY_CHECK_S = 1.0  # how often a pool asks the sentinels which server is the primary
FAILOVER_RETRIES = 3  # 0.1 s, 0.2 s, 0.4 s: a reconnect to the primary the sentinels name now
SENTINEL_TIMEOUT_S = 2.0

log = structlog.get_logger(__name__)


class FailoverRetry(Retry):
    """redis-py's Retry, except for a refused password: AuthenticationError is a ConnectionError to
    redis-py, but retrying it only delays the one line that says what to fix."""

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]) -> T:
        async def fail_unless_refused(error: RedisError) -> None:
            await fail(error)
            if isinstance(error, AuthenticationError):
                raise error

        return await super().call_with_retry(do, fail_unless_refused)


class SentinelConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection, connecting once per call: the command's own retry is the one
    level of retries (redis-py would also retry every connect, multiplying the attempts). This is
    redis-py's own connect for a primary, without its retry loop, on public members only."""

    async def connect(self) -> None:
        if not self.is_connected:
            await self.connect_to(await self.connection_pool.get_master_address())  # type: ignore[no-untyped-call]


class SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """The stock `BlockingConnectionPool` (bounded, blocking) whose connections go to the primary the
    sentinels name; redis-py's `SentinelConnectionPool` supplies the discovery and the READONLY
    handling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.primary_checked_at = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        now = time.monotonic()
        if now - self.primary_checked_at >= PRIMARY_CHECK_S:
            self.primary_checked_at = now
            try:
                await self.get_master_address()
            except RedisError:
                pass  # mid-failover: the connection's own connect says what is wrong
        return cast(AbstractConnection, await super().get_connection(*args, **kwargs))

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        primary = self.master_address
        where = (getattr(connection, "host", None), getattr(connection, "port", None))
        if primary is not None and connection.is_connected and where != primary:
            await connection.disconnect()  # connected to the old primary while the switch happened
        await super().ensure_connection(connection)

    async def get_master_address(self) -> tuple[str, int]:
        address: tuple[str, int] = await self.sentinel_manager.discover_master(self.service_name)
        previous, self.master_address = self.master_address, address  # no await between: one caller
        if previous is not None and address != previous:
            log.warning(
                "Redis primary changed (Sentinel failover): reconnecting",
                previous=f"{previous[0]}:{previous[1]}",
                primary=f"{address[0]}:{address[1]}",
            )
            await ConnectionPool.disconnect(self, inuse_connections=True)
        return address

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # the pool is closed (redis-py leaves the sentinels' clients open)
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def sentinel_pool(url: str, options: dict[str, Any]) -> SentinelBlockingPool:
    """The pool for a `redis+sentinel://` URL (password already filled in), with `options` of the
    plain pool (bound, timeouts)."""
    target = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs={"socket_connect_timeout": SENTINEL_TIMEOUT_S, "socket_timeout": SENTINEL_TIMEOUT_S},
    )
    return SentinelBlockingPool(
        target.service_name,
        sentinel,
        connection_class=SentinelConnection,
        db=target.db,
        username=target.username,
        password=target.password,
        retry=FailoverRetry(ExponentialBackoff(cap=0.4, base=0.1), FAILOVER_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **options,
    )
