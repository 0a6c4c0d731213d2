"""Queue views: one job's status from the ledger, with what Redis holds for it."""

from __future__ import annotations

from fastapi import APIRouter

from src.api.deps import CallerDep, TaskServiceDep
from src.api.schemas import JobStatusResponse

router = APIRouter(prefix="/api/v1/queue", tags=["queue"])


@router.get("/job/{job_id}", response_model=JobStatusResponse)
async def get_job(job_id: str, tasks: TaskServiceDep, _: CallerDep) -> JobStatusResponse:
    """Status, attempts, worker, version, timings, progress and result of a job."""
    view = await tasks.get_job(job_id)
    r = view.record
    return JobStatusResponse(
        job_id=r.job_id,
        task=r.task.value,
        queue=r.queue.value,
        status=r.status,
        attempt=r.attempt,
        app_failures=r.app_failures,
        interruptions=r.interruptions,
        worker_id=r.worker_id,
        version=r.version,
        request_id=r.envelope.request_id,
        batch_id=r.envelope.batch_id,
        enqueued_at=r.enqueued_at,
        started_at=r.started_at,
        heartbeat_at=r.heartbeat_at,
        finished_at=r.finished_at,
        duration_ms=r.duration_ms,
        progress=r.progress,
        error_category=r.error_category,
        error_message=r.error_message,
        result=r.result,
        in_queue=view.queue_state.queued,
        in_progress_in_queue=view.queue_state.in_progress,
    )
