"""Runs one job with ledger bookkeeping: claim (fencing attempt), outcome, and the retry policy.

Each job runs under its registry entry's policy (`RunPolicy`): its timeout, its tries, and the
error categories it retries (by default transient errors and timeouts), with exponential backoff;
arq's `Retry(defer=…)` raised by a handler is a retry after that delay. The other errors fail
fast with their category and message; a cancellation (shutdown, a lease given back, an operator's cancel) is
recorded as an interruption, never as an application failure.

A job found `running` when claimed lost its lease: its worker died or froze mid-run. The ledger
counts the loss and fences that run off; the job is put back with backoff, not run at once, and
after `max_lease_losses` it is quarantined (`failed`, category `quarantined`), so a job that kills
every worker that runs it cannot take a fleet down in a loop.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from arq import Retry
from redis.exceptions import RedisError

from src.application.ports import Repository
from src.application.services.normalization_service import RunInfo, StaleAttempt
from src.domain.jobs import ErrorCategory, JobClaim, JobEnvelope, JobOutcome, JobStatus
from src.domain.workers import TaskStats
from src.errors import AppError, JobTimedOut, TransientError
from src.jobs.spec import RetryPolicy
from src.worker.job_lines import JobLines

log = structlog.get_logger(__name__)

Body = Callable[[RunInfo], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """A job type's limits, from its registry entry and the settings (`JobSpec`)."""

    timeout_s: float
    max_tries: int
    retry: RetryPolicy = RetryPolicy()


class JobFailed(Exception):
    """Raised to arq so its result says failed; carries the category for the stored result."""

    def __init__(self, message: str, category: ErrorCategory) -> None:
        super().__init__(message)
        self.category = category


LEASE_LOSS_BACKOFF = RetryPolicy(backoff_s=0.5)


def lease_loss_delay_s(lease_losses: int) -> float:
    """How long a job waits after its `lease_losses`-th lost lease before it runs again: 0.5 s, 1 s,
    2 s, ... on top of the lapsed lease itself (which already kept it waiting a whole lease)."""
    return LEASE_LOSS_BACKOFF.delay_s(lease_losses)


