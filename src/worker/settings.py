"""arq's `WorkerSettings` for each queue, derived from the job registry and the one Settings object,
and the factory of our worker.

`worker_settings(settings, "normalization")` is the class arq users look for: `functions`,
`cron_jobs`, `max_jobs`, `job_timeout`, `keep_result`, `on_startup`, `on_shutdown`, ... as arq names
them; `python workers.py --queue normalization` runs it through `build_worker`.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from arq.cron import CronJob, cron
from arq.worker import Function, func

from src.config import Settings
from src.domain.jobs import DEFAULT_QUEUE, queue_key
from src.infrastructure.job_serializer import make_serializers
from src.infrastructure.redis_pool import create_redis_pool
from src.jobs.registry import REGISTRY, JobRegistry
from src.jobs.spec import JobSpec
from src.worker.app_worker import AppWorker
from src.worker.heartbeat import LifecycleConfig
from src.worker.hooks import shutdown, startup
from src.worker.state_files import deployment_scope
from src.worker.tasks import cron_task, ledger_task

# The attributes of a WorkerSettings class that arq's Worker takes as keyword arguments.
WORKER_KWARGS = (
    "functions", "cron_jobs", "queue_name", "burst", "on_startup", "on_shutdown", "max_jobs",
    "job_timeout", "keep_result", "max_tries", "poll_delay", "job_completion_wait",
    "allow_abort_jobs", "job_serializer", "job_deserializer",
)  # fmt: skip


class WorkerSettings:
    """arq's WorkerSettings of one queue (`worker_settings` makes one per queue)."""

    functions: list[Function]
    cron_jobs: list[CronJob]
    queue_name: str
    burst: bool = False
    on_startup = staticmethod(startup)
    on_shutdown = staticmethod(shutdown)
    max_jobs: int
    job_timeout: float
    keep_result: float
    max_tries: int
    poll_delay: float
    job_completion_wait: float
    allow_abort_jobs = True  # operators cancel running jobs (POST /api/v1/queue/job/{id}/cancel)
    job_serializer: Any
    job_deserializer: Any


def new_worker_id() -> str:
    """`host:pid:random`: unique per process, readable in logs and in the registry."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# arq counts every start as a try, shutdowns and lost leases included (arq #267); the job runner
# enforces each job's tries (its registry entry, else ARQ_MAX_TRIES) on application failures from the
# ledger instead, so arq's own cap only guards against a job that can never even start.
ARQ_TRY_CEILING = 1000
# The job runner enforces each job's timeout (its registry entry, else ARQ_JOB_TIMEOUT) on the body
# and records a timeout as a failed try, so arq's own per-job timeout is off for our tasks (0: "the
# task enforces its own", see AppWorker).
TASK_ENFORCES_TIMEOUT = 0


def task_functions(settings: Settings, queue: str, registry: JobRegistry = REGISTRY) -> list[Function]:
    """The queue's ledger jobs as arq functions (see the two constants above for their arq limits)."""
    return [
        func(
            ledger_task(spec, settings),
            name=spec.name,
            timeout=TASK_ENFORCES_TIMEOUT,
            max_tries=ARQ_TRY_CEILING,
        )
        for spec in registry.on_queue(queue)
        if spec.cron is None
    ]


def cron_jobs(settings: Settings, queue: str, registry: JobRegistry = REGISTRY) -> list[CronJob]:
    """The queue's crons: unique per tick, so several workers of the queue run each tick once."""
    crons = (_cron_job(spec, settings) for spec in registry.on_queue(queue) if spec.cron is not None)
    return [job for job in crons if job is not None]


def _cron_job(spec: JobSpec[Any], settings: Settings) -> CronJob | None:
    assert spec.cron is not None
    when = spec.cron(settings) if callable(spec.cron) else spec.cron
    if when is None:
        return None  # turned off by its setting
    return cron(
        cron_task(spec),
        name=spec.name,
        second=when.second,
        minute=when.minute,
        hour=when.hour,
        run_at_startup=when.run_at_startup,
        unique=True,
        timeout=spec.timeout(settings),
    )


def worker_settings(settings: Settings, queue: str, registry: JobRegistry = REGISTRY) -> type[WorkerSettings]:
    """The WorkerSettings class of `queue`; ValueError for a queue no job of the registry names."""
    if queue not in registry.queues:
        raise ValueError(f"no job is declared on queue {queue!r} (queues: {', '.join(registry.queues)})")
    serialize, deserialize = make_serializers(settings.max_job_payload_bytes)
    attributes: dict[str, Any] = {
        "functions": task_functions(settings, queue, registry),
        "cron_jobs": cron_jobs(settings, queue, registry),
        "queue_name": queue_key(queue),
        "max_jobs": settings.arq_max_jobs,
        "job_timeout": settings.arq_job_timeout,
        "keep_result": settings.arq_keep_result,
        "max_tries": settings.arq_max_tries,
        "poll_delay": settings.arq_poll_delay,
        "job_completion_wait": settings.arq_job_completion_wait,
        "job_serializer": staticmethod(serialize),
        "job_deserializer": staticmethod(deserialize),
    }
    return type(f"{queue.title().replace('_', '')}WorkerSettings", (WorkerSettings,), attributes)


def build_worker(
    settings: Settings,
    queue: str = DEFAULT_QUEUE,
    *,
    burst: bool = False,
    handle_signals: bool = True,
    worker_id: str | None = None,
    functions: list[Function] | None = None,
    registry: JobRegistry = REGISTRY,
) -> AppWorker:
    """Our worker on `queue`, with its own bounded blocking Redis pool; `functions` replaces the
    queue's registered tasks (benchmarks run a no-op under the same lifecycle)."""
    worker_id = worker_id or new_worker_id()
    config = worker_settings(settings, queue, registry)
    kwargs: dict[str, Any] = {name: getattr(config, name) for name in WORKER_KWARGS}
    kwargs["burst"] = burst
    kwargs["ctx"] = {
        "settings": settings,
        "worker_id": worker_id,
        "version": settings.app_version,
        "active_runs": {},
        "task_stats": {},
    }
    if functions is not None:
        kwargs["functions"] = functions
    # arq's main loop + one connection per running job, bounded (never "Too many connections").
    pool = create_redis_pool(settings)
    pool.default_queue_name = kwargs["queue_name"]
    lifecycle = LifecycleConfig(
        version=settings.app_version,
        beat_interval_s=settings.worker_heartbeat_interval,
        lease_s=settings.job_lease_seconds,
        max_jobs_before_restart=settings.worker_max_jobs_before_restart,
        max_rss_mb=settings.worker_max_rss_mb,
        state_dir=settings.worker_state_dir,
        state_scope=deployment_scope(settings.redis_display),
        direct_handoff=settings.worker_direct_handoff,
    )
    return AppWorker(
        redis_pool=pool, handle_signals=handle_signals, worker_id=worker_id, lifecycle=lifecycle, **kwargs
    )
