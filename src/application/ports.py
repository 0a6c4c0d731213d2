"""The ports the application needs from the outside world; adapters live in `infrastructure`."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from src.domain.addresses import NormalizedAddress
from src.domain.appointments import Appointment, Batch, BatchCounts, KindResult, NormalizationResult
from src.domain.jobs import (
    ErrorCategory,
    JobClaim,
    JobCount,
    JobEnvelope,
    JobOutcome,
    JobProgress,
    JobRecord,
    JobStatus,
    LostLease,
    QueueState,
)
from src.domain.workers import LostWorker, WorkerRecord, WorkerRegistration


class JobQueue(Protocol):
    """The queue that carries jobs to workers (`src/infrastructure/queue`): transport only, the
    ledger decides. Redis errors of the inspection calls propagate; `push` raises QueueUnavailable."""

    async def connection(self) -> Any:
        """The queue's client (arq's pool): what the deployment check pings."""

    async def close(self) -> None: ...

    def encode(self, envelope: JobEnvelope, enqueue_ms: int) -> bytes:
        """The job's payload; UnsafePayload when it is over the size limit."""

    async def push(self, queue: str, jobs: Sequence[tuple[str, bytes]], score_ms: int) -> list[bool]:
        """Add (id, payload) jobs, runnable from `score_ms`; per job, False when already queued or a
        result is still cached under its id. QueueUnavailable when the queue does not answer."""

    async def states(self, jobs: Sequence[tuple[str, str]]) -> dict[str, QueueState]:
        """What the queue holds for each (job id, queue)."""

    async def result_head(self, job_id: str, limit: int) -> tuple[bytes, int] | None: ...

    async def depth(self, queue: str) -> tuple[int, int, float | None]:
        """(ready, deferred, score in ms of the oldest ready job or None)."""

    async def remove(self, job_id: str, queue: str) -> bool: ...

    async def abort(self, job_id: str) -> None: ...

    async def delete_results(self, job_ids: Sequence[str]) -> int: ...

    async def server_facts(self) -> dict[str, str]: ...

    async def length(self, queue: str) -> int: ...


class JobCatalog(Protocol):
    """The declared job types (`src/jobs/registry.py`): which queue each job name goes to."""

    def queue_of(self, name: str) -> str:
        """The job's queue; KeyError naming the known jobs for a name that is not declared."""
        ...


