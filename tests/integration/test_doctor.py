"""`python -m src.cli doctor` names the culprit of each seed incident (real redis-server, real workers)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from src.config import Settings
from src.domain.jobs import JobClaim
from src.worker.app_worker import AppWorker
from src.worker.settings import build_worker
from tests.conftest import RunBurstWorker, publish_deployment

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BODY = {
    "paciente": "Lia Souza",
    "documento": "529.982.247-25",
    "endereco": "Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
    "data_hora": "2026-12-01T10:00:00-03:00",
}


def doctor(settings: Settings) -> tuple[int, str, float]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": settings.redis_url,
        "SQLITE_PATH": settings.sqlite_path,
        "WORKER_HEARTBEAT_INTERVAL": str(settings.worker_heartbeat_interval),
        "JOB_LEASE_SECONDS": str(settings.job_lease_seconds),
        "APP_VERSION": settings.app_version,
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "src.cli", "doctor"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    print(f"doctor took {elapsed:.2f}s")
    return result.returncode, result.stdout + result.stderr, elapsed


async def start(settings: Settings, queue: str = "normalization") -> tuple[AppWorker, asyncio.Task[None]]:
    worker = build_worker(settings, queue, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    deadline = time.monotonic() + 20 * settings.worker_heartbeat_interval
    while not worker.heartbeat.started_at or worker.heartbeat.reason == "starting":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return worker, task


async def stop(worker: AppWorker, task: asyncio.Task[None]) -> None:
    await worker.close()
    await asyncio.gather(task, return_exceptions=True)


async def test_healthy_deployment_has_no_problems(
    api: httpx.AsyncClient, settings: Settings, run_burst_worker: RunBurstWorker
) -> None:
    """With the API up, a healthy worker, a maintenance worker and no backlog, doctor exits 0."""
    await publish_deployment(settings)
    worker, task = await start(settings)
    maintenance, maintenance_task = await start(settings, "maintenance")
    await asyncio.sleep(3 * settings.worker_heartbeat_interval)
    status, output, _ = await asyncio.to_thread(doctor, settings)
    await stop(worker, task)
    await stop(maintenance, maintenance_task)
    assert status == 0, output
    assert "no problems found" in output


async def test_jobs_waiting_with_only_a_maintenance_worker_are_nobody_consuming(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """A maintenance worker does not consume the normalization queue: jobs waiting with no
    normalization worker are named, by doctor as by the health model."""
    await publish_deployment(settings)
    maintenance, task = await start(settings, "maintenance")
    await api.post("/api/v1/appointments", json=BODY)
    await asyncio.sleep(3 * settings.worker_heartbeat_interval)
    status, output, _ = await asyncio.to_thread(doctor, settings)
    health = (await api.get("/api/v1/queue/health")).json()
    await stop(maintenance, task)
    assert status == 1
    assert "queue normalization: 1 job(s) waiting and no worker consuming it" in output
    consumers = next(c for c in health["checks"] if c["name"] == "consumers")
    assert consumers["level"] == "degraded" and "no worker consuming it" in consumers["message"]
    assert health["status"] == "degraded"


async def test_ghost_worker_of_an_old_version_is_named(api: httpx.AsyncClient, settings: Settings) -> None:
    """A worker running a version that is not allowed is reported fenced, with its host and pid."""
    await publish_deployment(settings)
    ghost, task = await start(settings.model_copy(update={"app_version": "old-2026-02"}))
    await asyncio.sleep(3 * settings.worker_heartbeat_interval)
    status, output, elapsed = await asyncio.to_thread(doctor, settings)
    await stop(ghost, task)
    assert status == 1
    assert f"worker {ghost.worker_id}" in output and "version old-2026-02" in output and "fenced" in output
    assert elapsed < 60


async def test_stuck_running_job_is_named(api: httpx.AsyncClient, settings: Settings) -> None:
    """A job left "running" by a dead worker is reported with its id, worker and cursor."""
    created = (await api.post("/api/v1/appointments", json=BODY)).json()
    repository = api._transport.app.state.repository  # type: ignore[attr-defined]
    long_ago = datetime.now(UTC) - timedelta(minutes=30)
    await repository.claim_job(
        created["job_id"], JobClaim(worker_id="dead-host:1:x", version="v1", started_at=long_ago)
    )
    status, output, _ = await asyncio.to_thread(doctor, settings)
    assert status == 1
    assert f"job {created['job_id']} runs with no heartbeat" in output and "worker dead-host:1:x" in output


async def test_worker_on_another_database_is_named(
    api: httpx.AsyncClient, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A worker configured with another store shows as a mismatch, naming both fingerprints."""
    await publish_deployment(settings)
    other = settings.model_copy(
        update={"sqlite_path": str(tmp_path_factory.mktemp("elsewhere") / "db.sqlite3")}
    )
    stray, task = await start(other)
    await asyncio.sleep(3 * settings.worker_heartbeat_interval)
    status, output, _ = await asyncio.to_thread(doctor, settings)
    await stop(stray, task)
    assert status == 1
    assert f"worker {stray.worker_id}" in output and "works on other data" in output


