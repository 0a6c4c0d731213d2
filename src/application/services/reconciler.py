"""The reconciler: nothing stays "running" forever and nothing accepted is lost.

Runs on the maintenance queue (an arq cron). For each ledger record that looks stale:
- running, heartbeat older than the cut-off, and no worker holds its lease any more → recorded as
  interrupted and re-enqueued under the next generation, carrying its checkpoint (the cursor);
- queued or interrupted, but its arq job vanished (Redis restarted without persistence, or the
  enqueue itself failed) → enqueued again under the same id.
A job whose lease is held, or which is still on the queue, is left alone: a worker has it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from pydantic import BaseModel

from src.application.ports import Repository
from src.application.services.task_service import TaskService
from src.domain.jobs import JobOutcome, JobRecord, JobStatus

log = structlog.get_logger(__name__)


class ReconcileReport(BaseModel):
    examined: int = 0
    interrupted_requeued: int = 0
    vanished_requeued: int = 0
    left_alone: int = 0


class Reconciler:
    def __init__(
        self,
        repository: Repository,
        tasks: TaskService,
        *,
        stale_after_s: float,
        grace_s: float,
        limit: int = 5000,
    ) -> None:
        self._repository = repository
        self._tasks = tasks
        self._stale_after = timedelta(seconds=stale_after_s)
        self._grace = timedelta(seconds=grace_s)
        self._limit = limit

    async def run(self) -> ReconcileReport:
        now = datetime.now(UTC)
        records = await self._repository.find_stale_jobs(
            running_heartbeat_before=now - self._stale_after,
            waiting_enqueued_before=now - self._grace,
            limit=self._limit,
        )
        report = ReconcileReport(examined=len(records))
        states = await self._tasks.queue_states([(r.job_id, r.queue) for r in records])
        for record in records:
            state = states[record.job_id]
            if state.in_progress or state.queued:
                report.left_alone += 1
            elif record.status is JobStatus.RUNNING:
                if await self._requeue_next_generation(record, now):
                    report.interrupted_requeued += 1
            elif not state.has_result:
                await self._tasks.enqueue_many([record.envelope], record.queue)
                report.vanished_requeued += 1
                log.warning("job vanished from the queue: enqueued again", job_id=record.job_id)
            else:
                report.left_alone += 1
        if report.interrupted_requeued or report.vanished_requeued:
            log.warning("reconciled", **report.model_dump())
        return report

    async def _requeue_next_generation(self, record: JobRecord, now: datetime) -> bool:
        outcome = JobOutcome(
            status=JobStatus.INTERRUPTED,
            finished_at=now,
            duration_ms=int((now - (record.started_at or now)).total_seconds() * 1000),
            error_message=f"no heartbeat since {record.heartbeat_at} from worker {record.worker_id}",
            interruption=True,
        )
        if not await self._repository.finish_job(record.job_id, record.attempt, outcome):
            return False  # the run moved on meanwhile
        successor = record.envelope.model_copy(update={"generation": record.generation + 1})
        await self._tasks.enqueue_many([successor], record.queue, progress=record.progress)
        log.warning(
            "stale running job interrupted and re-enqueued",
            job_id=record.job_id,
            next_job_id=successor.job_id,
            worker_id=record.worker_id,
            cursor=record.progress.cursor,
        )
        return True
