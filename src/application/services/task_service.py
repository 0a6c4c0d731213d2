"""TaskService: the one way jobs are put on the queue and looked up.

The ledger record is written before the enqueue (in bulk for imports), then the job goes on the
queue (`JobQueue`, in Redis: `src/infrastructure/queue`), which refuses an id that is already
queued or still has a cached result, so enqueueing is idempotent and a duplicate is reported as
"already queued", not as an error.

Bulk enqueues go in chunks of `ENQUEUE_CHUNK` jobs: one ledger transaction and one queue call per
chunk, and the push of a chunk overlaps the ledger write of the next (the SQLite write runs in its
thread), so a record is always committed before its job can be claimed.

A job may be scheduled (`enqueue(…, defer_by=…, defer_until=…)`): it waits on the queue, scored
with its time, and its status reads `scheduled` until then.

`TaskService(RedisJobQueue(pool), repository, catalog=REGISTRY)` is how the API and the worker use
it (the catalog gives each job's queue). `TaskService()` with no arguments gets the default queue
that `src/__init__.py` registers (Redis, from the settings, built on first use), so the deployment
check `asyncio.run(TaskService().get_pool())` works as written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from pydantic import BaseModel

from src.application.ports import CompletionFeed, JobCatalog, JobQueue, Repository
from src.domain.jobs import DEFAULT_QUEUE, JobEnvelope, JobProgress, JobRecord, JobStatus, QueueState
from src.errors import NotFound, QueueUnavailable

log = structlog.get_logger(__name__)

ENQUEUE_CHUNK = 1000  # jobs per ledger transaction and per Lua call (Lua's unpack allows ~8,000)
# Waiting for a result re-reads the ledger at these intervals (doubling) even with a completion feed:
# an announcement lost while the subscription was down costs latency, never the result.
RESULT_POLL_FIRST_S = 0.05
RESULT_POLL_MAX_S = 1.0


def _deferred(chunk: Sequence[JobEnvelope]) -> list[EnqueueResult]:
    return [EnqueueResult(job_id=e.job_id, status="deferred") for e in chunk]


def _not_before(defer_by: float | timedelta | None, defer_until: datetime | None) -> datetime | None:
    if defer_by is not None and defer_until is not None:
        raise ValueError("give defer_by or defer_until, not both")
    if defer_until is not None:
        if defer_until.tzinfo is None:
            raise ValueError("defer_until must be an aware datetime (with its time zone)")
        return defer_until.astimezone(UTC)
    if defer_by is not None:
        delay = defer_by if isinstance(defer_by, timedelta) else timedelta(seconds=defer_by)
        if delay < timedelta(0):
            raise ValueError(f"defer_by must not be negative, got {delay.total_seconds()} s")
        return datetime.now(UTC) + delay
    return None


def _log_deferred(jobs: int, exc: BaseException) -> None:
    log.warning("queue unreachable, jobs deferred to the reconciler", jobs=jobs, error=str(exc))


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """`deferred`: Redis was unreachable; the ledger keeps the job `queued` and the reconciler
    enqueues it once Redis answers again, so nothing accepted is lost. (A dataclass, not a model:
    a bulk enqueue makes one per job.)"""

    job_id: str
    status: Literal["queued", "already_queued", "deferred"]


class JobView(BaseModel):
    record: JobRecord
    queue_state: QueueState


# `TaskService()` without a queue uses this one: the Redis queue made from the settings, registered
# by the root package (`src/__init__.py`), the one place of default wiring; the application layer
# never imports the infrastructure.
default_queue_factory: Callable[[], JobQueue] | None = None


class TaskService:
    def __init__(
        self,
        queue: JobQueue | None = None,
        repository: Repository | None = None,
        *,
        producer_version: str | None = None,
        completions: CompletionFeed | None = None,
        catalog: JobCatalog | None = None,
    ) -> None:
        if queue is None:
            if default_queue_factory is None:
                raise RuntimeError("TaskService needs a JobQueue (none given, no default registered)")
            queue = default_queue_factory()
        self._queue = queue
        self._repository = repository
        self._producer_version = producer_version
        self._completions = completions
        self._catalog = catalog

    async def get_pool(self) -> Any:
        """The queue's client (arq's pool), connected: the deployment guide's connection check."""
        return await self._queue.connection()

    async def close(self) -> None:
        await self._queue.close()

    @property
    def repository(self) -> Repository:
        if self._repository is None:
            raise RuntimeError("TaskService needs a repository for the job ledger")
        return self._repository

    async def enqueue(
        self,
        envelope: JobEnvelope,
        queue: str | None = None,
        *,
        defer_by: float | timedelta | None = None,
        defer_until: datetime | None = None,
    ) -> EnqueueResult:
        """Record and enqueue one job; a job id already queued is reported as `already_queued`.
        `defer_by` (seconds or a timedelta) or `defer_until` (an aware datetime) schedules it."""
        when = _not_before(defer_by, defer_until)
        if when is not None:
            envelope = envelope.model_copy(update={"not_before": when})
        return (await self.enqueue_many([envelope], queue))[0]

    def queue_of(self, envelopes: Sequence[JobEnvelope]) -> str:
        """The queue of these jobs, from the catalog (ValueError for a job it does not know, or jobs
        of different queues); the default queue without a catalog."""
        if self._catalog is None:
            return DEFAULT_QUEUE
        queues = set()
        for task in {e.task for e in envelopes}:
            try:
                queues.add(self._catalog.queue_of(task))
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        if len(queues) != 1:
            raise ValueError(f"one enqueue takes jobs of one queue, not of {sorted(queues)}")
        return queues.pop()

    async def enqueue_many(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str | None = None,
        *,
        progress: JobProgress | None = None,
    ) -> list[EnqueueResult]:
        """Write the ledger records, then enqueue every job, `ENQUEUE_CHUNK` jobs at a time (see the
        module docstring). `queue` None: the jobs' queue from the catalog. `progress` seeds the
        records' checkpoint (a successor generation resumes from it). If Redis fails, the jobs not
        pushed yet are still recorded and come back `deferred`: the reconciler enqueues them once
        Redis answers again."""
        if not envelopes:
            return []
        queue = queue or self.queue_of(envelopes)
        seed = progress or JobProgress()
        results: list[EnqueueResult] = []
        pushing: asyncio.Task[list[EnqueueResult]] | None = None
        redis_down = False  # once a push finds the queue down, later chunks are not tried
        try:
            for start in range(0, len(envelopes), ENQUEUE_CHUNK):
                chunk = envelopes[start : start + ENQUEUE_CHUNK]
                # each chunk's own time: the reconciler's grace covers one chunk's push, not an import's
                now = datetime.now(UTC)
                enqueue_ms = int(now.timestamp() * 1000)
                payloads = [self._queue.encode(e, enqueue_ms) for e in chunk]  # too big: nothing written
                await self.repository.create_queued_jobs(chunk, queue, enqueued_at=now, progress=seed)
                if pushing is not None:
                    pushed = await pushing
                    pushing = None
                    results.extend(pushed)
                    # the queue did not answer: the rest stays in the ledger for the reconciler
                    redis_down = redis_down or any(r.status == "deferred" for r in pushed)
                if redis_down:
                    results.extend(_deferred(chunk))
                    continue
                # the record is committed: push this chunk while the next one is written
                push = self._push_chunk(chunk, payloads, queue, enqueue_ms)
                if start + ENQUEUE_CHUNK >= len(envelopes):  # the last chunk: nothing to overlap
                    results.extend(await push)
                else:
                    pushing = asyncio.create_task(push)
            if pushing is not None:
                results.extend(await pushing)
                pushing = None
        finally:
            if pushing is not None:  # the ledger write failed: let the push in flight finish
                await asyncio.gather(pushing, return_exceptions=True)
        return results

    async def _push_chunk(
        self, chunk: Sequence[JobEnvelope], payloads: Sequence[bytes], queue: str, enqueue_ms: int
    ) -> list[EnqueueResult]:
        if all(e.not_before is None for e in chunk):
            return await self._push(chunk, payloads, queue, enqueue_ms)
        results: list[EnqueueResult] = []
        for e, payload in zip(chunk, payloads, strict=True):  # scheduled: one call each (rare)
            score = enqueue_ms if e.not_before is None else int(e.not_before.timestamp() * 1000)
            results.extend(await self._push([e], [payload], queue, score))
        return results

    async def _push(
        self, chunk: Sequence[JobEnvelope], payloads: Sequence[bytes], queue: str, score: int
    ) -> list[EnqueueResult]:
        jobs = [(e.job_id, payload) for e, payload in zip(chunk, payloads, strict=True)]
        try:
            added = await self._queue.push(queue, jobs, score)
        except QueueUnavailable as exc:
            _log_deferred(len(chunk), exc)
            return _deferred(chunk)
        return [
            EnqueueResult(job_id=e.job_id, status="queued" if flag else "already_queued")
            for e, flag in zip(chunk, added, strict=True)
        ]

    async def wait_for_result(self, job_id: str, timeout: float) -> JobRecord:
        """Wait until the job's ledger record is final (succeeded, failed or cancelled) and return it;
        a generation superseded by a later one (a retry, a re-enqueue) is followed to that one.

        Woken by the completion feed (one subscription per process, no connection held per
        waiter) and re-reading the ledger with backoff in any case. `NotFound` for an unknown
        job; `TimeoutError` when it is not final within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        feed = self._completions
        announced = feed.watch(job_id) if feed is not None else None
        try:
            if feed is not None:
                await feed.ready(min(timeout, 1.0))  # subscribed before the first read: no lost wake-up
            pause = RESULT_POLL_FIRST_S
            while True:
                record = await self.repository.get_job(job_id)
                if record is None:
                    raise NotFound(f"job {job_id} not found")
                if record.superseded_by is not None and record.status is not JobStatus.SUCCEEDED:
                    # the logical job goes on in a later generation: its outcome is that one's
                    if feed is not None and announced is not None:
                        feed.unwatch(job_id, announced)
                        announced = feed.watch(record.superseded_by)
                    job_id = record.superseded_by
                    continue
                if record.status.terminal:
                    return record
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"job {job_id} is still {record.status.value} after {timeout} s")
                if announced is None:
                    await asyncio.sleep(min(pause, remaining))
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(pause, remaining)):  # no task, unlike wait_for
                            await announced.wait()
                    announced.clear()
                pause = min(RESULT_POLL_MAX_S, pause * 2)
        finally:
            if feed is not None and announced is not None:
                feed.unwatch(job_id, announced)

    async def queue_state(self, job_id: str, queue: str) -> QueueState:
        return (await self.queue_states([(job_id, queue)]))[job_id]

    async def queue_states(self, jobs: Sequence[tuple[str, str]]) -> dict[str, QueueState]:
        """What the queue holds for many jobs, in pipelined round trips."""
        return await self._queue.states(jobs)

    async def result_head(self, job_id: str, limit: int) -> tuple[bytes, int] | None:
        """The first `limit` bytes of the result stored under `job_id`, whoever wrote it, and its
        full size; None when there is none (never read whole: a stranger's may be huge)."""
        return await self._queue.result_head(job_id, limit)

    async def requeue(self, record: JobRecord, state: QueueState) -> EnqueueResult:
        """Put a ledger job whose arq job is gone back on the queue: under its own id when nothing in
        Redis blocks that id, else (a result or payload left under it, ours or a stranger's) as the
        next generation of its logical key, which supersedes this one in the ledger. Either way it
        resumes from its checkpoint."""
        if not (state.has_result or state.has_payload):
            return (await self.enqueue_many([record.envelope], record.queue, progress=record.progress))[0]
        return await self.enqueue_next_generation(record)

    async def enqueue_next_generation(
        self, record: JobRecord, *, request_id: str | None = None
    ) -> EnqueueResult:
        """Enqueue the generation after the latest one of `record`'s logical key, from its
        checkpoint; the ledger marks every earlier generation superseded."""
        latest = await self.repository.latest_job(record.logical_key)
        generation = max(record.generation, latest.generation if latest else 0) + 1
        trace = request_id or record.envelope.request_id  # keep the original request traceable
        successor = record.envelope.model_copy(update={"generation": generation, "request_id": trace})
        return (await self.enqueue_many([successor], record.queue, progress=record.progress))[0]

    async def get_job(self, job_id: str) -> JobView:
        """The ledger record (source of truth) plus what the queue currently holds; NotFound if unknown."""
        record = await self.repository.get_job(job_id)
        if record is None:
            raise NotFound(f"job {job_id} not found")
        return JobView(record=record, queue_state=await self.queue_state(job_id, record.queue))

    async def queue_depth(self, queue: str) -> tuple[int, int, float | None]:
        """(ready, deferred, score in ms of the oldest ready job or None) of one queue. A running
        job's score is its lease's deadline: it counts as deferred until it finishes."""
        return await self._queue.depth(queue)

    async def remove_queued(self, job_id: str, queue: str) -> bool:
        """Take a job off the queue before any worker starts it; False when it was not queued."""
        return await self._queue.remove(job_id, queue)

    async def abort(self, job_id: str) -> None:
        """Ask the worker running `job_id` to cancel it (arq's abort set, checked every poll)."""
        await self._queue.abort(job_id)

    async def delete_results(self, job_ids: Sequence[str]) -> int:
        """Delete cached results of these jobs; return how many existed."""
        return await self._queue.delete_results(job_ids)

    async def redis_facts(self) -> dict[str, str]:
        """Eviction policy, connected clients and maxclients of the Redis server."""
        return await self._queue.server_facts()

    async def queue_length(self, queue: str = DEFAULT_QUEUE) -> int:
        return await self._queue.length(queue)
