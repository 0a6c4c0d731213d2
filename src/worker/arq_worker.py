"""Our arq `Worker` subclass: the one place that reaches into arq's worker.

It refuses to run without JSON (de)serializers or on a queue outside our protocol's namespace, so a
misconfigured worker fails at start instead of stealing jobs. Every arq method this module overrides
or relies on is listed in `RELIED_ON_ARQ_METHODS` and checked by a guard test against the pinned arq.
"""

from __future__ import annotations

from typing import Any

import structlog
from arq.worker import Worker

from src.domain.jobs import PROTOCOL_VERSION

log = structlog.get_logger(__name__)

RELIED_ON_ARQ_METHODS: dict[str, tuple[str, ...]] = {
    "__init__": ("functions", "queue_name", "redis_pool", "burst", "on_startup", "on_shutdown",
                 "handle_signals", "job_completion_wait", "max_jobs", "job_timeout", "keep_result",
                 "poll_delay", "max_tries", "health_check_interval", "health_check_key", "ctx",
                 "job_serializer", "job_deserializer", "cron_jobs"),
    "main": (),
    "run": (),
    "async_run": (),
    "close": (),
    "run_job": ("job_id", "score"),
    "start_jobs": ("job_ids",),
}  # fmt: skip


class AppWorker(Worker):
    """arq's worker, constrained to our protocol."""

    def __init__(self, *args: Any, worker_id: str, **kwargs: Any) -> None:
        queue_name = kwargs.get("queue_name")
        if not isinstance(queue_name, str) or not queue_name.startswith(f"jobs:{PROTOCOL_VERSION}:"):
            raise ValueError(f"queue {queue_name!r} is outside the jobs:{PROTOCOL_VERSION}: namespace")
        if kwargs.get("job_serializer") is None or kwargs.get("job_deserializer") is None:
            raise ValueError("AppWorker needs the JSON job serializer and deserializer (never pickle)")
        super().__init__(*args, **kwargs)
        self.worker_id = worker_id

    async def close(self) -> None:
        log.info(
            "worker stopped",
            jobs_complete=self.jobs_complete,
            jobs_failed=self.jobs_failed,
            jobs_retried=self.jobs_retried,
        )
        await super().close()
