"""Queue management: info per queue, one job's status, cancel, retry, cleanup, failed jobs, health."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from src.api.deps import (
    CallerDep,
    HealthDep,
    OperatorDep,
    QueueAdminDep,
    RepositoryDep,
    RequestIdDep,
    SettingsDep,
    TaskServiceDep,
)
from src.api.pagination import CursorQuery, Page, decode_cursor, keyset_page, page_by_id, time_position
from src.api.problems import AUTHENTICATED, problem_responses
from src.api.schemas import FailedJobsPage, JobStatusResponse, job_response
from src.application.services.health import Health
from src.application.services.queue_admin import CleanupReport, QueueInfo, RetryReport
from src.domain.jobs import JobRecord, JobStatus

MAX_WAIT_S = 60.0  # a long poll never outlives common proxy timeouts
router = APIRouter(prefix="/api/v1/queue", tags=["queue"], responses=problem_responses(*AUTHENTICATED))
ONE_JOB = problem_responses(404)
CHANGE_JOB = problem_responses(404, 409, s409="the job's state forbids this (`detail` says why)")
MAX_RETENTION_S = 10 * 366 * 24 * 3600  # ten years


@router.get("/info", response_model=Page[QueueInfo])
async def queues_info(
    admin: QueueAdminDep,
    _: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: CursorQuery = None,
) -> Page[QueueInfo]:
    """Every queue (by name): length, deferred, in progress, failed, finished, oldest queued age."""
    return page_by_id(await admin.info(), lambda q: q.name, kind="queues", limit=limit, cursor=cursor)


@router.get("/info/{queue_name}", response_model=QueueInfo, responses=problem_responses(404))
async def queue_info(queue_name: str, admin: QueueAdminDep, _: CallerDep) -> QueueInfo:
    return await admin.queue_info(queue_name)


@router.get("/failed", response_model=FailedJobsPage)
async def failed_jobs(
    admin: QueueAdminDep,
    _: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: CursorQuery = None,
) -> FailedJobsPage:
    """Failed jobs, most recent first, with counts by error category."""
    before = time_position(decode_cursor(cursor, "failed", {})) if cursor else None
    failed = await admin.failed(limit=limit + 1, before=before)
    page = keyset_page(
        failed.jobs, limit=limit, total=failed.total, kind="failed", filters={},
        at="enqueued_at", key="job_id",
    )  # fmt: skip
    return FailedJobsPage(**dict(page), by_category=failed.by_category)


@router.get("/jobs", response_model=Page[JobRecord])
async def list_jobs(
    repository: RepositoryDep,
    _: CallerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: CursorQuery = None,
) -> Page[JobRecord]:
    """Ledger records, most recently enqueued first, optionally of one status (e.g. running);
    `total` counts every record with that status."""
    filters = {"status": status.value if status else None}
    before = time_position(decode_cursor(cursor, "jobs", filters)) if cursor else None
    rows = await repository.list_jobs(status=status, limit=limit + 1, before=before)
    total = sum(c.count for c in await repository.count_jobs() if status is None or c.status is status)
    return keyset_page(
        rows, limit=limit, total=total, kind="jobs", filters=filters, at="enqueued_at", key="job_id"
    )


@router.get("/job/{job_id}", response_model=JobStatusResponse, responses=ONE_JOB)
async def get_job(
    job_id: str,
    tasks: TaskServiceDep,
    _: CallerDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            allow_inf_nan=False,
            description="seconds to wait for the job to finish before answering (long poll); 0: answer now",
        ),
    ] = 0,
) -> JobStatusResponse:
    """Status, attempts, worker, version, timings, progress, error category and result of a job.
    With `wait`, the answer comes as soon as the job is final, or after `wait` seconds with its
    current status (no Redis connection is held per waiting request)."""
    if wait > 0:
        with contextlib.suppress(TimeoutError):
            await tasks.wait_for_result(job_id, wait)
    return job_response(await tasks.get_job(job_id))


@router.post("/job/{job_id}/cancel", response_model=JobStatusResponse, responses=CHANGE_JOB)
async def cancel_job(
    job_id: str, admin: QueueAdminDep, tasks: TaskServiceDep, _: OperatorDep
) -> JobStatusResponse:
    """Cancel a queued job, or abort a running one; 409 when it already finished."""
    await admin.cancel(job_id)
    return job_response(await tasks.get_job(job_id))


@router.post("/job/{job_id}/retry", response_model=RetryReport, status_code=202, responses=CHANGE_JOB)
async def retry_job(
    job_id: str,
    admin: QueueAdminDep,
    request_id: RequestIdDep,
    _: OperatorDep,
    request: Request,
    response: Response,
) -> RetryReport:
    """Run a failed, cancelled or interrupted job again under the next generation of its id
    (`Location`: the new job)."""
    report = await admin.retry(job_id, request_id=request_id)
    response.headers["Location"] = request.app.url_path_for("get_job", job_id=report.job_id)
    return report


@router.post("/cleanup", response_model=CleanupReport)
async def cleanup(
    admin: QueueAdminDep,
    settings: SettingsDep,
    _: OperatorDep,
    older_than_s: Annotated[
        float | None,
        Query(ge=0, le=MAX_RETENTION_S, allow_inf_nan=False, description="default: ARQ_KEEP_RESULT"),
    ] = None,
) -> CleanupReport:
    """Delete ledger records and results of jobs finished longer ago than the retention window."""
    return await admin.cleanup(
        older_than_s=settings.arq_keep_result if older_than_s is None else older_than_s
    )


@router.get("/health", response_model=Health)
async def queue_health(health: HealthDep, _: CallerDep) -> Health:
    """The health model (docs/operations.md, Health): Redis writable, the store, a consumer for each
    queue with work, a maintenance worker, the LLM, workers lost, stuck jobs, and the alarms of the
    last hour (intrusions, quarantines, timeouts). `status` is `ok`, `degraded` (a fleet problem:
    `checks` says which) or `down` (this API cannot accept work)."""
    return await health.check()
