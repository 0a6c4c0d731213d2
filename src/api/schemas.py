"""Response bodies of the API (requests reuse the application's input models)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from src.api.pagination import Page
from src.application.services.task_service import JobView
from src.domain.jobs import ErrorCategory, JobProgress, JobRecord, JobStatus
from src.domain.workers import WorkerRecord


class JobStatusResponse(BaseModel):
    job_id: str
    task: str
    queue: str
    status: JobStatus | Literal["scheduled"]  # scheduled: queued, with its time (`not_before`) ahead
    not_before: datetime | None
    attempt: int
    app_failures: int
    interruptions: int
    lease_losses: int
    worker_id: str | None
    version: str | None
    request_id: str | None
    batch_id: str | None
    enqueued_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    progress: JobProgress
    error_category: ErrorCategory | None
    error_message: str | None
    result: dict[str, Any] | None
    in_queue: bool
    in_progress_in_queue: bool
    superseded_by: str | None  # the later generation this job goes on as (follow it)


def job_response(view: JobView) -> JobStatusResponse:
    r = view.record
    return JobStatusResponse(
        job_id=r.job_id,
        task=r.task,
        queue=r.queue,
        status="scheduled" if r.scheduled(datetime.now(UTC)) else r.status,
        not_before=r.envelope.not_before,
        attempt=r.attempt,
        app_failures=r.app_failures,
        interruptions=r.interruptions,
        lease_losses=r.lease_losses,
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
        superseded_by=r.superseded_by,
    )


class WorkerView(BaseModel):
    worker: WorkerRecord
    heartbeat_age_s: float
    beat_overdue: bool  # no beat for over two heartbeat intervals: its `state` may be out of date
    leases: int  # jobs it holds a lease on now (its record's `current_jobs` is as of its last beat)
    version_skew: bool  # its version differs from this API's
    fenced: bool


class WorkersResponse(Page[WorkerView]):
    """A page of the live workers (by worker id); the other members are about the whole fleet."""

    api_version: str
    versions: list[str]  # versions of live workers
    allowed_versions: list[str]
    skew: bool  # more than one version is consuming, or workers differ from the API


class FailedJobsPage(Page[JobRecord]):
    """A page of the failed jobs, newest first; `total` and `by_category` count them all."""

    by_category: dict[str, int]


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    redis: str
    store: str
