"""The Redis connection for arq: one bounded, *blocking* pool per process.

A plain `ConnectionPool` raises "Too many connections" when exhausted (the ghost-worker incident);
a `BlockingConnectionPool` makes callers wait up to `REDIS_POOL_TIMEOUT` for a free connection.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import BlockingConnectionPool

from src.config import Settings
from src.domain.jobs import QueueName, queue_key
from src.infrastructure.job_serializer import make_serializers


def create_redis_pool(settings: Settings, *, max_connections: int | None = None) -> ArqRedis:
    """An `ArqRedis` over a blocking pool, speaking JSON, defaulting to the normalization queue."""
    pool = BlockingConnectionPool.from_url(
        settings.effective_redis_url,
        max_connections=max_connections or settings.redis_max_connections,
        timeout=settings.redis_pool_timeout,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    serialize, deserialize = make_serializers(settings.max_job_payload_bytes)
    return ArqRedis(
        pool_or_conn=pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_key(QueueName.NORMALIZATION),
    )
