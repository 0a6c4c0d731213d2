"""The reconciler: nothing stays "running" forever and nothing accepted is lost.

Runs on the maintenance queue (an arq cron). The ledger is the truth; Redis only says whether a
worker of ours still has the job. A ledger record that looks stale is checked against Redis:
- still on the queue (waiting, or running under the lease of a worker of ours) → left alone;
- running, its heartbeat stale and its lease gone → its worker died: a lost lease, counted
  (quarantined at `JOB_MAX_LEASE_LOSSES`), and the job goes back on the queue;
- queued or interrupted, but its arq job gone, or held or finished by a consumer outside the fleet
  (an in-progress key or a result that no worker of ours wrote) → enqueued again: under its own id
  when nothing blocks it, else as the next generation, which supersedes it. A stranger's result is
  an intrusion: the generation it took is recorded `failed` with category `foreign_consumer`, and
  the result's content, so doctor, `/api/v1/queue/health`, the dashboard and the metrics show it.
Only a worker registered in the store counts as ours: a Redis wipe does not make it a stranger.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel

from src.application.ports import Repository
from src.application.services.task_service import TaskService
from src.domain.foreign_results import MAX_BYTES, describe_foreign_result
from src.domain.jobs import ErrorCategory, JobRecord, JobStatus, QueueState
from src.errors import TransientError

log = structlog.get_logger(__name__)


class ReconcileReport(BaseModel):
    examined: int = 0
    lost_leases_requeued: int = 0  # running jobs whose worker died, back on the queue
    vanished_requeued: int = 0  # waiting jobs whose arq job was gone, enqueued again
    foreign_consumed: int = 0  # jobs a consumer outside the fleet took, run again as a new generation
    quarantined: int = 0
    left_alone: int = 0
    errors: int = 0  # records that could not be reconciled this pass (logged; tried again next pass)


class Reconciler:
    def __init__(
        self,
        repository: Repository,
        tasks: TaskService,
        *,
        stale_after_s: float,
        grace_s: float,
        max_lease_losses: int,
        limit: int = 5000,
    ) -> None:
        self._repository = repository
        self._tasks = tasks
        self._stale_after = timedelta(seconds=stale_after_s)
        self._grace = timedelta(seconds=grace_s)
        self._max_lease_losses = max_lease_losses
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
        holders = {s.lease_holder for s in states.values() if s.lease_holder is not None}
        ours = await self._repository.known_workers(holders) if holders else set()
        for record in records:
            state = states[record.job_id]
            foreign_hold = state.lease_holder is not None and state.lease_holder not in ours
            if not foreign_hold and (state.queued or state.lease_holder is not None):
                report.left_alone += 1
                continue
            try:
                await self._reconcile(record, state, foreign_hold, now, report)
            except TransientError:
                raise  # the store is down: the whole pass is retried at the next tick
            except Exception as exc:  # noqa: BLE001 - one odd record must never stop the others
                report.errors += 1
                log.error("could not reconcile a job; the others go on", job_id=record.job_id,
                          error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        if report.examined != report.left_alone:
            log.warning("reconciled", **report.model_dump())
        return report

    async def _reconcile(
        self, record: JobRecord, state: QueueState, foreign_hold: bool, now: datetime, report: ReconcileReport
    ) -> None:
        running = record.status is JobStatus.RUNNING
        if running and not await self._lost_lease(record, now, report):
            return
        # A result under a waiting job's id: no run of ours wrote it (ours record the ledger outcome
        # first, and arq's own timeout puts the job back). Under a running job's it may be an older
        # run's, so that job only goes on under another generation.
        if foreign_hold or (state.has_result and not running):
            await self._foreign_consumed(record, state, now, report)
            return
        result = await self._tasks.requeue(record, state)
        if not running:
            report.vanished_requeued += 1
            log.warning("job vanished from the queue: enqueued again", job_id=record.job_id,
                        enqueued_as=result.job_id, status=result.status)  # fmt: skip

    async def _lost_lease(self, record: JobRecord, now: datetime, report: ReconcileReport) -> bool:
        """A running job nobody holds: count the lost lease. True when it is to be enqueued again."""
        lost = await self._repository.record_lost_lease(
            record.job_id, at=now, max_losses=self._max_lease_losses, attempt=record.attempt
        )
        if lost is None:
            return False  # the run moved on meanwhile
        if lost.quarantined:
            report.quarantined += 1
            log.error("job quarantined: its workers lost the lease while running it, again and again",
                      job_id=record.job_id, lease_losses=lost.lease_losses, last_worker_id=lost.worker_id,
                      category=ErrorCategory.QUARANTINED.value)  # fmt: skip
            return False
        report.lost_leases_requeued += 1
        log.warning("stale running job: lease lost, enqueued again", job_id=record.job_id,
                    worker_id=record.worker_id, heartbeat_at=str(record.heartbeat_at),
                    cursor=record.progress.cursor, lease_losses=lost.lease_losses)  # fmt: skip
        return True

    async def _foreign_consumed(
        self, record: JobRecord, state: QueueState, now: datetime, report: ReconcileReport
    ) -> None:
        """A consumer outside the fleet holds or finished this job: record the intrusion with what can
        be known, and run the job again as the next generation."""
        evidence: dict[str, Any] = {"detected_at": now.isoformat(), "queue": record.queue}
        if state.lease_holder is not None:
            evidence["held_by"] = state.lease_holder[:100]
        found = await self._tasks.result_head(record.job_id, MAX_BYTES) if state.has_result else None
        if found is not None:
            evidence["foreign_result"] = describe_foreign_result(*found)
        what = "holds it" if found is None else "took it and stored its own result"
        message = (
            f"taken off the queue by a consumer outside the fleet, which {what} (no registered worker "
            "of ours wrote it): run again as the next generation"
        )
        failed = await self._repository.fail_waiting_job(
            record.job_id, at=now, category=ErrorCategory.FOREIGN_CONSUMER, message=message, result=evidence
        )
        if not failed:
            return  # a run of ours claimed it meanwhile
        successor = await self._tasks.enqueue_next_generation(record)
        report.foreign_consumed += 1
        log.error("intrusion: a consumer outside the fleet took a job from our queue", job_id=record.job_id,
                  next_job_id=successor.job_id, category=ErrorCategory.FOREIGN_CONSUMER.value,
                  **{k: v for k, v in evidence.items() if k != "detected_at"})  # fmt: skip
