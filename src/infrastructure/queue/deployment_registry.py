"""What the fleet shares in Redis: live workers, allowed code versions, the API's data fingerprint.

Keys (all under the protocol version, next to the `jobs:v1:*` queues):
- `workers:v1:{worker_id}`   JSON `WorkerRecord`, expiring after three missed beats
- `workers:v1:index`         sorted set worker_id → last beat (ms), for listing
- `workers:v1:seen`          sorted set worker_id → last beat (ms), kept a day, exited ones included
- `workers:v1:stopped`       sorted set worker_id → when it stopped cleanly (ms), kept a day
- `workers:v1:about`         hash worker_id → JSON {queue, version, hostname}, for the lost ones
- `deploy:v1:versions`       set of code versions allowed to claim jobs
- `deploy:v1:retired`        set of code versions retired by an operator: never allowed again by
                             an API or a first worker of that version, only by `allow-version`
- `deploy:v1:fingerprint`    JSON {fingerprint, store, redis_db, published_at} written by the API
A worker's beat is one round trip: record, index, lease renewals and the two reads it decides on.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import TypeVar, cast

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from src.domain.jobs import PROTOCOL_VERSION
from src.domain.workers import LostWorker, WorkerRecord, data_fingerprint
from src.infrastructure.queue.keys import IN_PROGRESS_PREFIX
from src.infrastructure.queue.scripts import ALLOW_FIRST_VERSION, ANNOUNCE, RELEASE_LEASE, RENEW_LEASES
from src.infrastructure.redis_problems import redis_problem

T = TypeVar("T")

WORKER_KEY_PREFIX = f"workers:{PROTOCOL_VERSION}:"
WORKER_INDEX_KEY = f"workers:{PROTOCOL_VERSION}:index"
WORKERS_SEEN_KEY = f"workers:{PROTOCOL_VERSION}:seen"  # every worker id by last beat, kept a day
WORKERS_STOPPED_KEY = f"workers:{PROTOCOL_VERSION}:stopped"  # clean stops, kept a day
WORKERS_ABOUT_KEY = f"workers:{PROTOCOL_VERSION}:about"  # what a worker was, once its record expired
SEEN_RETENTION_MS = 24 * 3600 * 1000
VERSIONS_KEY = f"deploy:{PROTOCOL_VERSION}:versions"
RETIRED_KEY = f"deploy:{PROTOCOL_VERSION}:retired"
FINGERPRINT_KEY = f"deploy:{PROTOCOL_VERSION}:fingerprint"
WRITE_PROBE_KEY = f"health:{PROTOCOL_VERSION}:write-probe"


async def _reply(value: Awaitable[T] | T) -> T:
    """redis-py types its commands as sync-or-async; on an asyncio client they are awaitable."""
    return await cast(Awaitable[T], value)


class DeploymentRegistry:
    def __init__(self, pool: ArqRedis) -> None:
        self._pool = pool
        self._allow_first = pool.register_script(ALLOW_FIRST_VERSION)
        self._release = pool.register_script(RELEASE_LEASE)
        self._renew = pool.register_script(RENEW_LEASES)
        self._announce = pool.register_script(ANNOUNCE)

    # versions
    async def allow_first_version(self, version: str) -> bool:
        """Allow `version` only if no version is allowed yet (an empty deployment); True if it was."""
        return bool(await self._allow_first(keys=[VERSIONS_KEY, RETIRED_KEY], args=[version]))

    async def allow_version(self, version: str) -> None:
        async with self._pool.pipeline(transaction=True) as pipe:
            pipe.sadd(VERSIONS_KEY, version)
            pipe.srem(RETIRED_KEY, version)
            await pipe.execute()

    async def retire_version(self, version: str) -> bool:
        """Fence `version` for good: no API or first worker of it allows it again (only
        `allow_version` does). True when it was allowed until now."""
        async with self._pool.pipeline(transaction=True) as pipe:
            pipe.srem(VERSIONS_KEY, version)
            pipe.sadd(RETIRED_KEY, version)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def retired_versions(self) -> set[str]:
        return {v.decode() for v in await _reply(self._pool.smembers(RETIRED_KEY))}

    async def allowed_versions(self) -> set[str]:
        return {v.decode() for v in await _reply(self._pool.smembers(VERSIONS_KEY))}

    async def announce(self, version: str, *, store: str, data_key: str, redis_db: int) -> tuple[str, bool]:
        """What an API does at start and on every beat: publish its data fingerprint (of `data_key`;
        `store` is the route, shown to people) and allow its own version (never retiring others)
        unless an operator retired it, in one round trip; returns (the fingerprint, whether its
        version is allowed)."""
        fingerprint = data_fingerprint(redis_db, data_key)
        body = {
            "fingerprint": fingerprint,
            "store": store,
            "redis_db": redis_db,
            "published_at": datetime.now(UTC).isoformat(),
        }
        allowed = await self._announce(
            keys=[VERSIONS_KEY, RETIRED_KEY, FINGERPRINT_KEY], args=[version, json.dumps(body)]
        )
        return fingerprint, bool(allowed)

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
            about = {"queue": record.queue, "version": record.version, "hostname": record.hostname}
            pipe.hset(WORKERS_ABOUT_KEY, record.worker_id, json.dumps(about))
            if job_ids:
                keys = [IN_PROGRESS_PREFIX + job_id for job_id in job_ids]
                args: list[str | int] = [record.worker_id, lease_ms, queue_key, *job_ids]
                await self._renew(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        return int(replies[5]) if job_ids else 0

    async def write_problem(self) -> str | None:
        """None when Redis takes a write; else why not, OOM named as OOM (a Redis at `maxmemory`
        with `noeviction` answers reads and PING but refuses every write: enqueues included)."""
        try:
            await self._pool.set(WRITE_PROBE_KEY, datetime.now(UTC).isoformat(), px=60_000)
        except (RedisError, OSError) as exc:
            return redis_problem(exc)
        return None

    async def seen_workers(self, since: datetime) -> set[str]:
        ids = await self._pool.zrangebyscore(WORKERS_SEEN_KEY, int(since.timestamp() * 1000), "+inf")
        return {i.decode() for i in ids}

    async def lease_counts(self, queue_keys: Sequence[str]) -> dict[str, int]:
        """Jobs each worker holds a lease on now, counted from the leases themselves (a worker's own
        record says so only as of its last beat). Running jobs are the ones scored in the future;
        deferred retries, also there, hold no lease."""
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        counts: dict[str, int] = {}
        for queue in queue_keys:
            ids = await self._pool.zrangebyscore(queue, f"({now_ms}", "+inf")
            if not ids:
                continue
            holders = await self._pool.mget([IN_PROGRESS_PREFIX + i.decode() for i in ids])
            for holder in holders:
                if holder is not None:
                    counts[holder.decode()] = counts.get(holder.decode(), 0) + 1
        return counts

    async def release_lease(self, job_id: str, worker_id: str) -> bool:
        return bool(await self._release(keys=[IN_PROGRESS_PREFIX + job_id], args=[worker_id]))

    async def remove_worker(self, worker_id: str) -> None:
        """A clean stop: the record goes, and the worker is remembered as stopped, not lost."""
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        async with self._pool.pipeline(transaction=True) as pipe:
            pipe.delete(WORKER_KEY_PREFIX + worker_id)
            pipe.zrem(WORKER_INDEX_KEY, worker_id)
            pipe.zadd(WORKERS_STOPPED_KEY, {worker_id: now_ms})
            pipe.zremrangebyscore(WORKERS_STOPPED_KEY, "-inf", now_ms - SEEN_RETENTION_MS)
            await pipe.execute()

    async def lost_workers(self, since: datetime) -> list[LostWorker]:
        """Workers that beat since `since` and then stopped beating without a clean stop (killed,
        frozen, their host gone), newest first; their records have expired, this list has not."""
        async with self._pool.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(WORKERS_SEEN_KEY, int(since.timestamp() * 1000), "+inf", withscores=True)
            pipe.zrange(WORKER_INDEX_KEY, 0, -1)
            pipe.zrangebyscore(WORKERS_STOPPED_KEY, int(since.timestamp() * 1000), "+inf")
            seen, indexed, stopped = await pipe.execute()
        gone_ids = {i.decode() for i in stopped}
        candidates = [(i.decode(), score) for i, score in seen if i.decode() not in gone_ids]
        if not candidates:
            return []
        live = await self._pool.mget([WORKER_KEY_PREFIX + i for i, _ in candidates])
        lost = [(i, score) for (i, score), raw in zip(candidates, live, strict=True) if raw is None]
        if not lost:
            return []
        abouts = await _reply(self._pool.hmget(WORKERS_ABOUT_KEY, [i for i, _ in lost]))
        found = []
        for (worker_id, score), raw in zip(lost, abouts, strict=True):
            about = json.loads(raw) if raw else {}
            last_beat = datetime.fromtimestamp(score / 1000, UTC)
            found.append(LostWorker(worker_id=worker_id, last_beat_at=last_beat, **about))
        return sorted(found, key=lambda w: w.last_beat_at, reverse=True)

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
