"""What the fleet shares in Redis: live workers, allowed code versions, the API's data fingerprint.

Keys (all under the protocol version, next to the `jobs:v1:*` queues):
- `workers:v1:{worker_id}`   JSON `WorkerRecord`, expiring after three missed beats
- `workers:v1:index`         sorted set worker_id → last beat (ms), for listing
- `deploy:v1:versions`       set of code versions allowed to claim jobs
- `deploy:v1:fingerprint`    JSON {fingerprint, store, redis_db, published_at} written by the API
A worker's beat is one round trip: record, index, lease renewals and the two reads it decides on.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import TypeVar, cast

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from src.domain.jobs import PROTOCOL_VERSION
from src.domain.workers import WorkerRecord, data_fingerprint

T = TypeVar("T")

WORKER_KEY_PREFIX = f"workers:{PROTOCOL_VERSION}:"
WORKER_INDEX_KEY = f"workers:{PROTOCOL_VERSION}:index"
WORKERS_SEEN_KEY = f"workers:{PROTOCOL_VERSION}:seen"  # every worker id by last beat, kept a day
SEEN_RETENTION_MS = 24 * 3600 * 1000
VERSIONS_KEY = f"deploy:{PROTOCOL_VERSION}:versions"
FINGERPRINT_KEY = f"deploy:{PROTOCOL_VERSION}:fingerprint"

# Renew a lease only while this worker holds it: a paused-then-resumed zombie cannot revive a lease
# another worker has taken since. The job's score on the queue is its lease's deadline (see the claim
# in src/worker/arq_worker.py): it moves with the lease, and only while the job is still queued.
# KEYS: in-progress keys. ARGV: worker id, lease ms, queue key, then the job ids. The deadline is on
# Redis's clock, as the lease's expiry is.
RENEW_LEASES = """
local t = redis.call('TIME')
local deadline = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]))
local renewed = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    redis.call('ZADD', ARGV[3], 'XX', deadline, ARGV[3 + i])
    renewed = renewed + 1
  end
end
return renewed
"""
ALLOW_FIRST_VERSION = """
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SADD', KEYS[1], ARGV[1]) return 1 end
return 0
"""
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def _reply(value: Awaitable[T] | T) -> T:
    """redis-py types its commands as sync-or-async; on an asyncio client they are awaitable."""
    return await cast(Awaitable[T], value)


class DeploymentRegistry:
    def __init__(self, pool: ArqRedis) -> None:
        self._pool = pool
        self._allow_first = pool.register_script(ALLOW_FIRST_VERSION)
        self._release = pool.register_script(RELEASE_LEASE)
        self._renew = pool.register_script(RENEW_LEASES)

    # versions
    async def allow_first_version(self, version: str) -> bool:
        """Allow `version` only if no version is allowed yet (an empty deployment); True if it was."""
        return bool(await self._allow_first(keys=[VERSIONS_KEY], args=[version]))

    async def allow_version(self, version: str) -> None:
        await _reply(self._pool.sadd(VERSIONS_KEY, version))

    async def retire_version(self, version: str) -> bool:
        return bool(await _reply(self._pool.srem(VERSIONS_KEY, version)))

    async def allowed_versions(self) -> set[str]:
        return {v.decode() for v in await _reply(self._pool.smembers(VERSIONS_KEY))}

    async def announce(self, version: str, *, store: str, redis_db: int) -> str:
        """What an API does at start and on every beat: allow its own version (never retiring
        others) and publish its data fingerprint, in one round trip; returns the fingerprint."""
        fingerprint = data_fingerprint(redis_db, store)
        body = {
            "fingerprint": fingerprint,
            "store": store,
            "redis_db": redis_db,
            "published_at": datetime.now(UTC).isoformat(),
        }
        async with self._pool.pipeline(transaction=False) as pipe:
            pipe.sadd(VERSIONS_KEY, version)
            pipe.set(FINGERPRINT_KEY, json.dumps(body))
            await pipe.execute()
        return fingerprint

    # data fingerprint
    async def published_fingerprint(self) -> dict[str, object] | None:
        raw = await self._pool.get(FINGERPRINT_KEY)
        return None if raw is None else dict(json.loads(raw))

    # workers
    async def read_policy(self, version: str, queue_key: str) -> tuple[bool, str | None, int]:
        """(is `version` allowed, the fingerprint the API published or None, jobs waiting on the
        queue) in one round trip."""
        async with self._pool.pipeline(transaction=False) as pipe:
            pipe.sismember(VERSIONS_KEY, version)
            pipe.get(FINGERPRINT_KEY)
            pipe.zcard(queue_key)
            allowed, raw, queued = await pipe.execute()
        return bool(allowed), None if raw is None else str(json.loads(raw)["fingerprint"]), int(queued)

    async def publish(
        self, record: WorkerRecord, *, ttl_ms: int, job_ids: Sequence[str], lease_ms: int, queue_key: str
    ) -> int:
        """Publish the worker's record and renew the leases it still holds (on `queue_key`, their
        scores too), in one round trip; return how many leases were renewed."""
        now_ms = int(record.last_beat_at.timestamp() * 1000)
        async with self._pool.pipeline(transaction=False) as pipe:
            pipe.set(WORKER_KEY_PREFIX + record.worker_id, record.model_dump_json(), px=ttl_ms)
            pipe.zadd(WORKER_INDEX_KEY, {record.worker_id: now_ms})
            pipe.zadd(WORKERS_SEEN_KEY, {record.worker_id: now_ms})
            pipe.zremrangebyscore(WORKERS_SEEN_KEY, "-inf", now_ms - SEEN_RETENTION_MS)
            if job_ids:
                keys = [in_progress_key_prefix + job_id for job_id in job_ids]
                args: list[str | int] = [record.worker_id, lease_ms, queue_key, *job_ids]
                await self._renew(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        return int(replies[4]) if job_ids else 0

    async def seen_workers(self, since: datetime) -> set[str]:
        ids = await self._pool.zrangebyscore(WORKERS_SEEN_KEY, int(since.timestamp() * 1000), "+inf")
        return {i.decode() for i in ids}

    async def release_lease(self, job_id: str, worker_id: str) -> bool:
        return bool(await self._release(keys=[in_progress_key_prefix + job_id], args=[worker_id]))

    async def remove_worker(self, worker_id: str) -> None:
        async with self._pool.pipeline(transaction=True) as pipe:
            pipe.delete(WORKER_KEY_PREFIX + worker_id)
            pipe.zrem(WORKER_INDEX_KEY, worker_id)
            await pipe.execute()

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        raw = await self._pool.get(WORKER_KEY_PREFIX + worker_id)
        return None if raw is None else WorkerRecord.model_validate_json(raw)

    async def list_workers(self) -> list[WorkerRecord]:
        """Live workers (expired records are pruned from the index as they are found)."""
        ids = [i.decode() for i in await self._pool.zrange(WORKER_INDEX_KEY, 0, -1)]
        if not ids:
            return []
        raws = await self._pool.mget([WORKER_KEY_PREFIX + i for i in ids])
        gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            await self._pool.zrem(WORKER_INDEX_KEY, *gone)
        return [WorkerRecord.model_validate_json(raw) for raw in raws if raw is not None]
