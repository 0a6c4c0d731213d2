"""Session fixtures: a real redis-server on a free port, per-test settings and stores, burst workers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.local_redis import RedisServer, start_redis_server
from src.config import Environment, Settings, isolated_environ
from src.infrastructure.redis_pool import create_redis_pool
from src.worker.app_worker import AppWorker
from src.worker.settings import build_worker

# Tests never read a developer's .env, environment or the shared Redis on 6379: the settings'
# variables are cleared for this process and every process it starts (they inherit os.environ),
# and APP_ENV_FILE="" turns the .env file off (tests/unit/test_isolation.py proves it).
_isolated = isolated_environ()
os.environ.clear()
os.environ.update(_isolated)
os.environ["ENVIRONMENT"] = "test"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def make_settings(redis_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": Environment.TEST,
        "redis_url": redis_url,
        "sqlite_path": str(tmp_path / "store.sqlite3"),
        "app_version": "test-1",
        "arq_poll_delay": 0.05,
        "arq_job_completion_wait": 2,
        "openai_api_key": None,
        "openai_base_url": None,
        "api_access_token": "test-token",
        "log_format": "json",
        "batch_chunk_size": 50,
        "worker_heartbeat_interval": 0.5,
        "job_lease_seconds": 3.0,
        "reconcile_every_seconds": 1,
        "renormalize_every_seconds": 0,  # off unless a test asks: it would call the fake LLM at :00
        "worker_state_dir": str(tmp_path / "worker-state"),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    return make_settings(redis_server.url, tmp_path)


@pytest.fixture
async def arq_pool(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = create_redis_pool(settings)
    await pool.flushdb()
    yield pool
    await pool.aclose(close_connection_pool=True)


RunBurstWorker = Callable[..., Awaitable[AppWorker]]


async def publish_deployment(settings: Settings) -> str:
    """Do what the API does at start: allow its version and publish the data fingerprint."""
    from src.infrastructure.queue.deployment_registry import DeploymentRegistry
    from src.infrastructure.repository_factory import build_repository

    repository = build_repository(settings)
    await repository.init()
    pool = create_redis_pool(settings)
    try:
        registry = DeploymentRegistry(pool)
        fingerprint, _ = await registry.announce(
            settings.app_version,
            store=repository.identity(),
            data_key=repository.data_key(),
            redis_db=settings.redis_db,
        )
        return fingerprint
    finally:
        await pool.aclose(close_connection_pool=True)
        await repository.close()


@pytest.fixture
def run_burst_worker(settings: Settings, arq_pool: ArqRedis) -> RunBurstWorker:
    """Run a burst worker (drains the queue, then stops) with the test's settings, after publishing
    the deployment as the API would."""

    async def run(queue: str = "normalization", settings_: Settings | None = None) -> AppWorker:
        await publish_deployment(settings_ or settings)
        worker = build_worker(settings_ or settings, queue, burst=True, handle_signals=False)
        try:
            await worker.async_run()
        finally:
            await worker.close()
        return worker

    return run


@asynccontextmanager
async def app_client(
    settings: Settings, token: str | None = "test-token"
) -> AsyncIterator[httpx.AsyncClient]:
    """The app built from `settings` with its lifespan running, and an httpx client bound to it
    (sending `token` as the bearer token unless it is None)."""
    from src.api.main import create_app

    app = create_app(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            yield client


@pytest.fixture
async def api(settings: Settings, arq_pool: ArqRedis) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client bound to the app (lifespan run), authenticated with the test token."""
    async with app_client(settings) as client:
        yield client


@pytest.fixture(scope="session")
def fake_openai_session() -> Iterator[object]:
    """The shipped OpenAI-compatible test server, as a real process on a free loopback port."""
    from tests.fakes.openai_server import run_fake_openai_server

    with run_fake_openai_server() as server:
        yield server