async def test_unknown_writer_and_implausibly_fast_results_are_named(
    api: httpx.AsyncClient, settings: Settings, run_burst_worker: RunBurstWorker
) -> None:
    """Results written by a worker that never registered, far faster than the fleet, are flagged."""
    from src.domain.jobs import JobOutcome, JobStatus

    repository = api._transport.app.state.repository  # type: ignore[attr-defined]
    ids = [(await api.post("/api/v1/appointments", json=BODY)).json()["job_id"] for _ in range(60)]
    now = datetime.now(UTC)
    for index, job_id in enumerate(ids):
        ghost = index % 2 == 0
        worker_id = "ghost-run-20b2282c3e52" if ghost else "fleet-worker"
        await repository.claim_job(job_id, JobClaim(worker_id=worker_id, version="test-1", started_at=now))
        outcome = JobOutcome(status=JobStatus.SUCCEEDED, finished_at=now, duration_ms=218 if ghost else 7000)
        await repository.finish_job(job_id, 1, outcome)
    status, output, _ = await asyncio.to_thread(doctor, settings)
    assert status == 1
    assert "written by worker ghost-run-20b2282c3e52, which never registered" in output
    assert "worker ghost-run-20b2282c3e52 finishes normalize_appointment in 218 ms" in output


async def test_unreachable_redis_is_named(settings: Settings) -> None:
    """With Redis unreachable doctor exits 1 and says so first."""
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    status, output, _ = await asyncio.to_thread(doctor, down)
    assert status == 1 and "Redis is unreachable" in output


async def test_fast_jobs_of_a_healthy_worker_are_not_called_too_fast(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """Jobs of 0-1 ms on every worker: one worker's 0 ms median against the fleet's 1 ms is noise,
    not a ghost (too-fast needs a fleet median of at least 50 ms and 20 samples a worker)."""
    from src.domain.jobs import JobOutcome, JobStatus

    repository = api._transport.app.state.repository  # type: ignore[attr-defined]
    ids = [(await api.post("/api/v1/appointments", json=BODY)).json()["job_id"] for _ in range(60)]
    now = datetime.now(UTC)
    for index, job_id in enumerate(ids):
        worker_id = ("w-a", "w-b", "w-c")[index % 3]
        await repository.claim_job(job_id, JobClaim(worker_id=worker_id, version="test-1", started_at=now))
        duration = 0 if worker_id == "w-a" else 1
        await repository.finish_job(
            job_id, 1, JobOutcome(status=JobStatus.SUCCEEDED, finished_at=now, duration_ms=duration)
        )
    _, output, _ = await asyncio.to_thread(doctor, settings)
    assert "ok      too-fast" in output and "probably not doing the work" not in output, output
