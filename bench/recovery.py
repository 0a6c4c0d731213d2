"""Recovery after SIGKILL: how long a job held by a killed worker stays stuck before another runs it.

Real processes: two `python workers.py` start on a private redis-server and SQLite file after the
deployment is published (workers.py with the slow-item hook of tests/worker_hooks.py); one slow
job is enqueued through `TaskService`. As soon
as the ledger shows it running on worker A (attempt 1), A gets SIGKILL (so its lease is at its
fullest: the worst kill phase), and the clock runs until the ledger shows it running on worker B
with attempt 2. Worker B's own pick-up (poll delay, ARQ_POLL_DELAY) is included.

arq's baseline is computed, not waited for: arq 0.28 marks a started job with an anonymous
in-progress key that lives for the longest job timeout + 10 s (300 + 10 = 310 s by default), and no
other worker may start the job before it expires.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import BENCH_TOKEN, BENCH_VERSION, bench_settings, median, publish_deployment
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.appointments import Appointment
from src.domain.jobs import JobEnvelope, JobRecord, JobStatus
from src.domain.workers import WorkerState
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.sqlite_repository import SQLiteRepository

REPO_ROOT = Path(__file__).resolve().parent.parent
ARQ_DEFAULT_JOB_TIMEOUT_S = 300
ARQ_IN_PROGRESS_EXTRA_S = 10  # arq.Worker: in_progress_timeout_s = max timeout + 10
ARQ_RECOVERY_S = float(ARQ_DEFAULT_JOB_TIMEOUT_S + ARQ_IN_PROGRESS_EXTRA_S)
SLOW_JOB_MS = 600_000  # the job must outlive the whole measurement on both workers
LEDGER_POLL_S = 0.01
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RecoveryConfig:
    lease_s: float
    beat_s: float
    reps: int
    poll_delay_s: float = 0.5  # our ARQ_POLL_DELAY default


@dataclass
class RecoveryResult:
    config: RecoveryConfig
    seconds: list[float]

    @property
    def median_s(self) -> float:
        return median(self.seconds)

    @property
    def ratio(self) -> float:
        """ours ÷ arq's 310 s (the lifecycle issue's gate is <= 0.1)."""
        return self.median_s / ARQ_RECOVERY_S


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of `python workers.py`: ours, with every other setting of the caller dropped
    (a developer's MONGODB_URL or OPENAI_API_KEY must not leak in; blanks override a `.env`)."""
    ours = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env.update(
        {
            "REDIS_URL": settings.redis_url,
            "SQLITE_PATH": settings.sqlite_path,
            "MONGODB_URL": "",
            "OPENAI_API_KEY": "",
            "OPENAI_BASE_URL": "",
            "APP_VERSION": BENCH_VERSION,
            "ENVIRONMENT": "test",
            "API_ACCESS_TOKEN": BENCH_TOKEN,
            "JOB_LEASE_SECONDS": str(settings.job_lease_seconds),
            "WORKER_HEARTBEAT_INTERVAL": str(settings.worker_heartbeat_interval),
            "ARQ_POLL_DELAY": str(settings.arq_poll_delay),
            "TEST_ITEM_DELAY_MS": str(SLOW_JOB_MS),  # read by tests/worker_hooks.py
            "WORKER_STATE_DIR": settings.worker_state_dir,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.worker_hooks"],  # workers.py with the slow-job hook
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def log_tails(workdir: Path, rep: int, lines: int = 15) -> str:
    """The last lines of each worker's log of repetition `rep`, for an error message."""
    tails = []
    for path in sorted(workdir.glob(f"worker-{rep}-*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"--- {path.name}\n" + "\n".join(tail))
    return "\n".join(tails)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(30)


async def ready_workers(registry: DeploymentRegistry, pids: set[int]) -> dict[int, str]:
    """pid → worker id of the given processes once each has beaten with state `ok`."""
    records = await registry.list_workers()
    return {r.pid: r.worker_id for r in records if r.pid in pids and r.state is WorkerState.OK}


async def wait_ledger(
    repository: SQLiteRepository, job_id: str, attempt: int, timeout_s: float, what: str
) -> tuple[JobRecord, float]:
    """Poll the ledger until `job_id` is running with `attempt`; the record and when it was seen."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        record = await repository.get_job(job_id)
        if record is not None and record.status is JobStatus.RUNNING and record.attempt >= attempt:
            return record, time.perf_counter()
        await asyncio.sleep(LEDGER_POLL_S)
    raise TimeoutError(f"{what}: job {job_id} not running with attempt {attempt} within {timeout_s} s")


def appointment(appointment_id: str) -> Appointment:
    return Appointment(
        id=appointment_id,
        paciente="Paciente Benchmark",
        documento="52998224725",
        endereco="Av. Paulista, 1578, Bela Vista, São Paulo - SP, 01310-200",
        data_hora=datetime(2026, 12, 1, 14, 30, tzinfo=UTC),
        created_at=datetime.now(UTC),
    )


async def measure_once(settings: Settings, workdir: Path, rep: int) -> float:
    """One kill: seconds from SIGKILL of the worker running the job to its run on the other worker."""
    try:
        return await _measure_once(settings, workdir, rep)
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}\n{log_tails(workdir, rep)}") from exc


async def _measure_once(settings: Settings, workdir: Path, rep: int) -> float:
    env = worker_env(settings)
    pool = create_redis_pool(settings)
    repository = SQLiteRepository(settings.sqlite_path)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await pool.flushdb()
        await publish_deployment(settings)
        await repository.init()
        workers = [start_worker(env, workdir / f"worker-{rep}-{n}.log") for n in range(2)]
        registry = DeploymentRegistry(pool)
        pids = {w.pid for w in workers}
        deadline = time.perf_counter() + READY_TIMEOUT_S
        ids = await ready_workers(registry, pids)
        while len(ids) < 2:
            if time.perf_counter() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError("workers not ready")
            await asyncio.sleep(0.05)
            ids = await ready_workers(registry, pids)

        appointment_id = f"bench-recovery-{rep}"
        await repository.insert_appointments([appointment(appointment_id)])
        envelope = JobEnvelope(
            task="normalize_appointment",
            logical_key=f"normalize:{appointment_id}",
            ids={"appointment_id": appointment_id},
            producer_version=BENCH_VERSION,
        )
        service = TaskService(RedisJobQueue(pool), repository=repository, producer_version=BENCH_VERSION)
        [enqueued] = await service.enqueue_many([envelope])
        if enqueued.status != "queued":
            raise RuntimeError(f"job not queued: {enqueued.status}")

        first, _ = await wait_ledger(repository, envelope.job_id, 1, 30.0, "first run")
        victim = next(w for w in workers if ids.get(w.pid) == first.worker_id)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.perf_counter()
        victim.wait(30)
        timeout = settings.job_lease_seconds + 60.0
        # attempt 2 is the lost lease's fencing of the killed run; attempt 3 runs on the other worker
        second, seen_at = await wait_ledger(repository, envelope.job_id, 3, timeout, "after SIGKILL")
        if second.worker_id == first.worker_id or second.attempt != 3 or second.lease_losses != 1:
            raise RuntimeError(f"unexpected takeover: {first.worker_id} -> {second.worker_id} ({second})")
        return seen_at - killed_at
    finally:
        for worker in workers:
            stop(worker)
        await pool.aclose(close_connection_pool=True)
        await repository.close()


async def run_recovery(redis_url: str, workdir: Path, config: RecoveryConfig) -> RecoveryResult:
    rundir = workdir / f"recovery-lease-{config.lease_s:g}"
    rundir.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(
        redis_url,
        rundir,
        job_lease_seconds=config.lease_s,
        worker_heartbeat_interval=config.beat_s,
        arq_poll_delay=config.poll_delay_s,
    )
    result = RecoveryResult(config=config, seconds=[])
    for rep in range(config.reps):
        result.seconds.append(await measure_once(settings, rundir, rep))
    return result
