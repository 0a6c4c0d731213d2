"""arq functions made from the job registry: each validates its job's envelope and payload, runs the
handler under the ledger's bookkeeping (`JobRunner`), and binds the job's ids to every log line.

A cron (the maintenance queue's) runs its handler as arq runs any cron, outside the ledger.
"""

from __future__ import annotations

from typing import Any, cast

import structlog
from arq.typing import WorkerCoroutine
from pydantic import ValidationError

from src.application.services.normalization_service import RunInfo
from src.config import Settings
from src.domain.jobs import ErrorCategory, JobEnvelope
from src.errors import PermanentError
from src.jobs.context import JobContext
from src.jobs.spec import JobSpec
from src.logging import bind_context, clear_context
from src.worker.job_runner import JobFailed, RunPolicy

log = structlog.get_logger(__name__)


def ledger_task(spec: JobSpec[Any], settings: Settings) -> WorkerCoroutine:
    """The arq coroutine of a job type that goes through the ledger."""
    policy = RunPolicy(timeout_s=spec.timeout(settings), max_tries=spec.max_tries(settings), retry=spec.retry)
    handler, payload_model = spec.handler, spec.payload

    async def task(ctx: dict[str, Any], envelope: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(envelope, dict) or args or kwargs:
            raise _refused(ctx, spec.name, "its arguments are not one job envelope")
        try:
            env = JobEnvelope.model_validate(envelope)
        except ValidationError as exc:
            raise _refused(
                ctx, spec.name, f"its envelope is invalid ({exc.error_count()} error(s))"
            ) from None

        async def body(run: RunInfo) -> dict[str, Any]:
            try:
                payload = payload_model.model_validate(env.ids)
            except ValidationError as exc:
                raise PermanentError(f"payload of {spec.name} is invalid: {_fields(exc)}") from None
            ctx["job_try"] = run.attempt  # the ledger's attempt, not arq's count of deliveries
            return await handler(cast(JobContext, ctx), payload)

        bind_context(job_id=env.job_id, request_id=env.request_id, batch_id=env.batch_id, task=env.task)
        try:
            result: dict[str, Any] = await ctx["runner"].run(env, body, policy)
            log.debug("job done", **{k: v for k, v in result.items() if isinstance(v, int | str | bool)})
            return result
        finally:
            clear_context("job_id", "request_id", "batch_id", "task")

    task.__qualname__ = task.__name__ = spec.name
    return cast(WorkerCoroutine, task)


def cron_task(spec: JobSpec[Any]) -> WorkerCoroutine:
    """The arq coroutine of a cron job: its handler with an empty payload."""
    handler, payload = spec.handler, spec.payload()

    async def task(ctx: dict[str, Any]) -> dict[str, Any]:
        return await handler(cast(JobContext, ctx), payload)

    task.__qualname__ = task.__name__ = spec.name
    return cast(WorkerCoroutine, task)


def _refused(ctx: dict[str, Any], name: str, why: str) -> JobFailed:
    """A job on our queue that TaskService did not put there: failed loudly, never counted as done."""
    message = f"job {ctx.get('job_id')} of {name} refused: {why}; enqueue it with TaskService.enqueue"
    ctx["runner"].count_refusal(name)
    log.error(
        "job refused: not enqueued through TaskService", job_id=ctx.get("job_id"), task=name, reason=why
    )
    return JobFailed(message, ErrorCategory.PERMANENT)


def _fields(exc: ValidationError) -> str:
    """Which fields are wrong, never their values (ids only, but still)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors())
