"""Workers as the registry sees them, and the data fingerprint that pairs API and workers (pure)."""

from __future__ import annotations

import hashlib
from bisect import bisect_left
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


DURATION_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Histogram(BaseModel):
    """A Prometheus-style histogram a worker publishes with its heartbeat (counts per upper bound)."""

    bounds: list[float] = Field(default_factory=lambda: list(DURATION_BUCKETS_S))
    counts: list[int] = Field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))  # last: +Inf
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        index = bisect_left(self.bounds, value)  # the first bound >= value; len(bounds): +Inf
        self.counts[index] += 1
        self.total += value
        self.count += 1


class TaskStats(BaseModel):
    """Outcomes of one task on one worker since it started."""

    succeeded: int = 0
    failed: dict[str, int] = Field(default_factory=dict)  # by error category
    retried: int = 0
    interrupted: int = 0
    duration_s: Histogram = Field(default_factory=Histogram)


class BreakerState(StrEnum):
    """The LLM's circuit breaker: closed (calls go out), open (none do: the rules answer at once),
    half_open (one probe call is out; its outcome closes or opens the circuit again)."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class LLMStats(BaseModel):
    calls: int = 0
    llm_used: int = 0
    fallbacks: dict[str, int] = Field(default_factory=dict)  # by reason
    in_flight: int = 0
    max_in_flight: int = 0
    latency_s: Histogram = Field(default_factory=Histogram)
    # The last few minutes (`recent_window_s`): addresses asked of the LLM, and how many of them fell
    # back to the rules because the LLM failed or its answer was refused (empty input not counted).
    recent_window_s: int = 0
    recent_asked: int = 0
    recent_fallbacks: int = 0
    breaker: BreakerState = BreakerState.CLOSED
    breaker_opened: int = 0  # times the circuit opened since the worker started
    breaker_since: datetime | None = None  # when it entered its current state (None: never left closed)
    breaker_reason: str | None = None  # the failure that last opened it


class LostWorker(BaseModel):
    """A worker that stopped beating without a clean stop (killed, frozen, its host gone): its
    registry record has expired, but the fleet remembers it for a while."""

    worker_id: str
    queue: str | None = None
    version: str | None = None
    hostname: str | None = None
    last_beat_at: datetime


class WorkerRegistration(BaseModel):
    """A worker of the fleet as the store remembers it, long after its Redis record expired: what
    tells a result of a dead worker of ours from one written by a stranger."""

    worker_id: str
    version: str
    hostname: str
    queue: str
    started_at: datetime
    seen_at: datetime


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
    task_stats: dict[str, TaskStats] = Field(default_factory=dict)
    llm: LLMStats | None = None


def data_fingerprint(redis_db: int, data_key: str) -> str:
    """A short, secret-free digest of which data a process works on: the Redis database, and the
    store's own key (kind and id), never the route to it (host lists, SRV URLs, relative paths)."""
    digest = hashlib.sha256(f"redis-db={redis_db};store={data_key}".encode()).hexdigest()
    return digest[:16]
