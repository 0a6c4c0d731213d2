"""The worker's start-up banner (the deployment guide's) and its Redis pool."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool

from src.config import Settings
from src.infrastructure.redis_pool import create_redis_pool
from src.worker.banner import render_banner


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_banner_lists_what_the_guide_expects_and_masks_the_password() -> None:
    """Tasks, Redis host (password masked), queue, max jobs, timeout, retention and code version."""
    settings = make(redis_url="redis://clinic-redis:6379/0", redis_password="hunter2", app_version="abc123")
    text = render_banner(
        settings, queue_name="jobs:v1:normalization", tasks=["normalize_appointment"], worker_id="h:1:x"
    )
    for expected in (
        "Starting ARQ Background Worker",
        "  - normalize_appointment",
        "Redis: ***@clinic-redis:6379/0",
        "Queue: jobs:v1:normalization",
        "Max concurrent jobs: 40",
        "Job timeout: 300 seconds",
        "Result retention: 3600 seconds",
        "Code version: abc123",
        "Address normalization: rules",
    ):
        assert expected in text
    assert "hunter2" not in text


async def test_one_bounded_blocking_pool_per_process() -> None:
    """The pool blocks for a free connection (never "Too many connections") and is bounded."""
    pool = create_redis_pool(make(redis_max_connections=7, redis_pool_timeout=3))
    try:
        assert isinstance(pool.connection_pool, BlockingConnectionPool)
        assert pool.connection_pool.max_connections == 7
        assert pool.connection_pool.timeout == 3
    finally:
        await pool.aclose(close_connection_pool=True)


async def test_behind_sentinel_the_pool_is_the_same_bounded_blocking_pool() -> None:
    """A `redis+sentinel://` URL gives the same stock blocking pool, bound and timeout (nothing
    connects until the first command)."""
    pool = create_redis_pool(
        make(
            redis_url="redis+sentinel://127.0.0.1:1/mymaster/0", redis_max_connections=7, redis_pool_timeout=3
        )
    )
    try:
        assert isinstance(pool.connection_pool, BlockingConnectionPool)
        assert pool.connection_pool.max_connections == 7
        assert pool.connection_pool.timeout == 3
    finally:
        await pool.aclose(close_connection_pool=True)
