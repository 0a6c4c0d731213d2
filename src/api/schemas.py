"""Response bodies of the API (requests reuse the application's input models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from src.domain.jobs import ErrorCategory, JobProgress, JobStatus


class JobStatusResponse(BaseModel):
    job_id: str
    task: str
    queue: str
    status: JobStatus
    attempt: int
    app_failures: int
    interruptions: int
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


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    redis: str
    store: str
