"""The worker's side of the queue: claim ready jobs under a lease, finish them, give them back, and
read the operators' abort requests. The scripts are in `scripts.py`; this module sends them.

The fast path lives here and in `handoff.py`:
- a claim reads the ready jobs, takes up to the free slots' worth and fetches their payloads, try
  counts and abort flags in one Lua call (arq: one read, then a transaction per job);
- finishes go through a `ScriptBatcher`: jobs finishing together share one round trip;
- an idle worker waits for a direct hand-off (`handoff.py`) instead of a wake-up and a claim.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from redis.asyncio import Redis

from src.infrastructure.queue.keys import (
    ABORT_MAX_AGE_MS,
    ABORT_SET,
    IN_PROGRESS_PREFIX,
    JOB_PREFIX,
    RESULT_PREFIX,
    RETRY_KEY_TTL_S,
    RETRY_PREFIX,
    ClaimedJob,
    now_ms,
    reply_text,
)
from src.infrastructure.queue.script_batcher import ScriptBatcher, through_cancellation
from src.infrastructure.queue.scripts import CLAIM_SCRIPT, ENQUEUE_TICK_SCRIPT, FINISH_SCRIPT


class LeaseConsumer:
    """One worker's claims and finishes on one queue (`queue_name`: its sorted set's key)."""

    def __init__(self, redis: Redis, queue_name: str, worker_id: str, lease_ms: int) -> None:
        self._redis = redis
        self.queue_name = queue_name
        self.worker_id = worker_id
        self.lease_ms = lease_ms
        self._claim = ScriptBatcher(redis, CLAIM_SCRIPT).call_now  # one claim at a time: never batched
        self._finish = ScriptBatcher(redis, FINISH_SCRIPT)  # jobs finishing together: one round trip
        self._keys = (queue_name, ABORT_SET)
        self._enqueue_tick = redis.register_script(ENQUEUE_TICK_SCRIPT)

    async def claim(self, free: int, read_cap: int) -> tuple[list[ClaimedJob], bool]:
        """Claim up to `free` ready jobs, reading at most `read_cap` ids (others' running jobs are
        skipped); the jobs, and whether the queue may hold more ready jobs."""
        reply = await self._claim(
            self._keys,
            (now_ms(), self.worker_id, self.lease_ms, IN_PROGRESS_PREFIX, free, read_cap, JOB_PREFIX,
             RETRY_PREFIX),
        )  # fmt: skip
        rows = (reply[i : i + 5] for i in range(1, len(reply), 5))
        jobs = [
            ClaimedJob(reply_text(job_id), int(float(score)), payload or None, int(job_try), bool(aborted))
            for job_id, score, payload, job_try, aborted in rows
        ]
        return jobs, bool(jobs) and int(reply[0]) == 1

    async def finish(
        self,
        job_id: str,
        *,
        done: bool,
        result: bytes | None = None,
        result_ms: int = 0,
        keep_lease_ms: int | None = None,
        score: int | None = None,
    ) -> bool:
        """End this worker's run of `job_id`, only while it holds the lease (False when it no longer
        does: the current owner decides). `done`: off the queue, `result` stored for `result_ms` (0:
        kept), its id published on the done channel. Else it stays queued at `score` (a retry, or
        put back as the worker stops). `keep_lease_ms` keeps the lease that long instead of
        deleting it (a cron tick: no second run of it). Completes even if the caller is cancelled
        meanwhile (a job's end is always recorded)."""
        lease = "" if keep_lease_ms is None else keep_lease_ms
        args = [
            self.worker_id,
            "1" if done else "0",
            result or b"",
            result_ms,
            lease,
            "" if score is None else score,
            job_id,
        ]
        return bool(await through_cancellation(self._finish.submit(self._keys, args)))

    async def abort_requests(self, running: Collection[str]) -> set[str]:
        """The running jobs among `running` an operator asked to cancel (their requests are then
        consumed); requests older than `ABORT_MAX_AGE_MS` are dropped."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrange(ABORT_SET, 0, -1)
            pipe.zremrangebyscore(ABORT_SET, "-inf", now_ms() - ABORT_MAX_AGE_MS)  # (arq's drops none)
            requested, _ = await pipe.execute()
        aborted = {job_id for job_id in map(reply_text, requested) if job_id in running}
        if aborted:
            await self._redis.zrem(ABORT_SET, *aborted)
        return aborted

    async def raise_try(self, job_id: str, job_try: int) -> None:
        """Record the try count an enqueuer set above the transport's own (arq's `_job_try`)."""
        await self._redis.setex(RETRY_PREFIX + job_id, RETRY_KEY_TTL_S, str(job_try))

    async def queued(self) -> int:
        """Jobs on the queue, ready, scheduled or running (a burst ends when none is left)."""
        return int(await self._redis.zcard(self.queue_name))

    async def enqueue_tick(self, job_id: str, payload: bytes, run_at: datetime) -> bool:
        """Queue a cron tick under its unique id (one per tick across the queue's workers): False
        when that tick is already queued, running or done. The payload expires a day after it.
        A finished tick is told by its result or by the lease it keeps (`CRON_LEASE_KEEP_MS`):
        a cron stores no result by default (arq's `keep_result=0`), and a worker whose schedule
        lags would otherwise queue a tick again that another worker has run. One script: two
        lagging workers cannot both queue it."""
        score = int(run_at.timestamp() * 1000)
        expire_ms = max(score - now_ms(), 0) + 86_400_000
        keys = (JOB_PREFIX + job_id, RESULT_PREFIX + job_id, IN_PROGRESS_PREFIX + job_id, self.queue_name)
        return bool(await self._enqueue_tick(keys=keys, args=(payload, expire_ms, score, job_id)))
