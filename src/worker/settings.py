"""arq WorkerSettings, built from our Settings for one queue, and the worker factory."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, cast

from arq.cron import CronJob, cron
from arq.typing import WorkerCoroutine
from arq.worker import Function, func

from src.config import Settings
from src.domain.jobs import JobName, QueueName, queue_key
from src.infrastructure.job_serializer import make_serializers
from src.infrastructure.redis_pool import create_redis_pool
from src.worker.arq_worker import AppWorker
from src.worker.heartbeat import LifecycleConfig
from src.worker.hooks import shutdown, startup
from src.worker.state_files import deployment_scope
from src.worker.tasks import TASKS

TASKS_BY_QUEUE: dict[QueueName, tuple[JobName, ...]] = {
    QueueName.NORMALIZATION: (JobName.NORMALIZE_APPOINTMENT, JobName.NORMALIZE_BATCH_CHUNK),
    QueueName.MAINTENANCE: (),
}
CRONS_BY_QUEUE: dict[QueueName, tuple[JobName, ...]] = {
    QueueName.NORMALIZATION: (),
    QueueName.MAINTENANCE: (JobName.RECONCILE, JobName.CLEANUP),
}


def cron_jobs(settings: Settings, queue: QueueName) -> list[CronJob]:
    """Scheduled tasks: unique per tick, so several maintenance workers run each tick once."""
    every = settings.reconcile_every_seconds
    if every < 60:
        schedule: dict[str, set[int]] = {"second": set(range(0, 60, every))}
    else:
        schedule = {"second": {0}, "minute": set(range(0, 60, every // 60))}
    schedules: dict[JobName, dict[str, set[int]]] = {
        JobName.RECONCILE: schedule,
        JobName.CLEANUP: {"second": {0}, "minute": {17}},  # hourly
    }
    return [
        cron(
            cast(WorkerCoroutine, TASKS[name]),
            name=name.value,
            run_at_startup=name is JobName.RECONCILE,
            unique=True,
            timeout=max(60, every) if name is JobName.RECONCILE else 600,
            **schedules[name],  # type: ignore[arg-type]
        )
        for name in CRONS_BY_QUEUE[queue]
    ]


def new_worker_id() -> str:
    """`host:pid:random`: unique per process, readable in logs and in the registry."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# arq counts every start as a try, shutdowns and lost leases included (arq #267); the job runner
# enforces ARQ_MAX_TRIES on application failures from the ledger instead, so arq's own cap only
# guards against a job that can never even start.
ARQ_TRY_CEILING = 1000
# The job runner enforces ARQ_JOB_TIMEOUT on the job's body and records a timeout as a failed try, so
# arq's own per-job timeout is off for our tasks (0: "the task enforces its own", see AppWorker).
TASK_ENFORCES_TIMEOUT = 0


def task_functions(settings: Settings, queue: QueueName) -> list[Function]:
    return [
        func(
            cast(WorkerCoroutine, TASKS[name]),
            name=name.value,
            timeout=TASK_ENFORCES_TIMEOUT,
            max_tries=ARQ_TRY_CEILING,
        )
        for name in TASKS_BY_QUEUE[queue]
    ]


def worker_settings(
    settings: Settings, queue: QueueName, *, worker_id: str, burst: bool = False
) -> dict[str, Any]:
    """The keyword arguments of arq's `Worker` (arq's WorkerSettings, as a dict)."""
    functions = task_functions(settings, queue)
    crons = cron_jobs(settings, queue)
    serialize, deserialize = make_serializers(settings.max_job_payload_bytes)
    return {
        "functions": functions,
        "cron_jobs": crons,
        "queue_name": queue_key(queue),
        "burst": burst,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "max_jobs": settings.arq_max_jobs,
        "job_timeout": settings.arq_job_timeout,
        "keep_result": settings.arq_keep_result,
        "max_tries": settings.arq_max_tries,
        "poll_delay": settings.arq_poll_delay,
        "job_completion_wait": settings.arq_job_completion_wait,
        "health_check_interval": 10,
        "allow_abort_jobs": True,  # operators cancel running jobs (POST /api/v1/queue/job/{id}/cancel)
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "ctx": {
            "settings": settings,
            "worker_id": worker_id,
            "version": settings.app_version,
            "active_runs": {},
            "task_stats": {},
        },
    }


def build_worker(
    settings: Settings,
    queue: QueueName = QueueName.NORMALIZATION,
    *,
    burst: bool = False,
    handle_signals: bool = True,
    worker_id: str | None = None,
    functions: list[Function] | None = None,
) -> AppWorker:
    """Our worker on `queue`, with its own bounded blocking Redis pool; `functions` replaces the
    queue's registered tasks (benchmarks run a no-op under the same lifecycle)."""
    worker_id = worker_id or new_worker_id()
    kwargs = worker_settings(settings, queue, worker_id=worker_id, burst=burst)
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
