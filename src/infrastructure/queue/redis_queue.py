"""The queue in Redis: arq's keys (job payload, in-progress lease, retry counter, result, abort
set), our queue keys (the sorted set, its wake channel, idle workers, hand-off inboxes) and the
enqueue script. `RedisJobQueue` is the `JobQueue` port's adapter: the application's `TaskService`
decides what to enqueue and when (the ledger first); this module only moves bytes.

An enqueue is one Lua call per chunk of jobs: it refuses an id that is already queued or still has
a cached result, and hands new jobs to idle workers waiting for one (see the script's comment).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from arq.connections import ArqRedis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from src.domain.jobs import JobEnvelope, QueueState, queue_key
from src.errors import QueueUnavailable
from src.infrastructure.queue.keys import (
    ABORT_SET,
    IN_PROGRESS_PREFIX,
    JOB_PREFIX,
    RESULT_PREFIX,
    RETRY_PREFIX,
    idle_workers_key,
    inbox_key,
    reply_text,
    wake_channel,
)
from src.infrastructure.queue.payload import encode_envelope
from src.infrastructure.queue.scripts import ENQUEUE_MANY_SCRIPT

JOB_EXPIRY_MS = 24 * 3600 * 1000  # arq's default: a job not started within a day expires
PIPELINE_CHUNK = 1000
DEFAULT_MAX_PAYLOAD_BYTES = 65536  # the default of `MAX_JOB_PAYLOAD_BYTES`


class RedisJobQueue:
    """`pool` None: built from the settings (and pinged) on first use, as the deployment guide's
    check `TaskService().get_pool()` needs; the API and the worker pass theirs."""

    def __init__(
        self, pool: ArqRedis | None = None, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    ) -> None:
        self._pool = pool
        self._owns_pool = False
        self._max_payload_bytes = max_payload_bytes
        self._enqueue_script: AsyncScript | None = None  # of `_pool`, made once (hashing the script)

    async def connection(self) -> ArqRedis:
        if self._pool is None:
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

    def encode(self, envelope: JobEnvelope, enqueue_ms: int) -> bytes:
        """The job's payload (`payload.encode_envelope`); UnsafePayload over `MAX_JOB_PAYLOAD_BYTES`."""
        return encode_envelope(envelope, enqueue_ms, self._max_payload_bytes)

    async def push(self, queue: str, jobs: Sequence[tuple[str, bytes]], score_ms: int) -> list[bool]:
        """Add the jobs (id, payload) at `score_ms`; per job, False when its id was already queued or
        still has a cached result. QueueUnavailable when Redis does not answer."""
        queue_name = queue_key(queue)
        args: list[str | bytes | int] = [
            JOB_PREFIX, RESULT_PREFIX, JOB_EXPIRY_MS, score_ms,
            IN_PROGRESS_PREFIX, RETRY_PREFIX, inbox_key(queue_name),
        ]  # fmt: skip
        for job_id, payload in jobs:
            args.append(job_id)
            args.append(payload)
        try:
            pool = await self.connection()
            if self._enqueue_script is None:
                self._enqueue_script = pool.register_script(ENQUEUE_MANY_SCRIPT)
            added = await self._enqueue_script(
                keys=[queue_name, wake_channel(queue_name), idle_workers_key(queue_name), ABORT_SET],
                args=args,
            )
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"Redis did not take the jobs: {exc}") from exc
        return [bool(flag) for flag in added]

    async def states(self, jobs: Sequence[tuple[str, str]]) -> dict[str, QueueState]:
        """What Redis holds for many (job id, queue), in pipelined round trips."""
        pool = await self.connection()
        states: dict[str, QueueState] = {}
        for start in range(0, len(jobs), PIPELINE_CHUNK):
            chunk = jobs[start : start + PIPELINE_CHUNK]
            async with pool.pipeline(transaction=False) as pipe:
                for job_id, queue in chunk:
                    pipe.zscore(queue_key(queue), job_id)
                    pipe.get(IN_PROGRESS_PREFIX + job_id)
                    pipe.exists(RESULT_PREFIX + job_id)
                    pipe.exists(JOB_PREFIX + job_id)
                replies = await pipe.execute()
            for index, (job_id, _) in enumerate(chunk):
                score, holder, has_result, has_payload = replies[index * 4 : index * 4 + 4]
                states[job_id] = QueueState(
                    queued=score is not None,
                    in_progress=holder is not None,
                    has_result=bool(has_result),
                    has_payload=bool(has_payload),
                    lease_holder=None if holder is None else reply_text(holder),
                )
        return states

    async def result_head(self, job_id: str, limit: int) -> tuple[bytes, int] | None:
        """The first `limit` bytes of the arq result stored under `job_id`, whoever wrote it, and its
        full size; None when there is none. Never deserialized here, never read whole: a stranger's
        value may be hundreds of MB."""
        pool = await self.connection()
        async with pool.pipeline(transaction=True) as pipe:
            pipe.strlen(RESULT_PREFIX + job_id)
            pipe.getrange(RESULT_PREFIX + job_id, 0, limit - 1)
            size, head = await pipe.execute()
        return None if not size else (bytes(head), int(size))

    async def depth(self, queue: str) -> tuple[int, int, float | None]:
        """(ready, deferred, score in ms of the oldest ready job or None). A running job's score is
        its lease's deadline: it counts as deferred until it finishes."""
        pool = await self.connection()
        now_ms = int(time.time() * 1000)
        async with pool.pipeline(transaction=False) as pipe:
            pipe.zcount(queue_key(queue), "-inf", now_ms)
            pipe.zcount(queue_key(queue), f"({now_ms}", "+inf")
            pipe.zrange(queue_key(queue), 0, 0, withscores=True)
            ready, deferred, oldest = await pipe.execute()
        return int(ready), int(deferred), (float(oldest[0][1]) if oldest and ready else None)

    async def remove(self, job_id: str, queue: str) -> bool:
        pool = await self.connection()
        async with pool.pipeline(transaction=True) as pipe:
            pipe.zrem(queue_key(queue), job_id)
            pipe.delete(JOB_PREFIX + job_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def abort(self, job_id: str) -> None:
        pool = await self.connection()
        await pool.zadd(ABORT_SET, {job_id: int(time.time() * 1000)})

    async def delete_results(self, job_ids: Sequence[str]) -> int:
        if not job_ids:
            return 0
        pool = await self.connection()
        deleted = 0
        for start in range(0, len(job_ids), PIPELINE_CHUNK):
            chunk = job_ids[start : start + PIPELINE_CHUNK]
            deleted += int(await pool.delete(*(RESULT_PREFIX + j for j in chunk)))
        return deleted

    async def server_facts(self) -> dict[str, str]:
        pool = await self.connection()
        memory = await pool.info("memory")
        clients = await pool.info("clients")
        maxclients = await pool.config_get("maxclients")
        return {
            "maxmemory_policy": str(memory.get("maxmemory_policy", "unknown")),
            "connected_clients": str(clients.get("connected_clients", 0)),
            "maxclients": str(maxclients.get("maxclients", 0)),
        }

    async def length(self, queue: str) -> int:
        pool = await self.connection()
        return int(await pool.zcard(queue_key(queue)))
