"""TaskService: the one way jobs are put on the queue and looked up.

The ledger record is written before the enqueue (in bulk for imports), then the arq job is added by
a small Lua script that refuses an id that is already queued or still has a cached result, so
enqueueing is idempotent and a duplicate is reported as "already queued", not as an error. Many jobs
go out in one pipelined round trip.

`TaskService(pool=..., repository=...)` is how the API and the worker use it. `TaskService()` with
no arguments builds its pool from settings on first use, so the deployment check
`asyncio.run(TaskService().get_pool())` works as written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import structlog
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from pydantic import BaseModel
from redis.exceptions import RedisError

from src.application.ports import Repository
from src.domain.jobs import JobEnvelope, JobProgress, JobRecord, QueueName, queue_key
from src.errors import NotFound

log = structlog.get_logger(__name__)

ENQUEUE_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""
JOB_EXPIRY_MS = 24 * 3600 * 1000  # arq's default: a job not started within a day expires
PIPELINE_CHUNK = 1000


class EnqueueResult(BaseModel):
    """`deferred`: Redis was unreachable; the ledger keeps the job `queued` and the reconciler
    enqueues it once Redis answers again, so nothing accepted is lost."""

    job_id: str
    status: Literal["queued", "already_queued", "deferred"]


class QueueState(BaseModel):
    """What Redis knows about a job, next to the ledger's record."""

    queued: bool
    in_progress: bool
    has_result: bool


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
    ) -> None:
        self._pool = pool
        self._owns_pool = False
        self._repository = repository
        self._producer_version = producer_version

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
            self._pool = None

    @property
    def repository(self) -> Repository:
        if self._repository is None:
            raise RuntimeError("TaskService needs a repository for the job ledger")
        return self._repository

    async def enqueue(
        self, envelope: JobEnvelope, queue: QueueName = QueueName.NORMALIZATION
    ) -> EnqueueResult:
        """Record and enqueue one job; a job id already queued is reported as `already_queued`."""
        return (await self.enqueue_many([envelope], queue))[0]

    async def enqueue_many(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: QueueName = QueueName.NORMALIZATION,
        *,
        progress: JobProgress | None = None,
    ) -> list[EnqueueResult]:
        """Write the ledger records in bulk, then enqueue every job in pipelined round trips.
        `progress` seeds the records' checkpoint (a successor generation resumes from it)."""
        if not envelopes:
            return []
        now = datetime.now(UTC)
        await self.repository.create_jobs(
            [
                JobRecord(
                    job_id=e.job_id,
                    logical_key=e.logical_key,
                    generation=e.generation,
                    task=e.task,
                    queue=queue,
                    envelope=e,
                    enqueued_at=now,
                    progress=progress or JobProgress(),
                )
                for e in envelopes
            ]
        )
        try:
            return await self._push(envelopes, queue)
        except (RedisError, OSError) as exc:
            log.warning(
                "queue unreachable, jobs deferred to the reconciler", jobs=len(envelopes), error=str(exc)
            )
            return [EnqueueResult(job_id=e.job_id, status="deferred") for e in envelopes]

    async def _push(self, envelopes: Sequence[JobEnvelope], queue: QueueName) -> list[EnqueueResult]:
        """Add the arq jobs with the idempotent script, `PIPELINE_CHUNK` jobs per round trip."""
        pool = await self.get_pool()
        script = pool.register_script(ENQUEUE_SCRIPT)
        enqueue_ms = int(time.time() * 1000)
        queue_name = queue_key(queue)
        results: list[EnqueueResult] = []
        for start in range(0, len(envelopes), PIPELINE_CHUNK):
            chunk = envelopes[start : start + PIPELINE_CHUNK]
            async with pool.pipeline(transaction=False) as pipe:
                for e in chunk:
                    payload = serialize_job(
                        e.task.value,
                        (),
                        {"envelope": e.model_dump(mode="json")},
                        None,
                        enqueue_ms,
                        serializer=pool.job_serializer,
                    )
                    await script(
                        keys=[job_key_prefix + e.job_id, result_key_prefix + e.job_id, queue_name],
                        args=[payload, JOB_EXPIRY_MS, enqueue_ms, e.job_id],
                        client=pipe,
                    )
                replies = await pipe.execute()
            results.extend(
                EnqueueResult(job_id=e.job_id, status="queued" if added else "already_queued")
                for e, added in zip(chunk, replies, strict=True)
            )
        return results

    async def queue_state(self, job_id: str, queue: QueueName) -> QueueState:
        pool = await self.get_pool()
        async with pool.pipeline(transaction=False) as pipe:
            pipe.zscore(queue_key(queue), job_id)
            pipe.exists(in_progress_key_prefix + job_id)
            pipe.exists(result_key_prefix + job_id)
            score, in_progress, has_result = await pipe.execute()
        return QueueState(
            queued=score is not None, in_progress=bool(in_progress), has_result=bool(has_result)
        )

    async def queue_states(self, jobs: Sequence[tuple[str, QueueName]]) -> dict[str, QueueState]:
        """What Redis holds for many jobs, in pipelined round trips."""
        pool = await self.get_pool()
        states: dict[str, QueueState] = {}
        for start in range(0, len(jobs), PIPELINE_CHUNK):
            chunk = jobs[start : start + PIPELINE_CHUNK]
            async with pool.pipeline(transaction=False) as pipe:
                for job_id, queue in chunk:
                    pipe.zscore(queue_key(queue), job_id)
                    pipe.exists(in_progress_key_prefix + job_id)
                    pipe.exists(result_key_prefix + job_id)
                replies = await pipe.execute()
            for index, (job_id, _) in enumerate(chunk):
                score, in_progress, has_result = replies[index * 3 : index * 3 + 3]
                states[job_id] = QueueState(
                    queued=score is not None, in_progress=bool(in_progress), has_result=bool(has_result)
                )
        return states

    async def get_job(self, job_id: str) -> JobView:
        """The ledger record (source of truth) plus what the queue currently holds; NotFound if unknown."""
        record = await self.repository.get_job(job_id)
        if record is None:
            raise NotFound(f"job {job_id} not found")
        return JobView(record=record, queue_state=await self.queue_state(job_id, record.queue))

    async def queue_depth(self, queue: QueueName) -> tuple[int, int, float | None]:
        """(ready, deferred, score in ms of the oldest ready job or None) of one queue."""
        pool = await self.get_pool()
        now_ms = int(time.time() * 1000)
        async with pool.pipeline(transaction=False) as pipe:
            pipe.zcount(queue_key(queue), "-inf", now_ms)
            pipe.zcount(queue_key(queue), f"({now_ms}", "+inf")
            pipe.zrange(queue_key(queue), 0, 0, withscores=True)
            ready, deferred, oldest = await pipe.execute()
        return int(ready), int(deferred), (float(oldest[0][1]) if oldest and ready else None)

    async def remove_queued(self, job_id: str, queue: QueueName) -> bool:
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

    async def queue_length(self, queue: QueueName = QueueName.NORMALIZATION) -> int:
        pool = await self.get_pool()
        return int(await pool.zcard(queue_key(queue)))
