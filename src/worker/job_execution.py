"""Run one claimed job: read its payload, find its function, run it under its timeout, classify the
outcome and finish it under the lease. The outcomes are arq's, so arq's task API works in our tasks:

| the function...                   | the job                                   | counted as |
|-----------------------------------|-------------------------------------------|------------|
| returns                           | done, result stored                       | complete   |
| raises `arq.Retry(defer=...)`     | stays queued, at its score + the deferral | retried    |
| is cancelled by an abort request  | done, the cancellation stored as result   | failed     |
| is cancelled as the worker stops  | stays queued at its score: runs elsewhere | retried    |
| raises anything else              | done, the error stored as result          | failed     |

Our ledger tasks (`src/worker/tasks.py`) turn `Retry` and their own failures into ledger decisions
first; this table is what the transport does with what they raise.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from arq import Retry
from arq.cron import CronJob
from arq.worker import Function

from src.infrastructure.queue.keys import CRON_LEASE_KEEP_MS, ClaimedJob, now_ms
from src.infrastructure.queue.lease_consumer import LeaseConsumer
from src.infrastructure.queue.payload import (
    Deserializer,
    JobPayload,
    PayloadRefused,
    Serializer,
    decode_job,
    encode_result,
)
from src.worker.job_runner import JobFailed

log = structlog.get_logger(__name__)

NO_RESULT = object()  # the job stays queued: nothing to store


class JobExecutionFailed(RuntimeError):
    """A job that could not even start (expired payload, unknown function, tries exhausted)."""


@dataclass
class JobCounts:
    complete: int = 0
    failed: int = 0
    retried: int = 0


@dataclass(frozen=True)
class ExecutionDefaults:
    """The worker-wide limits a function's own (`func(..., timeout=, max_tries=, keep_result=)`) override."""

    job_timeout_s: float
    keep_result_s: float
    max_tries: int


