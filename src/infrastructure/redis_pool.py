"""The Redis connection for arq: one bounded, *blocking* pool per process.

A plain `ConnectionPool` raises "Too many connections" when exhausted (the ghost-worker incident);
redis-py's stock `BlockingConnectionPool` makes callers wait up to `REDIS_POOL_TIMEOUT` for a free
connection instead, and fails with "No connection available." after that. Behind Sentinel
(`redis+sentinel://`) it is the same stock pool following the primary
(src/infrastructure/redis_sentinel.py). Only redis-py's public API is used: what to re-check on an
upgrade is in docs/architecture.md, "Upgrading arq and redis-py".
"""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool, ConnectionPool

from src.config import Settings
from src.domain.jobs import DEFAULT_QUEUE, queue_key
from src.infrastructure.job_serializer import make_serializers
from src.redis_urls import is_sentinel


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
        from src.infrastructure.redis_sentinel import sentinel_pool  # imported only behind Sentinel

        pool = sentinel_pool(settings.effective_redis_url, options)
    else:
        pool = BlockingConnectionPool.from_url(settings.effective_redis_url, **options)
    serialize, deserialize = make_serializers(settings.max_job_payload_bytes)
    return ArqRedis(
        pool_or_conn=pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_key(DEFAULT_QUEUE),
    )
