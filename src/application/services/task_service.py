"""TaskService: the one way jobs are put on the queue and looked up.

The ledger record is written before the enqueue (in bulk for imports), then the arq job is added by
a small Lua script that refuses an id that is already queued or still has a cached result, so
enqueueing is idempotent and a duplicate is reported as "already queued", not as an error.

Bulk enqueues go in chunks of `ENQUEUE_CHUNK` jobs: one ledger transaction and one Lua call per
chunk, and the Redis push of a chunk overlaps the ledger write of the next (the SQLite write runs
in its thread), so a record is always committed before its job can be claimed.

A job may be scheduled (`enqueue(…, defer_by=…, defer_until=…)`): it waits on the queue, scored
with its time, and its status reads `scheduled` until then.

`TaskService(pool=..., repository=..., catalog=REGISTRY)` is how the API and the worker use it (the
catalog gives each job's queue). `TaskService()` with
no arguments builds its pool from settings on first use, so the deployment check
`asyncio.run(TaskService().get_pool())` works as written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog
from arq.connections import ArqRedis
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from pydantic import BaseModel
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from src.application.ports import CompletionFeed, JobCatalog, Repository
from src.domain.jobs import (
    DEFAULT_QUEUE,
    JobEnvelope,
    JobProgress,
    JobRecord,
    JobStatus,
    idle_workers_key,
    inbox_key,
    queue_key,
    wake_channel,
)
from src.errors import NotFound, UnsafePayload

log = structlog.get_logger(__name__)

# KEYS: the queue, its wake channel, its idle workers, arq's abort set.
# ARGV: job key prefix, result key prefix, expiry ms, score, in-progress prefix, retry prefix, inbox
# prefix, then (id, payload) pairs. Returns one 1 (added) or 0 (already queued or has a cached
# result) per job, in order.
# Each added job goes to one idle worker registered for a direct hand-off while any is left: the
# job's lease is set to that worker (as its claim would) and the job, with its try count, pushed to
# the worker's inbox, where it is waiting in a blocking pop (no wake-up, no claim round trip). The
# job stays in the queue, as a claimed job does, scored with its lease's deadline: if that worker
# died, its lease lapses and any worker claims it. Idle workers are woken (pub/sub) for the jobs
# nobody was handed. Lapsed registrations are skipped here and removed by the next registration
# (this script stays short: it runs on a Redis that has often just woken up, where every call costs
# several times its usual).
# The job and result keys are derived in the script (single-instance Redis, as arq itself assumes),
# so a chunk of a thousand jobs is one call instead of a thousand.
ENQUEUE_MANY_SCRIPT = """
local jp, rp, px, score = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ipp, rtp, inbox = ARGV[5], ARGV[6], ARGV[7]
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local now = string.format('%d', now_ms)
local idle = {}
if tonumber(score) <= now_ms then  -- a scheduled job waits for its time: no hand-off, no wake-up
  idle = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf', 'LIMIT', 0, (#ARGV - 7) / 2)