@dataclass
class JobExecutor:
    functions: dict[str, Function | CronJob]
    consumer: LeaseConsumer
    ctx: dict[Any, Any]
    defaults: ExecutionDefaults
    serialize: Serializer
    deserialize: Deserializer
    counts: JobCounts = field(default_factory=JobCounts)
    aborting: set[str] = field(default_factory=set)  # running jobs an abort request cancelled

    async def run(self, job: ClaimedJob) -> None:
        """Run `job`, which this worker holds the lease of; it always ends finished or put back."""
        if job.payload is None:
            log.warning("job expired before it started", job_id=job.job_id)
            return await self._refuse(job, None, JobExecutionFailed("job expired"))
        try:
            payload = decode_job(job.payload, self.deserialize)
        except PayloadRefused as exc:
            log.error("job payload refused", job_id=job.job_id, error=str(exc))
            return await self._refuse(job, None, exc)
        if job.aborted:
            log.info("job aborted before it started", job_id=job.job_id)
            return await self._refuse(job, payload, asyncio.CancelledError())
        function = self.functions.get(payload.function)
        if function is None:
            log.warning("job of an unknown function", job_id=job.job_id, function=payload.function)
            return await self._refuse(
                job, payload, JobExecutionFailed(f"function {payload.function!r} not found")
            )
        job_try = job.job_try
        if payload.enqueue_try and payload.enqueue_try > job_try:
            job_try = payload.enqueue_try
            await self.consumer.raise_try(job.job_id, job_try)
        max_tries = self.defaults.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            log.warning("job exceeded its tries", job_id=job.job_id, max_tries=max_tries)
            return await self._refuse(job, payload, JobExecutionFailed(f"max {max_tries} retries exceeded"))
        await self._run_function(job, function, payload, job_try)

    async def _run_function(
        self, job: ClaimedJob, function: Function | CronJob, payload: JobPayload, job_try: int
    ) -> None:
        ctx = {**self.ctx, "job_id": job.job_id, "job_try": job_try, "score": job.score,
               "enqueue_time": datetime.fromtimestamp(payload.enqueue_time_ms / 1000, tz=UTC)}  # fmt: skip
        timeout_s = self.defaults.job_timeout_s if function.timeout_s is None else function.timeout_s
        # A timeout of 0: the task enforces its own (our ledger tasks record a timeout as a failed
        # try); no second timer per job. The function runs in this task (no task of its own per job:
        # that is a task and two loop turns more), so an abort cancels this task.
        deadline = asyncio.timeout(timeout_s) if timeout_s else contextlib.nullcontext()
        result: Any = NO_RESULT
        done, success, deferral = False, False, 0
        start_ms = now_ms()
        try:
            async with deadline:
                result = await function.coroutine(ctx, *payload.args, **payload.kwargs)
        except (Exception, asyncio.CancelledError) as exc:
            # The cancellation is handled here, and nothing below waits under a timeout scope, so
            # the task goes on to record the outcome (the finish itself survives a second cancel).
            if isinstance(exc, Retry):
                deferral = exc.defer_score + (now_ms() - job.score) if exc.defer_score else 0
                self.counts.retried += 1
            elif isinstance(exc, asyncio.CancelledError) and job.job_id in self.aborting:
                self.aborting.discard(job.job_id)
                result, done = exc, True
                self.counts.failed += 1
            elif isinstance(exc, asyncio.CancelledError):
                self.counts.retried += 1  # the worker is stopping: back on the queue for another
            else:
                result, done = exc, True
                self.counts.failed += 1
                if not isinstance(exc, JobFailed):  # the job runner has logged those, with their category
                    log.error("job raised", job_id=job.job_id, error_type=type(exc).__name__)
        else:
            success, done = True, True
            self.counts.complete += 1
        keep_forever = bool(function.keep_result_forever)
        keep_s = self.defaults.keep_result_s if function.keep_result_s is None else function.keep_result_s
        record = None
        if result is not NO_RESULT and (keep_forever or keep_s > 0):
            queue, finished_ms = self.consumer.queue_name, now_ms()
            record = encode_result(
                self.serialize, payload, job_id=job.job_id, queue_name=queue, job_try=job_try,
                success=success, result=result, start_ms=start_ms, finished_ms=finished_ms,
            )  # fmt: skip
        await self._finish(
            job,
            done=done,
            result=record,
            result_ms=0 if keep_forever or not keep_s else int(keep_s * 1000),
            keep_lease_ms=CRON_LEASE_KEEP_MS if isinstance(function, CronJob) else None,
            score=None if done else job.score + deferral,  # back to its own score, not the lease's deadline
        )

    async def _refuse(self, job: ClaimedJob, payload: JobPayload | None, exc: BaseException) -> None:
        """End a job that never started: recorded `failed` in the ledger with the reason (an abort:
        the ledger says cancelled already), so it is listed and retryable, never left waiting."""
        self.counts.failed += 1
        if not isinstance(exc, asyncio.CancelledError):
            await self._refuse_in_ledger(job.job_id, str(exc))
        keep_s = self.defaults.keep_result_s
        record = None
        if keep_s > 0:
            known = payload or JobPayload("<unknown>", (), {}, None, 0)
            queue, at = self.consumer.queue_name, now_ms()
            record = encode_result(
                self.serialize, known, job_id=job.job_id, queue_name=queue, job_try=job.job_try,
                success=False, result=exc, start_ms=at, finished_ms=at,
            )  # fmt: skip
        await self._finish(job, done=True, result=record, result_ms=int(keep_s * 1000))

    async def _finish(self, job: ClaimedJob, **outcome: Any) -> None:
        if not await self.consumer.finish(job.job_id, **outcome):
            log.warning("lease lost before finishing: result left to the current owner", job_id=job.job_id)

    async def _refuse_in_ledger(self, job_id: str, reason: str) -> None:
        runner = self.ctx.get("runner")
        if runner is None:
            return
        try:
            await runner.refuse(job_id, f"{reason} (on worker {self.consumer.worker_id})")
        except Exception as exc:  # noqa: BLE001 - the queue is still cleaned up; the reconciler sees the rest
            log.error("could not record a refused job in the ledger", job_id=job_id, error=type(exc).__name__)