class Repository(Protocol):
    """The store: appointments, import batches and the job ledger.

    Every write made by a job run is conditioned on that run's `attempt` (the fencing token):
    a write from an attempt that is no longer current returns False / 0 and changes nothing.
    All inserts are idempotent (keyed by id).
    """

    async def init(self) -> None:
        """Create tables/indexes and the init marker; safe to call on every start."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when the store cannot be reached."""

    def identity(self) -> str:
        """A secret-free description of which store this is and how it is reached (e.g.
        `sqlite:/var/app.db#<store id>`), for people: logs, banners, doctor."""

    def data_key(self) -> str:
        """Which data this is, whatever the route to it: the store's kind and its own id (written
        once, when the store was first initialized). Two routes to one store (host lists in another
        order, an SRV URL, a relative path) give one key; the data fingerprint is made of it."""

    # appointments and batches
    async def insert_appointments(self, appointments: Sequence[Appointment]) -> int:
        """Insert the appointments whose id is new; return how many were inserted."""

    async def get_appointment(self, appointment_id: str) -> Appointment | None: ...

    async def list_batch_appointments(
        self, batch_id: str, *, seq_from: int, seq_to: int, limit: int
    ) -> list[Appointment]:
        """Appointments of a batch with seq_from <= seq < seq_to, in seq order, at most `limit`."""

    async def save_normalizations(
        self, results: Sequence[NormalizationResult], *, job_id: str, attempt: int
    ) -> int:
        """Write results of one run of `job_id` as the normalization kind's (`save_results` of the
        kind `normalization`); skip appointments a newer attempt of the same job already wrote.
        Return how many were written."""

    async def save_results(
        self, kind: str, results: Mapping[str, KindResult], *, job_id: str, attempt: int
    ) -> int:
        """Write `kind`'s result of each appointment (by id) from one run of `job_id`, in place of
        that kind's earlier one; the other kinds' results are never touched. Skip appointments whose
        `kind` result a newer attempt of the same job already wrote, and unknown appointments;
        ValueError when a provenance names another run, or `kind` is not an identifier (a job
        name). Return how many were written."""

    async def single_appointments_to_retime(self, *, after_id: str | None, limit: int) -> list[Appointment]:
        """Appointments created one by one (no batch) and not yet retimed, in id order, after
        `after_id`, at most `limit`: the one-off time correction's pages (`retime-naive`)."""

    async def rules_fallback_appointments(
        self, *, after_id: str | None, limit: int, without_result: str | None = None
    ) -> list[Appointment]:
        """Appointments whose stored address is the rules' answer given in LLM mode (source
        `rules_fallback`), in id order, after `after_id`, at most `limit`, and with no result of the
        job kind `without_result` when given: the pages a re-normalization asks the LLM again.
        Indexed: the other appointments cost nothing."""

    async def settle_fallback_address(
        self, appointment_id: str, kind: str, result: KindResult, address: NormalizedAddress | None
    ) -> bool:
        """While the appointment's address is still `rules_fallback`: record `kind`'s result (its
        own provenance) and, when `address` is given, store it in place of the fallback in the
        normalization's result (the one write of a kind into another's: that address is what the
        re-normalization exists to correct; the normalization's status and provenance stay). False,
        and nothing written, when its address is no longer a fallback (another run or kind got
        there)."""

    async def retime_appointments(self, times: Sequence[tuple[str, datetime]]) -> int:
        """Set `data_hora` of each (id, time) not yet retimed and mark it retimed, so that no run of
        the correction moves it twice; return how many changed."""

    async def insert_batch(self, batch: Batch) -> bool:
        """Insert the batch if its id is new; True when inserted."""

    async def get_batch(self, batch_id: str) -> Batch | None: ...

    async def count_batch(self, batch_id: str) -> BatchCounts: ...

    async def recent_batches(self, *, limit: int, before: tuple[datetime, str] | None = None) -> list[Batch]:
        """The most recently created batches, newest first (ties by id, descending); with `before`
        (a batch's created_at and id), only those after it in that order: the next page."""

    async def count_batches(self) -> int: ...

    # job ledger
    async def create_jobs(self, records: Sequence[JobRecord]) -> int:
        """Insert the ledger records whose job id is new; return how many were inserted."""

    async def create_queued_jobs(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str,
        *,
        enqueued_at: datetime,
        progress: JobProgress,
    ) -> int:
        """`create_jobs` for freshly enqueued jobs (status queued, attempt 0), written straight from
        their envelopes: the bulk-enqueue path, without building a `JobRecord` per job.

        An envelope of generation n > 1 supersedes every lower generation of its logical key: their
        `superseded_by` names it, and those not yet terminal become `superseded`, so no run of them
        can be claimed, heartbeaten or finished any more (only the current generation runs)."""

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def latest_job(self, logical_key: str) -> JobRecord | None:
        """The record of the highest generation of a logical key."""

    async def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 100, before: tuple[datetime, str] | None = None
    ) -> list[JobRecord]:
        """Most recently enqueued first (ties by job id, descending); with `before` (a record's
        enqueued_at and job id), only those after it in that order: the next page."""

    async def claim_job(self, job_id: str, claim: JobClaim) -> int | None:
        """Start a run: if the job is queued or interrupted, increment its attempt, set it running
        and return the new attempt (the fencing token); None when the job is unknown, terminal or
        running (a running job claimed again lost its lease: see `record_lost_lease`)."""

    async def record_lost_lease(
        self, job_id: str, *, at: datetime, max_losses: int, attempt: int | None = None
    ) -> LostLease | None:
        """A running job whose worker lost the lease (died or froze mid-run; at `attempt`, when
        given): count the loss, fence the run off (attempt + 1) and put the job back `queued`, or,
        at `max_losses`, quarantine it (`failed`, category quarantined, `worker_id` still naming the
        last holder). None when the job is not running (at that attempt)."""

    async def fail_waiting_job(
        self,
        job_id: str,
        *,
        at: datetime,
        category: ErrorCategory,
        message: str,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Record that a queued or interrupted job was lost without a run of ours (a consumer outside
        the fleet took it, or its payload expired in Redis): `failed` with `category`. False when the
        job is not waiting (a run claimed it meanwhile, or it is terminal)."""

    async def heartbeat_job(
        self, job_id: str, attempt: int, *, at: datetime, progress: JobProgress | None = None
    ) -> bool:
        """Refresh a running job's heartbeat (and progress); False when `attempt` is not current."""

    async def heartbeat_jobs(self, runs: Sequence[tuple[str, int]], *, at: datetime) -> int:
        """Refresh the heartbeat of many running jobs, given as (job_id, attempt), in one write;
        return how many were still current."""

    async def find_stale_jobs(
        self, *, running_heartbeat_before: datetime, waiting_enqueued_before: datetime, limit: int
    ) -> list[JobRecord]:
        """Running jobs whose heartbeat is older than the first cutoff, and queued or interrupted jobs
        enqueued before the second; oldest first. The reconciler checks each against Redis."""

    async def count_jobs(self) -> list[JobCount]:
        """Ledger records counted by (queue, status, error category), with the oldest enqueue time."""

    async def finished_since(
        self, since: datetime, *, limit: int, categories: Collection[ErrorCategory] | None = None
    ) -> list[JobRecord]:
        """Jobs that finished (succeeded, failed or cancelled) at or after `since`, newest first;
        with `categories`, only the failures of those error categories."""

    async def delete_finished_jobs(self, before: datetime, *, limit: int) -> list[str]:
        """Delete ledger records of jobs that finished before `before` (never queued, running or
        interrupted ones); return the deleted job ids."""

    async def finish_job(self, job_id: str, attempt: int, outcome: JobOutcome) -> bool:
        """Record how a run ended; False (nothing written) when `attempt` is not current or the job
        is not running."""

    async def cancel_job(self, job_id: str, *, at: datetime) -> bool:
        """Mark a non-terminal job cancelled; False when it is unknown or already terminal."""

    # the workers that ever ran here (kept in the store: a Redis wipe must not make them strangers)
    async def register_worker(self, worker: WorkerRegistration) -> None:
        """Record (or refresh) a worker of the fleet; called at its start and then now and again."""

    async def known_workers(self, worker_ids: Collection[str]) -> set[str]:
        """Which of `worker_ids` are workers of the fleet (registered here at some point)."""


class AddressNormalizer(Protocol):
    """Turns a raw address into a structured one (rules, or an LLM with the rules as fallback)."""

    uses_llm: bool  # False: the rules alone (nothing is ever `rules_fallback`)

    async def normalize(self, raw: str) -> NormalizedAddress: ...


class WorkerDirectory(Protocol):
    """The fleet as the registry in Redis sees it (live workers, allowed versions, the fingerprint)."""

    async def list_workers(self) -> list[WorkerRecord]: ...

    async def allowed_versions(self) -> set[str]: ...

    async def published_fingerprint(self) -> dict[str, object] | None: ...

    async def seen_workers(self, since: datetime) -> set[str]:
        """Ids of every worker that beat since `since`, including those that have exited."""

    async def lost_workers(self, since: datetime) -> list[LostWorker]:
        """Workers that beat since `since`, then stopped beating without a clean stop."""

    async def write_problem(self) -> str | None:
        """None when Redis takes a write; else why not (out of memory, unreachable)."""


class IdempotencyStore(Protocol):
    """Shared across API processes: the first `reserve` of a scope wins; the others see its answer."""

    async def reserve(self, scope: str, pending: str) -> str | None:
        """None when the caller now owns the scope (`pending` is stored under it); else the stored
        value (another caller's `pending`, or the answer it completed)."""

    async def complete(self, scope: str, answer: str) -> None: ...

    async def release(self, scope: str) -> None: ...


class CompletionFeed(Protocol):
    """Announcements of finished jobs, shared by every waiter of a process (one subscription, not
    one per waiting request). A hint only: waiters still re-read the ledger, and poll it slowly."""

    def watch(self, job_id: str) -> asyncio.Event:
        """An event set when `job_id` is announced finished; pass it to `unwatch` when done."""

    def unwatch(self, job_id: str, event: asyncio.Event) -> None: ...

    async def ready(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until announcements arrive; False if they do not (yet)."""
