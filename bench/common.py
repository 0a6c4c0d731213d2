"""What every benchmark shares: a private redis-server, settings, and publishing the deployment."""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.local_redis import RedisServer, start_redis_server
from src.config import Environment, Settings
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository

BENCH_VERSION = "bench-1"
BENCH_TOKEN = "bench-token"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (/proc/PID/stat, fields 14 and 15), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A redis-server on a free loopback port (never the shared 6379), stopped on exit."""
    server = start_redis_server(workdir)
    try:
        yield server
    finally:
        server.stop()


def bench_settings(redis_url: str, workdir: Path, **overrides: object) -> Settings:
    """Our defaults, pointed at the benchmark's Redis and SQLite file, with no `.env` read."""
    values: dict[str, object] = {
        "environment": Environment.TEST,
        "redis_url": redis_url,
        "sqlite_path": str(workdir / "store.sqlite3"),
        "app_version": BENCH_VERSION,
        "api_access_token": BENCH_TOKEN,
        "mongodb_url": None,
        "openai_api_key": None,
        "openai_base_url": None,
        "log_format": "json",
        "log_level": "WARNING",
        "worker_state_dir": str(workdir / "worker-state"),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def publish_deployment(settings: Settings) -> str:
    """Do what the API does at start (as tests/conftest.py does): allow its version and publish the
    data fingerprint, so workers may claim."""
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


def api_command(port: int) -> list[str]:
    """The API process every benchmark starts: uvicorn on the app factory, loopback, warnings only."""
    return [sys.executable, "-m", "uvicorn", "--factory", "src.api.main:app_from_env",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip


def median(values: list[float]) -> float:
    return float(statistics.median(values))
