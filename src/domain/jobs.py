"""The job protocol shared by the API and the worker (pure, no I/O).

Queue names carry a protocol version, so a worker of another protocol, or a plain arq worker on
the default `arq:queue`, never sees our jobs. Job ids are a logical key plus a generation, so a
retry or a re-enqueue is never refused by a result arq still caches under the previous id.
The envelope carries ids only: patient data stays in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = "v1"


# The template's two queues. A job's queue is any name its registry entry gives (`src/jobs/registry.py`);
# these two are named here because the product relies on them: jobs go to `normalization` unless their
# entry says otherwise, and the maintenance worker runs the reconciler.
DEFAULT_QUEUE = "normalization"
MAINTENANCE_QUEUE = "maintenance"


def queue_key(queue: str) -> str:
    """A queue's qualified name, e.g. `jobs:v1:normalization`: what worker records and the API name
    it by (and its sorted set's key; the keys around it are in src/infrastructure/queue/keys.py)."""
    return f"jobs:{PROTOCOL_VERSION}:{queue}"


def job_id_for(logical_key: str, generation: int) -> str:
    """`normalize:{appointment_id}` + generation 2 → `normalize:{appointment_id}:2`."""
    return f"{logical_key}:{generation}"


def split_job_id(job_id: str) -> tuple[str, int]:
    """Inverse of `job_id_for`; raises ValueError for ids that are not ours."""
    logical_key, _, generation = job_id.rpartition(":")
    if not logical_key or not generation.isdigit():
        raise ValueError(f"not a job id of this protocol: {job_id!r}")
    return logical_key, int(generation)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    # Replaced by the next generation of its logical key (`superseded_by`): it can never be
    # claimed, heartbeaten or finished again, so only the current generation ever runs.
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUPERSEDED})


class ErrorCategory(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    POLICY = "policy"
    TIMEOUT = "timeout"  # a run exceeded ARQ_JOB_TIMEOUT: an application failure, retried while tries remain
    QUARANTINED = "quarantined"  # its workers lost the lease JOB_MAX_LEASE_LOSSES times (a crash loop)
    FOREIGN_CONSUMER = "foreign_consumer"  # taken off our queue by a consumer outside the fleet


class JobEnvelope(BaseModel):
    """The only argument of every task: ids and tracing, never personal data."""

    model_config = ConfigDict(frozen=True)

    task: str  # a job name of the registry (src/jobs/registry.py)
    logical_key: str
    generation: int = 1
    ids: dict[str, str | int] = Field(default_factory=dict)
    request_id: str | None = None
    batch_id: str | None = None
    producer_version: str = "unknown"
    # When it may run (`TaskService.enqueue(defer_by=…, defer_until=…)`); None: at once. It travels
    # with the job, so a job the reconciler puts back keeps its time.
    not_before: datetime | None = None

    @property
    def job_id(self) -> str:
        return job_id_for(self.logical_key, self.generation)


class JobProgress(BaseModel):
    done: int = 0
    total: int = 0
    cursor: int | None = None


class JobRecord(BaseModel):
    """One ledger record per job id: the source of truth for a job's status.

    `attempt` is the fencing token: every claim increments it, and every later write of that run
    is conditioned on it, so a paused-then-resumed zombie cannot overwrite newer results.
    """

    job_id: str
    logical_key: str
    generation: int
    task: str
    queue: str
    status: JobStatus = JobStatus.QUEUED
    attempt: int = 0
    app_failures: int = 0
    interruptions: int = 0
    lease_losses: int = 0  # runs whose worker stopped renewing the lease (died, froze) before an outcome
    envelope: JobEnvelope
    worker_id: str | None = None
    version: str | None = None
    enqueued_at: datetime
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    error_category: ErrorCategory | None = None
    error_message: str | None = None
    result: dict[str, Any] | None = None
    superseded_by: str | None = None  # the job id of the generation that replaced this one

    def scheduled(self, now: datetime) -> bool:
        """Queued with its time to run (`not_before`) still ahead: shown as `scheduled`."""
        when = self.envelope.not_before
        return self.status is JobStatus.QUEUED and when is not None and when > now


# JobClaim and JobOutcome are dataclasses, not pydantic models: a worker builds two per job from
# values it made itself (nothing to validate), in about a microsecond each instead of ~8.


@dataclass(frozen=True, slots=True, kw_only=True)
class JobClaim:
    """What a worker records when it starts a run of a job."""

    worker_id: str
    version: str
    started_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutcome:
    """How a run ended. `status` QUEUED means "will be retried" (a transient failure)."""

    status: JobStatus
    finished_at: datetime
    duration_ms: int
    error_category: ErrorCategory | None = None
    error_message: str | None = None
    result: dict[str, Any] | None = None
    app_failure: bool = False
    interruption: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LostLease:
    """What the ledger did with a running job whose worker lost the lease: the run is fenced off
    (`attempt` moved on) and the job is either `QUEUED` again, for a re-delivery with backoff, or
    `FAILED` in quarantine once `lease_losses` reached the limit. `worker_id` held the lost lease."""

    status: JobStatus
    attempt: int
    lease_losses: int
    worker_id: str | None

    @property
    def quarantined(self) -> bool:
        return self.status is JobStatus.FAILED


class QueueState(BaseModel):
    """What the queue (Redis) holds for a job, next to the ledger's record."""

    queued: bool  # on the queue: waiting, deferred, or running under a lease
    in_progress: bool  # a lease (or a stranger's in-progress key) holds it
    has_result: bool  # arq's result key exists (whoever wrote it)
    has_payload: bool = False  # arq's job key exists
    lease_holder: str | None = None  # the in-progress key's value: one of our worker ids, or not


class JobCount(BaseModel):
    """Ledger records grouped by queue, status and error category."""

    queue: str
    status: JobStatus
    error_category: ErrorCategory | None = None
    count: int
    oldest_enqueued_at: datetime | None = None
