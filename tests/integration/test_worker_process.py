"""`workers.py` as a process: pre-flight failures are quick and clear; recycling drains and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from src.config import Settings
from src.domain.jobs import queue_key
from src.worker.settings import build_worker
from tests import worker_hooks
from tests.conftest import publish_deployment
from tests.integration.test_lifecycle import stored_and_enqueued

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_unreachable_redis_exits_non_zero_within_ten_seconds(tmp_path: Path) -> None:
    """With Redis unreachable the worker exits 1 quickly, naming Redis (and never its password)."""
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": "redis://:s3cret@127.0.0.1:1/0",
        "SQLITE_PATH": str(tmp_path / "x.sqlite3"),
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "workers.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "worker not started: Redis at ***@127.0.0.1:1/0 is unreachable" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert elapsed < 10 + 5  # 10 s budget plus interpreter start-up on a loaded machine


def test_auto_reload_flags_are_refused(tmp_path: Path) -> None:
    """`--reload` / `--watch` are refused with the reason (a reload kills running jobs)."""
    for flag in ("--reload", "--watch=src"):
        result = subprocess.run(
            [sys.executable, "workers.py", flag], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2 and "auto-reload is refused" in result.stderr


async def test_worker_recycles_itself_after_max_jobs(settings: Settings, arq_pool: ArqRedis) -> None:
    """WORKER_MAX_JOBS_BEFORE_RESTART: the worker drains after N jobs and stops by itself; the rest
    stay queued for the restarted worker."""
    for i in range(8):
        await stored_and_enqueued(settings, arq_pool, f"rc{i}")
    recycled = settings.model_copy(update={"worker_max_jobs_before_restart": 3, "arq_max_jobs": 1})
    await publish_deployment(recycled)
    worker = build_worker(recycled, handle_signals=False)
    with contextlib.suppress(asyncio.CancelledError):  # a drain ends arq's main task by cancelling it
        await asyncio.wait_for(worker.async_run(), timeout=30 * settings.worker_heartbeat_interval + 10)
    await worker.close()
    assert worker.heartbeat.draining
    assert 3 <= worker.jobs_complete < 8
    assert await arq_pool.zcard(queue_key("normalization")) == 8 - worker.jobs_complete


async def test_worker_warns_when_redis_may_evict(
    settings: Settings, arq_pool: ArqRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Redis with an evicting maxmemory-policy is reported loudly at worker start."""
    from src.logging import configure_logging

    configure_logging("INFO", "json")
    await arq_pool.config_set("maxmemory-policy", "allkeys-lru")
    try:
        await publish_deployment(settings)
        worker = build_worker(settings, burst=True, handle_signals=False)
        await worker.async_run()
        await worker.close()
    finally:
        await arq_pool.config_set("maxmemory-policy", "noeviction")
    err = capsys.readouterr().err
    assert "maxmemory-policy is not noeviction" in err and "allkeys-lru" in err


async def test_worker_recycles_itself_over_max_rss(settings: Settings, arq_pool: ArqRedis) -> None:
    """WORKER_MAX_RSS_MB: a worker over its memory budget drains and stops by itself at the next beat."""
    small = settings.model_copy(update={"worker_max_rss_mb": 1})
    await publish_deployment(small)
    worker = build_worker(small, handle_signals=False)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker.async_run(), timeout=30 * settings.worker_heartbeat_interval + 10)
    await worker.close()
    assert worker.heartbeat.draining


async def test_retiring_a_version_releases_its_running_job_without_burning_a_try(
    settings: Settings, arq_pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose version is retired mid-job is fenced at its next beat and puts the job back:
    the ledger records an interruption, not an application failure, and the job runs again later.
    Stopping the worker while that job's end is still being recorded (a second cancel) lets the
    record complete instead of failing the stop."""
    from src.infrastructure.queue.deployment_registry import DeploymentRegistry
    from src.infrastructure.repository_factory import build_repository

    worker_hooks.install(monkeypatch, item_delay_ms=60_000)
    slow = settings
    job_id = await stored_and_enqueued(settings, arq_pool, "fence1")
    await publish_deployment(slow)
    worker = build_worker(slow, handle_signals=False)
    send = worker.consumer._finish._send

    async def slow_to_record(batch: Any) -> Any:
        await asyncio.sleep(0.5)  # so that `close` below cancels the job again while it is recorded
        return await send(batch)

    worker.consumer._finish._send = slow_to_record  # type: ignore[method-assign]
    run = asyncio.create_task(worker.async_run())
    repository = build_repository(settings)
    await repository.init()
    deadline = time.monotonic() + 40 * settings.worker_heartbeat_interval
    while (record := await repository.get_job(job_id)) is None or record.status != "running":
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.05)
    await DeploymentRegistry(arq_pool).retire_version(settings.app_version)
    while (record := await repository.get_job(job_id)) is not None and record.status == "running":
        assert time.monotonic() < deadline, "the fenced worker kept the job"
        await asyncio.sleep(0.05)
    assert record is not None and record.status == "interrupted"
    assert record.interruptions == 1 and record.app_failures == 0
    assert await arq_pool.zscore(queue_key("normalization"), job_id) is not None  # back on the queue
    assert worker.heartbeat.state.value == "fenced"
    await worker.close()  # the job's end is still being recorded: it completes, nothing raises
    assert await arq_pool.exists(in_progress_key_prefix + job_id) == 0  # the lease was given up
    await asyncio.gather(run, return_exceptions=True)
    await repository.close()