class JobRunner:
    def __init__(
        self,
        repository: Repository,
        *,
        worker_id: str,
        version: str,
        max_lease_losses: int,
        active_runs: dict[str, int] | None = None,
        stats: dict[str, TaskStats] | None = None,
        lines: JobLines | None = None,
    ) -> None:
        self._repository = repository
        self.worker_id = worker_id
        self.version = version
        self.lines = lines or JobLines(0)
        self._max_lease_losses = max_lease_losses
        self.active_runs = active_runs if active_runs is not None else {}
        self.stats = stats if stats is not None else {}
        self._task_of: dict[str, str] = {}

    async def run(self, envelope: JobEnvelope, body: Body, policy: RunPolicy) -> dict[str, Any]:
        """Claim the job in the ledger, run `body`, record the outcome; see the module docstring."""
        job_id = envelope.job_id
        self._task_of[job_id] = envelope.task
        try:
            return await self._run(envelope, body, policy)
        finally:
            self.active_runs.pop(job_id, None)
            self._task_of.pop(job_id, None)

    async def _run(self, envelope: JobEnvelope, body: Body, policy: RunPolicy) -> dict[str, Any]:
        job_id = envelope.job_id
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        claim = JobClaim(worker_id=self.worker_id, version=self.version, started_at=started)
        attempt = await self._repository.claim_job(job_id, claim)
        if attempt is None:
            taken = await self._not_claimed(envelope, started)
            if not isinstance(taken, int):
                return taken  # skipped or quarantined
            attempt = taken
        self.active_runs[job_id] = attempt
        self.lines.started(attempt)
        run = RunInfo(job_id=job_id, attempt=attempt, worker_id=self.worker_id, version=self.version)

        def outcome(status: JobStatus, **fields: Any) -> JobOutcome:
            return JobOutcome(
                status=status,
                finished_at=datetime.now(UTC),
                duration_ms=int((time.perf_counter() - t0) * 1000),
                **fields,
            )

        # The body under its timeout: running out of it is a failed try (`JobTimedOut`), which the
        # cancellation of a shutdown or an abort is not. (Inline, not a helper: the frames are per job.)
        deadline = asyncio.timeout(policy.timeout_s)
        try:
            try:
                async with deadline:
                    result = await body(run)
            except TimeoutError:
                if not deadline.expired():
                    raise  # the body's own TimeoutError: an error like any other
                raise JobTimedOut(f"run exceeded the job timeout of {policy.timeout_s:g} s") from None
        except asyncio.CancelledError:
            if deadline.expired():  # out of time, and cancelled again before the run ended
                await asyncio.shield(self._timed_out_while_cancelled(job_id, attempt, outcome, policy))
            else:
                interrupted = outcome(
                    JobStatus.INTERRUPTED,
                    interruption=True,
                    error_message="interrupted (worker stopping or job aborted)",
                )
                log.warning("job interrupted: it runs again elsewhere, no try used", attempt=attempt,
                            duration_ms=interrupted.duration_ms)  # fmt: skip
                await asyncio.shield(self._finish(job_id, attempt, interrupted))
            raise
        except StaleAttempt as exc:
            log.warning("run superseded by a newer attempt; stopping", reason=exc.message, attempt=attempt)
            raise JobFailed(exc.message, ErrorCategory.POLICY) from None
        except Retry as exc:  # arq's task API: the handler asks to run again after `defer`
            defer_s = exc.defer_score / 1000 if exc.defer_score else None
            retry = TransientError("the job asked to be retried (arq Retry)")
            raise await self._failed(job_id, attempt, outcome, policy, retry, defer_s=defer_s) from None
        except AppError as exc:
            raise await self._failed(job_id, attempt, outcome, policy, exc) from None
        except Exception as exc:
            message = f"unexpected {type(exc).__name__}"
            await self._finish(
                job_id,
                attempt,
                outcome(
                    JobStatus.FAILED,
                    app_failure=True,
                    error_category=ErrorCategory.PERMANENT,
                    error_message=message,
                ),
            )
            # type and place only: an exception's message may quote personal data
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{frame.filename}:{frame.lineno}" if frame else "?"
            detail = {"error": str(exc)} if isinstance(exc, RedisError) else {}  # never personal data
            log.error("job crashed", error_type=type(exc).__name__, where=where, attempt=attempt, **detail)
            raise JobFailed(message, ErrorCategory.PERMANENT) from None
        succeeded = outcome(JobStatus.SUCCEEDED, result=result)
        await self._finish(job_id, attempt, succeeded)
        self.lines.succeeded(attempt, succeeded.duration_ms)
        return result

    async def _failed(
        self,
        job_id: str,
        attempt: int,
        outcome: Callable[..., JobOutcome],
        policy: RunPolicy,
        exc: AppError,
        *,
        defer_s: float | None = None,
    ) -> Exception:
        """Record a failed run: queued for a retry when its category retries (or the job asked for
        one) and tries remain, else failed. What to raise to arq: its `Retry`, or `JobFailed`."""
        retries = defer_s is not None or exc.category in policy.retry.retry_on
        tries = await self._tries(job_id) if retries else 0
        if retries and tries < policy.max_tries:
            delay = policy.retry.delay_s(tries) if defer_s is None else defer_s
            failed = outcome(
                JobStatus.QUEUED, app_failure=True, error_category=exc.category, error_message=exc.message
            )
            await self._finish(job_id, attempt, failed)
            log.warning("job failed, will retry", error=exc.message, category=exc.category.value,
                        retry_in_s=delay, tries=tries, attempt=attempt)  # fmt: skip
            return Retry(defer=delay)
        message = f"{exc.message} (gave up after {tries} tries)" if retries else exc.message
        failed = outcome(
            JobStatus.FAILED, app_failure=True, error_category=exc.category, error_message=message
        )
        await self._finish(job_id, attempt, failed)
        if retries:
            log.warning("job failed: no try left", error=exc.message, category=exc.category.value,
                        tries=tries, attempt=attempt)  # fmt: skip
        else:
            log.warning("job failed", error=exc.message, category=exc.category.value, attempt=attempt)
        return JobFailed(exc.message, exc.category)

    async def refuse(self, job_id: str, reason: str) -> None:
        """Record a job the worker could not even start (payload expired or unreadable, function
        unknown to this worker) as failed, category permanent: listed, and retryable by an operator."""
        message = f"not started: {reason}"
        if await self._repository.fail_waiting_job(
            job_id, at=datetime.now(UTC), category=ErrorCategory.PERMANENT, message=message
        ):
            log.error("job refused before it started", job_id=job_id, reason=reason)

    async def _timed_out_while_cancelled(
        self, job_id: str, attempt: int, outcome: Callable[..., JobOutcome], policy: RunPolicy
    ) -> None:
        """A run past its deadline that did not end when cancelled, then cancelled again (a shutdown
        or an abort meanwhile): still a failed try (category timeout), never an interruption, or a
        run that overruns would come back forever without using its tries."""
        tries = await self._tries(job_id)
        message = f"run exceeded the job timeout of {policy.timeout_s:g} s and ignored its cancellation"
        status = JobStatus.QUEUED if tries < policy.max_tries else JobStatus.FAILED
        await self._finish(
            job_id,
            attempt,
            outcome(status, app_failure=True, error_category=ErrorCategory.TIMEOUT, error_message=message),
        )

    async def _not_claimed(self, envelope: JobEnvelope, at: datetime) -> int | dict[str, Any]:
        """The ledger refused the claim: the job is finished, cancelled, superseded or unknown
        (skip it), or still `running` under a run whose worker lost the lease (count the loss).
        An attempt when it turns out to be this delivery's to run after all."""
        job_id = envelope.job_id
        lost = await self._repository.record_lost_lease(job_id, at=at, max_losses=self._max_lease_losses)
        if lost is None:
            # Not running either: a run that was only slow, not dead, may have just ended as "will
            # run again" (queued, interrupted). Then it is this delivery's to run, not to skip.
            claim = JobClaim(worker_id=self.worker_id, version=self.version, started_at=datetime.now(UTC))
            attempt = await self._repository.claim_job(job_id, claim)
            if attempt is not None:
                return attempt
            if await self._repository.get_job(job_id) is None:
                # Not ours to count as done: put on the queue some other way than TaskService.
                self.count_refusal(envelope.task)
                log.error("job refused: it has no ledger record (enqueue it with TaskService.enqueue)")
                raise JobFailed(f"job {job_id} has no ledger record: refused", ErrorCategory.PERMANENT)
            log.warning("job skipped: cancelled, superseded or already finished in the ledger")
            return {"skipped": True}
        stats = self._stats_of(envelope.task)
        if lost.quarantined:
            stats.failed[ErrorCategory.QUARANTINED.value] = (
                stats.failed.get(ErrorCategory.QUARANTINED.value, 0) + 1
            )
            log.error(
                "job quarantined: its workers lost the lease while running it, again and again",
                lease_losses=lost.lease_losses,
                last_worker_id=lost.worker_id,
                category=ErrorCategory.QUARANTINED.value,
            )
            return {"quarantined": True, "lease_losses": lost.lease_losses, "last_worker_id": lost.worker_id}
        stats.retried += 1
        delay = lease_loss_delay_s(lost.lease_losses)
        log.warning(
            "lease lost mid-run by another worker (died or froze): re-delivered after a backoff",
            lease_losses=lost.lease_losses,
            last_worker_id=lost.worker_id,
            retry_in_s=delay,
        )
        raise Retry(defer=delay)

    def count_refusal(self, task: str) -> None:
        """A job refused before it ran (not enqueued through TaskService): a failure in the metrics."""
        failed = self._stats_of(task).failed
        failed[ErrorCategory.PERMANENT.value] = failed.get(ErrorCategory.PERMANENT.value, 0) + 1

    def _stats_of(self, task: str) -> TaskStats:
        return self.stats.get(task) or self.stats.setdefault(task, TaskStats())  # built once per task

    async def _tries(self, job_id: str) -> int:
        """This run counted: previous application failures + 1 (interruptions never count)."""
        record = await self._repository.get_job(job_id)
        return (record.app_failures if record else 0) + 1

    def _count(self, task: str, outcome: JobOutcome) -> None:
        stats = self._stats_of(task)
        stats.duration_s.observe(outcome.duration_ms / 1000)
        if outcome.status is JobStatus.SUCCEEDED:
            stats.succeeded += 1
        elif outcome.status is JobStatus.QUEUED:
            stats.retried += 1
        elif outcome.status is JobStatus.INTERRUPTED:
            stats.interrupted += 1
        else:
            category = outcome.error_category.value if outcome.error_category else "unknown"
            stats.failed[category] = stats.failed.get(category, 0) + 1

    async def _finish(self, job_id: str, attempt: int, outcome: JobOutcome) -> None:
        self._count(self._task_of.get(job_id, "unknown"), outcome)
        if not await self._repository.finish_job(job_id, attempt, outcome):
            log.warning(
                "ledger refused the outcome: attempt superseded", attempt=attempt, status=outcome.status
            )
