"""Queue management over the ledger (the source of truth) and the queue: info, cancel, retry,
cleanup and the failed-jobs view. The API routes and the CLI both call this one service."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import BaseModel

from src.application.ports import Repository
from src.application.services.task_service import TaskService
from src.domain.jobs import ErrorCategory, JobCount, JobRecord, JobStatus, QueueState, queue_key
from src.errors import Conflict, NotFound

log = structlog.get_logger(__name__)


class QueueInfo(BaseModel):
    name: str
    key: str
    length: int  # ready to run now
    deferred: int  # waiting for a retry delay
    in_progress: int
    failed: int
    finished: int
    cancelled: int
    interrupted: int
    oldest_queued_age_s: float | None


class FailedJobs(BaseModel):
    total: int
    by_category: dict[str, int]
    jobs: list[JobRecord]


class CleanupReport(BaseModel):
    ledger_records_deleted: int
    results_deleted: int
    older_than_s: float


class RetryReport(BaseModel):
    previous_job_id: str
    job_id: str
    status: str


def _count(counts: list[JobCount], queue: str, status: JobStatus) -> int:
    return sum(c.count for c in counts if c.queue == queue and c.status is status)


class QueueAdmin:
    """`queues`: the registry's (`src/jobs/registry.py`); a queue the ledger holds jobs of is listed
    too, so jobs of a queue no longer declared stay in sight."""

    def __init__(self, repository: Repository, tasks: TaskService, queues: Sequence[str] = ()) -> None:
        self._repository = repository
        self._tasks = tasks
        self._queues = tuple(queues)

    @property
    def repository(self) -> Repository:
        return self._repository

    async def info(self) -> list[QueueInfo]:
        counts = await self._repository.count_jobs()
        return [await self._queue_info(queue, counts) for queue in self._known(counts)]

    async def queue_info(self, name: str) -> QueueInfo:
        counts = await self._repository.count_jobs()
        known = self._known(counts)
        if name not in known:
            raise NotFound(f"queue {name} not found (queues: {', '.join(known)})")
        return await self._queue_info(name, counts)

    def _known(self, counts: list[JobCount]) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self._queues, *(c.queue for c in counts)]))

    async def _queue_info(self, queue: str, counts: list[JobCount]) -> QueueInfo:
        ready, deferred, oldest_ms = await self._tasks.queue_depth(queue)
        running = _count(counts, queue, JobStatus.RUNNING)
        return QueueInfo(
            name=queue,
            key=queue_key(queue),
            length=ready,
            # a running job stays on the queue until it finishes, scored with its lease's deadline;
            # jobs whose worker died count as ready once their leases lapse, and as running in the
            # ledger until they run again, so `deferred` is low by as many meanwhile
            deferred=max(0, deferred - running),
            in_progress=running,
            failed=_count(counts, queue, JobStatus.FAILED),
            finished=_count(counts, queue, JobStatus.SUCCEEDED),
            cancelled=_count(counts, queue, JobStatus.CANCELLED),
            interrupted=_count(counts, queue, JobStatus.INTERRUPTED),
            oldest_queued_age_s=None if oldest_ms is None else round(time.time() - oldest_ms / 1000, 3),
        )

    async def failed(self, *, limit: int = 50, before: tuple[datetime, str] | None = None) -> FailedJobs:
        """Failed jobs, newest first (after `before`, a record's enqueued_at and id, when given)."""
        counts = [c for c in await self._repository.count_jobs() if c.status is JobStatus.FAILED]
        by_category: dict[str, int] = {category.value: 0 for category in ErrorCategory}
        for c in counts:
            key = c.error_category.value if c.error_category else "unknown"
            by_category[key] = by_category.get(key, 0) + c.count
        jobs = await self._repository.list_jobs(status=JobStatus.FAILED, limit=limit, before=before)
        return FailedJobs(total=sum(c.count for c in counts), by_category=by_category, jobs=jobs)

    async def _record(self, job_id: str) -> JobRecord:
        record = await self._repository.get_job(job_id)
        if record is None:
            raise NotFound(f"job {job_id} not found")
        return record

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job (taken off the queue) or a running one (aborted; its later writes are
        refused by the ledger). A finished job cannot be cancelled: Conflict."""
        record = await self._record(job_id)
        if record.status.terminal:
            raise Conflict(f"job {job_id} is already {record.status.value}; nothing to cancel")
        if not await self._repository.cancel_job(job_id, at=datetime.now(UTC)):
            raise Conflict(f"job {job_id} finished while being cancelled")
        if not await self._tasks.remove_queued(job_id, record.queue) or record.status is JobStatus.RUNNING:
            await self._tasks.abort(job_id)
        log.warning("job cancelled by operator", job_id=job_id, was=record.status.value)
        return await self._record(job_id)

    async def retry(self, job_id: str, *, request_id: str | None) -> RetryReport:
        """Run a job again, resuming at its checkpoint: a failed, cancelled or interrupted one as the
        next generation of its logical key (a result arq still caches under the old id never blocks
        it); a queued one whose arq job is gone (taken by a consumer outside the fleet, lost with
        Redis) at once instead of at the reconciler's next pass. A job already replaced by a live
        later generation answers with that one (`already_queued`)."""
        record = await self._record(job_id)
        if record.status is JobStatus.SUCCEEDED:
            raise Conflict(f"job {job_id} succeeded; nothing to retry")
        latest = await self._repository.latest_job(record.logical_key)
        if latest is not None and latest.job_id != job_id:  # a later generation took over
            if latest.status is JobStatus.SUCCEEDED:
                raise Conflict(
                    f"job {job_id} was replaced by {latest.job_id}, which succeeded; nothing to retry"
                )
            if not latest.status.terminal:
                return RetryReport(previous_job_id=job_id, job_id=latest.job_id, status="already_queued")
        if record.status is JobStatus.RUNNING:
            raise Conflict(
                f"job {job_id} is running; if its worker died, it is taken over when its lease lapses"
            )
        state = await self._tasks.queue_state(job_id, record.queue)
        if not record.status.terminal:  # queued or interrupted
            if await self._live(state):
                raise Conflict(f"job {job_id} is still on the queue; it will run by itself")
            result = await self._tasks.requeue(record, state)
        else:
            result = await self._tasks.enqueue_next_generation(record, request_id=request_id)
        log.info("job retried", job_id=job_id, next_job_id=result.job_id, was=record.status.value)
        return RetryReport(previous_job_id=job_id, job_id=result.job_id, status=result.status)

    async def _live(self, state: QueueState) -> bool:
        """The job's arq job is waiting or held by a worker of ours (a stranger's hold does not count)."""
        if state.lease_holder is not None:
            return bool(await self._repository.known_workers([state.lease_holder]))
        return state.queued

    async def cleanup(self, *, older_than_s: float, limit: int = 10_000) -> CleanupReport:
        """Delete ledger records and cached results of jobs that finished more than `older_than_s`
        ago; queued, running and interrupted jobs are never touched."""
        try:
            before = datetime.now(UTC) - timedelta(seconds=older_than_s)
        except OverflowError:  # a window longer than the calendar: everything finished is older
            before = datetime.min.replace(tzinfo=UTC)
        deleted = await self._repository.delete_finished_jobs(before, limit=limit)
        results = await self._tasks.delete_results(deleted)
        if deleted:
            log.info("cleanup", ledger_records=len(deleted), results=results)
        return CleanupReport(
            ledger_records_deleted=len(deleted), results_deleted=results, older_than_s=older_than_s
        )
