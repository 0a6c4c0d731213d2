"""The API's bodies as typed models. Unknown members are kept (`extra="allow"`), so a newer API
that adds a field never breaks an older client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "superseded"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class NewAppointment(Model):
    paciente: str
    documento: str
    endereco: str
    data_hora: datetime | str = Field(description="ISO 8601; without an offset: the API's APP_TIMEZONE")
    telefone: str | None = None
    email: str | None = None


class CreatedAppointment(Model):
    appointment_id: str
    job_id: str
    enqueue_status: str


class RowError(Model):
    row: int
    column: str
    message: str


class ImportReport(Model):
    batch_id: str
    accepted: int
    rejected: int
    blank: int = 0
    errors: list[RowError]
    job_ids: list[str]


class Appointment(Model):
    id: str
    paciente: str
    documento: str
    endereco: str
    data_hora: datetime
    batch_id: str | None = None
    normalization_status: str
    documento_normalizado: dict[str, Any] | None = None
    endereco_normalizado: dict[str, Any] | None = None


class BatchProgress(Model):
    batch_id: str
    filename: str
    created_at: datetime
    total: int
    done: int
    failed: int
    pending: int
    rejected: int
    finished: bool


class JobProgress(Model):
    done: int = 0
    total: int | None = None


class Job(Model):
    """A job's status (`GET /api/v1/queue/job/{job_id}`)."""

    job_id: str
    task: str
    queue: str
    status: str
    attempt: int
    worker_id: str | None = None
    version: str | None = None
    request_id: str | None = None
    batch_id: str | None = None
    enqueued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    error_category: str | None = None
    error_message: str | None = None
    result: dict[str, Any] | None = None
    superseded_by: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobRecord(Model):
    """A ledger record, as the job lists answer it."""

    job_id: str
    logical_key: str
    generation: int
    task: str
    queue: str
    status: str
    attempt: int
    worker_id: str | None = None
    version: str | None = None
    enqueued_at: datetime
    finished_at: datetime | None = None
    error_category: str | None = None
    error_message: str | None = None
    superseded_by: str | None = None


class RetryReport(Model):
    previous_job_id: str
    job_id: str
    status: str


class CleanupReport(Model):
    ledger_records_deleted: int
    results_deleted: int
    older_than_s: float


class QueueInfo(Model):
    name: str
    length: int
    deferred: int
    in_progress: int
    failed: int
    finished: int
    oldest_queued_age_s: float | None = None


class Check(Model):
    name: str
    level: str
    message: str


class Health(Model):
    status: str
    checks: list[Check]
    queues: dict[str, int]
    alarms: list[dict[str, Any]] = []


class WorkerView(Model):
    worker: dict[str, Any]
    heartbeat_age_s: float
    beat_overdue: bool
    leases: int
    version_skew: bool
    fenced: bool


class Page(Model, Generic[T]):
    """One page of a list; `next_cursor` is None on the last page; `total` counts all pages."""

    items: list[T]
    next_cursor: str | None
    total: int


class FailedJobsPage(Page[JobRecord]):
    by_category: dict[str, int]


class WorkersPage(Page[WorkerView]):
    api_version: str
    versions: list[str]
    allowed_versions: list[str]
    skew: bool


class Problem(Model):
    """An RFC 9457 problem, as the API answers every error."""

    type: str = "about:blank"
    title: str = ""
    status: int
    detail: str = ""
    instance: str | None = None
    category: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None