end
local handed = 0
local added, members, unhanded = {}, {}, 0
for i = 8, #ARGV, 2 do
  local id, payload = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', jp .. id, rp .. id) == 0 then
    redis.call('PSETEX', jp .. id, px, payload)
    members[#members + 1] = score
    members[#members + 1] = id
    added[#added + 1] = 1
    local given = false
    if handed < #idle then
      local member = idle[handed + 1]
      local lease, worker = string.match(member, '^(%d+) (.+)$')
      if redis.call('SET', ipp .. id, worker, 'NX', 'PX', lease) then
        members[#members - 1] = string.format('%d', now_ms + tonumber(lease))  -- leased, as a claim
        handed = handed + 1
        redis.call('ZREM', KEYS[3], member)
        local try = 1
        if not redis.call('SET', rtp .. id, 1, 'EX', 88400, 'NX') then
          try = redis.call('INCR', rtp .. id)
          redis.call('EXPIRE', rtp .. id, 88400)
        end
        local aborted = redis.call('ZREM', KEYS[4], id)
        local item = table.concat({try, score, aborted, #id, id .. payload}, ' ')
        redis.call('RPUSH', inbox .. worker, item)
        redis.call('PEXPIRE', inbox .. worker, lease)
        given = true
      end
    end
    if not given then unhanded = unhanded + 1 end
  else
    added[#added + 1] = 0
  end
end
if #members > 0 then redis.call('ZADD', KEYS[1], unpack(members)) end
if unhanded > 0 and tonumber(score) <= now_ms then redis.call('PUBLISH', KEYS[2], unhanded) end
return added
"""
JOB_EXPIRY_MS = 24 * 3600 * 1000  # arq's default: a job not started within a day expires
PIPELINE_CHUNK = 1000
ENQUEUE_CHUNK = 1000  # jobs per ledger transaction and per Lua call (Lua's unpack allows ~8,000)
DEFAULT_MAX_PAYLOAD_BYTES = 65536  # the default of `MAX_JOB_PAYLOAD_BYTES`
# Waiting for a result re-reads the ledger at these intervals (doubling) even with a completion feed:
# an announcement lost while the subscription was down costs latency, never the result.
RESULT_POLL_FIRST_S = 0.05
RESULT_POLL_MAX_S = 1.0


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


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


class QueueState(BaseModel):
    """What Redis knows about a job, next to the ledger's record."""

    queued: bool  # on the queue: waiting, deferred, or running under a lease
    in_progress: bool  # a lease (or a stranger's in-progress key) holds it
    has_result: bool  # arq's result key exists (whoever wrote it)
    has_payload: bool = False  # arq's job key exists
    lease_holder: str | None = None  # the in-progress key's value: one of our worker ids, or not


class JobView(BaseModel):
    record: JobRecord
    queue_state: QueueState


class TaskService:
    def __init__(
        self,
        pool: ArqRedis | None = None,
        repository: Repository | None = None,
        *,
        producer_version: str | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        completions: CompletionFeed | None = None,
        catalog: JobCatalog | None = None,
    ) -> None:
        self._pool = pool
        self._owns_pool = False
        self._repository = repository
        self._producer_version = producer_version
        self._max_payload_bytes = max_payload_bytes
        self._completions = completions
        self._catalog = catalog
        self._enqueue_script: AsyncScript | None = None  # of `_pool`, made once (hashing the script)

    async def get_pool(self) -> ArqRedis:
        """The shared pool; built from settings (and pinged) when none was injected."""
        if self._pool is None:
            # Composition fallback for scripts and the deployment check; the API and the worker inject.
            from src.config import get_settings
            from src.infrastructure.redis_pool import create_redis_pool

            self._pool = create_redis_pool(get_settings())
            self._owns_pool = True
            await self._pool.ping()
        return self._pool

    async def close(self) -> None:
        if self._owns_pool and self._pool is not None:
            await self._pool.aclose(close_connection_pool=True)
            self._pool, self._enqueue_script = None, None

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
        redis_down = False
        try:
            for start in range(0, len(envelopes), ENQUEUE_CHUNK):
                chunk = envelopes[start : start + ENQUEUE_CHUNK]
                # each chunk's own time: the reconciler's grace covers one chunk's push, not an import's
                now = datetime.now(UTC)
                enqueue_ms = int(now.timestamp() * 1000)
                payloads = [self._payload(e, enqueue_ms) for e in chunk]  # an oversized one: nothing written
                await self.repository.create_queued_jobs(chunk, queue, enqueued_at=now, progress=seed)
                if pushing is not None:
                    results.extend(await pushing)
                    pushing = None
                if redis_down:
                    results.extend(_deferred(chunk))
                    continue
                try:
                    # the record is committed: push this chunk while the next one is written
                    pool = await self.get_pool()
                    push = self._push_chunk(pool, chunk, payloads, queue, enqueue_ms)
                    if start + ENQUEUE_CHUNK >= len(envelopes):  # the last chunk: nothing to overlap
                        results.extend(await push)
                    else:
                        pushing = asyncio.create_task(push)
                except (RedisError, OSError) as exc:
                    _log_deferred(len(envelopes), exc)
                    redis_down = True
                    results.extend(_deferred(chunk))
            if pushing is not None:
                results.extend(await pushing)
                pushing = None
        finally:
            if pushing is not None:  # the ledger write failed: let the push in flight finish
                await asyncio.gather(pushing, return_exceptions=True)
        return results

    async def _push_chunk(
        self,
        pool: ArqRedis,
        chunk: Sequence[JobEnvelope],
        payloads: Sequence[bytes],
        queue: str,
        enqueue_ms: int,
    ) -> list[EnqueueResult]:
        if all(e.not_before is None for e in chunk):
            return await self._push(pool, chunk, payloads, queue, enqueue_ms)
        results: list[EnqueueResult] = []
        for e, payload in zip(chunk, payloads, strict=True):  # scheduled: one call each (rare)
            score = enqueue_ms if e.not_before is None else int(e.not_before.timestamp() * 1000)
            results.extend(await self._push(pool, [e], [payload], queue, score))
        return results

    async def _push(
        self,
        pool: ArqRedis,
        chunk: Sequence[JobEnvelope],
        payloads: Sequence[bytes],
        queue: str,
        score: int,
    ) -> list[EnqueueResult]:
        queue_name = queue_key(queue)
        args: list[str | bytes | int] = [
            job_key_prefix, result_key_prefix, JOB_EXPIRY_MS, score,
            in_progress_key_prefix, retry_key_prefix, inbox_key(queue_name),
        ]  # fmt: skip
        for e, payload in zip(chunk, payloads, strict=True):
            args.append(e.job_id)
            args.append(payload)
        try:
            if self._enqueue_script is None:
                self._enqueue_script = pool.register_script(ENQUEUE_MANY_SCRIPT)
            added = await self._enqueue_script(
                keys=[queue_name, wake_channel(queue_name), idle_workers_key(queue_name), abort_jobs_ss],
                args=args,
            )
        except (RedisError, OSError) as exc:
            _log_deferred(len(chunk), exc)
            return _deferred(chunk)
        return [
            EnqueueResult(job_id=e.job_id, status="queued" if flag else "already_queued")
            for e, flag in zip(chunk, added, strict=True)
        ]

    def _payload(self, envelope: JobEnvelope, enqueue_ms: int) -> bytes:
        """arq's job payload `{"t","f","a","k","et"}` as our JSON serializer writes it, assembled
        around the envelope's own JSON (a bulk enqueue spends most of its time here otherwise)."""
        payload = b'{"t":null,"f":"%s","a":[],"k":{"envelope":%s},"et":%d}' % (
            envelope.task.encode(),
            envelope.model_dump_json().encode(),
            enqueue_ms,
        )
        if len(payload) > self._max_payload_bytes:
            raise UnsafePayload(
                f"job payload of {len(payload)} bytes exceeds the {self._max_payload_bytes} limit"
            )
        return payload

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
        """What Redis holds for many jobs, in pipelined round trips."""
        pool = await self.get_pool()
        states: dict[str, QueueState] = {}
        for start in range(0, len(jobs), PIPELINE_CHUNK):
            chunk = jobs[start : start + PIPELINE_CHUNK]
            async with pool.pipeline(transaction=False) as pipe:
                for job_id, queue in chunk:
                    pipe.zscore(queue_key(queue), job_id)
                    pipe.get(in_progress_key_prefix + job_id)
                    pipe.exists(result_key_prefix + job_id)
                    pipe.exists(job_key_prefix + job_id)
                replies = await pipe.execute()
            for index, (job_id, _) in enumerate(chunk):
                score, holder, has_result, has_payload = replies[index * 4 : index * 4 + 4]
                states[job_id] = QueueState(
                    queued=score is not None,
                    in_progress=holder is not None,
                    has_result=bool(has_result),
                    has_payload=bool(has_payload),
                    lease_holder=None if holder is None else _text(holder),
                )
        return states

    async def result_head(self, job_id: str, limit: int) -> tuple[bytes, int] | None:
        """The first `limit` bytes of the arq result stored under `job_id`, whoever wrote it, and its
        full size; None when there is none. Never deserialized here, never read whole: a stranger's
        value may be hundreds of MB."""
        pool = await self.get_pool()
        async with pool.pipeline(transaction=True) as pipe:
            pipe.strlen(result_key_prefix + job_id)
            pipe.getrange(result_key_prefix + job_id, 0, limit - 1)
            size, head = await pipe.execute()
        return None if not size else (bytes(head), int(size))

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
        pool = await self.get_pool()
        now_ms = int(time.time() * 1000)
        async with pool.pipeline(transaction=False) as pipe:
            pipe.zcount(queue_key(queue), "-inf", now_ms)
            pipe.zcount(queue_key(queue), f"({now_ms}", "+inf")
            pipe.zrange(queue_key(queue), 0, 0, withscores=True)
            ready, deferred, oldest = await pipe.execute()
        return int(ready), int(deferred), (float(oldest[0][1]) if oldest and ready else None)

    async def remove_queued(self, job_id: str, queue: str) -> bool:
        """Take a job off the queue before any worker starts it; False when it was not queued."""
        pool = await self.get_pool()
        async with pool.pipeline(transaction=True) as pipe:
            pipe.zrem(queue_key(queue), job_id)
            pipe.delete(job_key_prefix + job_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def abort(self, job_id: str) -> None:
        """Ask the worker running `job_id` to cancel it (arq's abort set, checked every poll)."""
        pool = await self.get_pool()
        await pool.zadd(abort_jobs_ss, {job_id: int(time.time() * 1000)})

    async def delete_results(self, job_ids: Sequence[str]) -> int:
        """Delete cached arq results of these jobs; return how many existed."""
        if not job_ids:
            return 0
        pool = await self.get_pool()
        deleted = 0
        for start in range(0, len(job_ids), PIPELINE_CHUNK):
            chunk = job_ids[start : start + PIPELINE_CHUNK]
            deleted += int(await pool.delete(*(result_key_prefix + j for j in chunk)))
        return deleted

    async def redis_facts(self) -> dict[str, str]:
        """Eviction policy, connected clients and maxclients of the Redis server."""
        pool = await self.get_pool()
        memory = await pool.info("memory")
        clients = await pool.info("clients")
        maxclients = await pool.config_get("maxclients")
        return {
            "maxmemory_policy": str(memory.get("maxmemory_policy", "unknown")),
            "connected_clients": str(clients.get("connected_clients", 0)),
            "maxclients": str(maxclients.get("maxclients", 0)),
        }

    async def queue_length(self, queue: str = DEFAULT_QUEUE) -> int:
        pool = await self.get_pool()
        return int(await pool.zcard(queue_key(queue)))
