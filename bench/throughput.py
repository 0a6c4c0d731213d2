"""No-op job throughput of one worker process: raw arq 0.28 against ours with every safety on.

Both sides get the same slots (`max_jobs`) and poll delay, run in burst mode in this process one
after the other, alternating, and are timed from "start-up hook done" to "queue drained and every
job finished" (enqueueing and start-up are not timed).

- arq: `arq.Worker` with defaults (pickle, anonymous in-progress keys), a no-op function on its own
  queue, jobs enqueued with arq's `enqueue_job`.
- ours: `AppWorker` built as `build_worker` builds it (JSON serializers, leased batched claims,
  lease-fenced finish, heartbeat, registry, version fencing and fingerprint, our start-up hook), after
  publishing the deployment; the no-op task goes through `JobRunner`, so every job pays the ledger's
  claim and finish in SQLite. Jobs are enqueued with `TaskService.enqueue_many`.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import pstats
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import structlog
from arq.connections import RedisSettings, create_pool
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func
from pydantic import BaseModel

from bench.common import BENCH_VERSION, bench_settings, median, publish_deployment
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.jobs import JobEnvelope, JobStatus
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository
from src.jobs.context import JobContext
from src.jobs.spec import JobSpec
from src.worker.app_worker import AppWorker
from src.worker.context import WorkerContext
from src.worker.settings import ARQ_TRY_CEILING, build_worker
from src.worker.tasks import ledger_task

log = structlog.get_logger(__name__)

ARQ_QUEUE = "bench:arq:noop"
ENQUEUE_CHUNK = 500


@dataclass(frozen=True)
class ThroughputConfig:
    jobs: int
    slots: int
    poll_delay_s: float
    beat_s: float
    lease_s: float
    reps: int
    breakdown: bool = False  # also run ours with a task that skips the ledger


@dataclass(frozen=True)
class Sample:
    """One drain: wall-clock seconds, and CPU seconds of this process (every thread) meanwhile."""

    wall_s: float
    cpu_s: float


@dataclass
class ThroughputResult:
    config: ThroughputConfig
    arq: list[Sample] = field(default_factory=list)
    ours: list[Sample] = field(default_factory=list)
    ours_no_ledger: list[Sample] = field(default_factory=list)

    def jobs_per_s(self, samples: list[Sample]) -> float:
        return self.config.jobs / median([s.wall_s for s in samples])

    def cpu_us_per_job(self, samples: list[Sample]) -> float:
        """CPU of the worker's process per job (Redis' own CPU excluded): steadier than wall time
        on a shared machine."""
        return median([s.cpu_s for s in samples]) / self.config.jobs * 1e6

    @property
    def arq_jobs_per_s(self) -> float:
        return self.jobs_per_s(self.arq)

    @property
    def ours_jobs_per_s(self) -> float:
        return self.jobs_per_s(self.ours)

    @property
    def ratio(self) -> float:
        """ours ÷ arq in median jobs/s (the lifecycle issue's gate is >= 0.9)."""
        return self.ours_jobs_per_s / self.arq_jobs_per_s

    @property
    def cpu_ratio(self) -> float:
        """arq's CPU per job ÷ ours: the throughput ratio a CPU-bound worker would reach."""
        return self.cpu_us_per_job(self.arq) / self.cpu_us_per_job(self.ours)

    @property
    def ours_no_ledger_jobs_per_s(self) -> float | None:
        return self.jobs_per_s(self.ours_no_ledger) if self.ours_no_ledger else None


class _Clock:
    """Starts when the worker's start-up hook has finished; `stop()` gives the sample."""

    def __init__(self) -> None:
        self._wall = 0.0
        self._cpu = 0.0

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Sample:
        if not self._wall:
            raise RuntimeError("the worker never finished its start-up hook")
        return Sample(wall_s=time.perf_counter() - self._wall, cpu_s=time.process_time() - self._cpu)


# --- raw arq --------------------------------------------------------------------------------------


async def arq_noop(ctx: dict[str, Any]) -> None:
    """The baseline's job: nothing."""


async def run_arq_once(redis_url: str, config: ThroughputConfig) -> Sample:
    """Enqueue `jobs` no-op jobs with arq's pool, drain them with a burst `arq.Worker`."""
    redis_settings = RedisSettings.from_dsn(redis_url)
    pool = await create_pool(redis_settings)
    try:
        await pool.flushdb()
        for start in range(0, config.jobs, ENQUEUE_CHUNK):
            size = min(ENQUEUE_CHUNK, config.jobs - start)
            await asyncio.gather(*(pool.enqueue_job("noop", _queue_name=ARQ_QUEUE) for _ in range(size)))
    finally:
        await pool.aclose(close_connection_pool=True)
    clock = _Clock()

    async def mark_ready(ctx: dict[str, Any]) -> None:
        clock.start()

    worker = Worker(
        functions=[func(cast(WorkerCoroutine, arq_noop), name="noop")],
        queue_name=ARQ_QUEUE,
        redis_settings=redis_settings,
        burst=True,
        max_jobs=config.slots,
        poll_delay=config.poll_delay_s,
        handle_signals=False,
        on_startup=mark_ready,
    )
    try:
        await worker.async_run()
        sample = clock.stop()
    finally:
        await worker.close()
    if worker.jobs_complete != config.jobs:
        raise RuntimeError(f"arq completed {worker.jobs_complete} of {config.jobs} jobs")
    return sample


# --- ours -----------------------------------------------------------------------------------------


class BenchPayload(BaseModel):
    n: int


async def _noop_handler(ctx: JobContext, payload: BenchPayload) -> dict[str, Any]:
    return {}


NOOP_JOB = JobSpec(name="normalize_appointment", handler=_noop_handler, payload=BenchPayload)


async def plain_noop(ctx: WorkerContext, envelope: dict[str, Any]) -> dict[str, Any]:
    """The breakdown's task: our worker's machinery only, no envelope, log line or ledger."""
    return {}


def ours_settings(redis_url: str, workdir: Path, config: ThroughputConfig) -> Settings:
    return bench_settings(
        redis_url,
        workdir,
        arq_max_jobs=config.slots,
        arq_poll_delay=config.poll_delay_s,
        worker_heartbeat_interval=config.beat_s,
        job_lease_seconds=config.lease_s,
    )


def build_bench_worker(settings: Settings, *, ledger: bool = True) -> AppWorker:
    """`build_worker`, with a no-op job registered under the normalize_appointment name: with the
    ledger, the task every registry entry gets (envelope, payload, log context, claim and finish
    through `JobRunner`); without, a bare coroutine (our worker's machinery only)."""
    noop = func(
        ledger_task(NOOP_JOB, settings) if ledger else cast(WorkerCoroutine, plain_noop),
        name="normalize_appointment",
        timeout=settings.arq_job_timeout,
        max_tries=ARQ_TRY_CEILING,
    )
    return build_worker(settings, "normalization", burst=True, handle_signals=False, functions=[noop])


async def enqueue_ours(settings: Settings, jobs: int, tag: str) -> None:
    """Publish the deployment, then enqueue `jobs` no-op jobs through `TaskService.enqueue_many`."""
    pool = create_redis_pool(settings)
    try:
        await pool.flushdb()
        await publish_deployment(settings)
        repository = build_repository(settings)
        await repository.init()
        try:
            service = TaskService(RedisJobQueue(pool), repository=repository, producer_version=BENCH_VERSION)
            envelopes = [
                JobEnvelope(
                    task="normalize_appointment",
                    logical_key=f"bench:{tag}:{i}",
                    ids={"n": i},
                    producer_version=BENCH_VERSION,
                )
                for i in range(jobs)
            ]
            results = await service.enqueue_many(envelopes)
        finally:
            await repository.close()
    finally:
        await pool.aclose(close_connection_pool=True)
    queued = sum(r.status == "queued" for r in results)
    if queued != jobs:
        raise RuntimeError(f"only {queued} of {jobs} jobs were queued")


async def succeeded_in_ledger(settings: Settings, limit: int) -> int:
    repository = build_repository(settings)
    await repository.init()
    try:
        return len(await repository.list_jobs(status=JobStatus.SUCCEEDED, limit=limit))
    finally:
        await repository.close()


async def run_ours_once(
    redis_url: str, workdir: Path, config: ThroughputConfig, tag: str, *, ledger: bool = True
) -> Sample:
    """Enqueue, then drain with a burst `AppWorker`; checks the ledger says succeeded."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = ours_settings(redis_url, workdir, config)
    await enqueue_ours(settings, config.jobs, tag)
    worker = build_bench_worker(settings, ledger=ledger)
    clock = _Clock()
    first_beat = worker.heartbeat.start

    async def mark_ready() -> None:  # the worker is ready once its first beat allowed it to claim
        await first_beat()
        clock.start()

    worker.heartbeat.start = mark_ready  # type: ignore[method-assign]
    try:
        await worker.async_run()
        sample = clock.stop()
    finally:
        await worker.close()
    if worker.jobs_complete != config.jobs:
        raise RuntimeError(f"ours completed {worker.jobs_complete} of {config.jobs} jobs")
    if not ledger:
        return sample
    succeeded = await succeeded_in_ledger(settings, config.jobs + 1)
    if succeeded != config.jobs:
        raise RuntimeError(f"the ledger shows {succeeded} of {config.jobs} jobs succeeded")
    return sample


async def run_throughput(redis_url: str, workdir: Path, config: ThroughputConfig) -> ThroughputResult:
    """`reps` alternating runs of each side (arq first on even reps, ours first on odd ones)."""
    result = ThroughputResult(config=config)
    sides = ["arq", "ours", *(["bare"] if config.breakdown else [])]
    for rep in range(config.reps):
        for side in sides if rep % 2 == 0 else reversed(sides):
            gc.collect()
            if side == "arq":
                result.arq.append(await run_arq_once(redis_url, config))
            elif side == "ours":
                result.ours.append(await run_ours_once(redis_url, workdir / f"ours-{rep}", config, f"r{rep}"))
            else:
                sample = await run_ours_once(
                    redis_url, workdir / f"bare-{rep}", config, f"b{rep}", ledger=False
                )
                result.ours_no_ledger.append(sample)
    return result


async def profile_ours(redis_url: str, workdir: Path, config: ThroughputConfig, top: int = 30) -> str:
    """cProfile of one run of our side (after a warm-up run): the top functions by own time."""
    await run_ours_once(redis_url, workdir / "profile-warmup", config, "warm")
    profiler = cProfile.Profile()
    profiler.enable()
    await run_ours_once(redis_url, workdir / "profile", config, "prof")
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()
