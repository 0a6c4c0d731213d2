"""Workers as the registry sees them, and the data fingerprint that pairs API and workers (pure)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class WorkerState(StrEnum):
    OK = "ok"  # claiming jobs
    FENCED = "fenced"  # its code version is not allowed: claims nothing, fails its health check
    MISMATCH = "mismatch"  # its store or Redis database differs from the API's: claims nothing
    WAITING = "waiting"  # no API has published the data fingerprint yet: claims nothing
    DRAINING = "draining"  # stopping: finishes running jobs, claims nothing

    @property
    def healthy(self) -> bool:
        return self in (WorkerState.OK, WorkerState.DRAINING)


class WorkerCounters(BaseModel):
    complete: int = 0
    failed: int = 0
    retried: int = 0


class WorkerRecord(BaseModel):
    """One live worker process, refreshed every beat and expiring after three missed beats."""

    worker_id: str
    hostname: str
    pid: int
    version: str
    queue: str
    tasks: list[str]
    fingerprint: str
    started_at: datetime
    last_beat_at: datetime
    state: WorkerState = WorkerState.OK
    reason: str | None = None
    counters: WorkerCounters = Field(default_factory=WorkerCounters)
    current_jobs: list[str] = Field(default_factory=list)
    max_jobs: int = 0
    rss_mb: float | None = None


def data_fingerprint(redis_db: int, store_identity: str) -> str:
    """A short, secret-free digest of which data a process works on (Redis db + store identity)."""
    digest = hashlib.sha256(f"redis-db={redis_db};store={store_identity}".encode()).hexdigest()
    return digest[:16]
