"""Thin task functions: unpack the context, call one service method, log one summary line.

Each task takes one argument, the JSON envelope of ids (never personal data).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from src.application.services.normalization_service import RunInfo
from src.application.services.queue_admin import QueueAdmin
from src.domain.jobs import JobEnvelope, JobName, JobProgress
from src.logging import bind_context, clear_context
from src.worker.context import WorkerContext

log = structlog.get_logger(__name__)


async def normalize_appointment(ctx: WorkerContext, envelope: dict[str, Any]) -> dict[str, Any]:
    """Fill `documento_normalizado` and `endereco_normalizado` of one appointment."""
    env = JobEnvelope.model_validate(envelope)
    appointment_id = str(env.ids["appointment_id"])

    repository = ctx["repository"]

    async def body(run: RunInfo) -> dict[str, Any]:
        async def still_current(progress: JobProgress) -> bool:
            return await repository.heartbeat_job(
                run.job_id, run.attempt, at=datetime.now(UTC), progress=progress
            )

        return await ctx["normalization"].normalize_appointment(
            appointment_id, run, still_current=still_current
        )

    return await _run(ctx, env, body)


async def normalize_batch_chunk(ctx: WorkerContext, envelope: dict[str, Any]) -> dict[str, Any]:
    """Normalize one chunk of an imported batch, resuming from the ledger's checkpoint."""
    env = JobEnvelope.model_validate(envelope)
    batch_id = str(env.ids["batch_id"])
    seq_from, seq_to = int(env.ids["seq_from"]), int(env.ids["seq_to"])
    repository = ctx["repository"]

    async def body(run: RunInfo) -> dict[str, Any]:
        record = await repository.get_job(run.job_id)  # its checkpoint: resume where a killed run stopped
        cursor = record.progress.cursor if record is not None else None

        async def checkpoint(progress: JobProgress) -> bool:
            return await repository.heartbeat_job(
                run.job_id, run.attempt, at=datetime.now(UTC), progress=progress
            )

        return await ctx["normalization"].normalize_batch_range(
            batch_id, seq_from, seq_to, run, resume_from=cursor, checkpoint=checkpoint
        )

    return await _run(ctx, env, body)


async def _run(ctx: WorkerContext, env: JobEnvelope, body: Any) -> dict[str, Any]:
    bind_context(job_id=env.job_id, request_id=env.request_id, batch_id=env.batch_id, task=env.task.value)
    try:
        result = await ctx["runner"].run(env, body)
        log.debug("job done", **{k: v for k, v in result.items() if isinstance(v, int | str | bool)})
        return result
    finally:
        clear_context("job_id", "request_id", "batch_id", "task")


async def reconcile(ctx: WorkerContext) -> dict[str, Any]:
    """Cron on the maintenance queue: re-enqueue stale running and vanished jobs."""
    report = await ctx["reconciler"].run()
    return report.model_dump()


async def cleanup(ctx: WorkerContext) -> dict[str, Any]:
    """Hourly cron on the maintenance queue: drop ledger records and results past the retention."""
    admin = QueueAdmin(ctx["repository"], ctx["tasks"])
    report = await admin.cleanup(older_than_s=ctx["settings"].ledger_retention_seconds)
    return report.model_dump()


TASKS = {
    JobName.NORMALIZE_APPOINTMENT: normalize_appointment,
    JobName.NORMALIZE_BATCH_CHUNK: normalize_batch_chunk,
    JobName.RECONCILE: reconcile,
    JobName.CLEANUP: cleanup,
}
