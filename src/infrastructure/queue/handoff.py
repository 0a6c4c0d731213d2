"""Direct hand-off: an idle worker registers itself and blocks on its own inbox, and an enqueue gives
the new job straight to it (`ENQUEUE_MANY_SCRIPT` in src/infrastructure/queue/redis_queue.py), as
SAQ's blocking pop does. A single job then costs no wake-up message and no claim round trip between
the enqueue and the run: the job arrives with its lease (valued with this worker's id), payload and
try count.

The protocol, and why nothing is lost:
- `wait` registers (a sorted-set member that lapses after the wait, on Redis's clock) and blocks on
  the inbox in one round trip. An enqueue that hands a job over removes the registration in the same
  script, so a worker gets at most one job per registration.
- `unblock` ends a wait early (the worker was woken for jobs nobody was handed, or may no longer
  claim): it deregisters and pushes that wait's stop token, so the blocking pop returns at once (or
  the registration, if the token overtook it, does not happen); a job handed over just before is
  returned by that pop all the same.
- Items left in the inbox (a job pushed as a wait timed out) are collected by the next registration,
  or by `take_leftovers` when the worker stops, and given back with `release`.
- A job handed to a worker that dies before running it keeps its lease until the lease lapses
  (`JOB_LEASE_SECONDS`); it is still on the queue, so another worker claims it then, as any job of a
  dead worker.
"""

from __future__ import annotations

import structlog
from redis.asyncio import Redis

from src.infrastructure.queue.keys import (
    ABORT_SET,
    IN_PROGRESS_PREFIX,
    RETRY_PREFIX,
    ClaimedJob,
    idle_workers_key,
    inbox_key,
    now_ms,
    parse_handed_job,
    wake_channel,
)
from src.infrastructure.queue.scripts import REGISTER_SCRIPT, RELEASE_SCRIPT, STOP_SCRIPT

log = structlog.get_logger(__name__)

MIN_WAIT_S = 0.01  # a blocking pop with timeout 0 would block forever
MIN_WAIT_S = 0.01  # a blocking pop with timeout 0 would block forever


class Handoff:
    """One worker's registration for direct hand-offs on one queue."""

    def __init__(self, redis: Redis, queue_name: str, worker_id: str, lease_ms: int) -> None:
        self._redis = redis
        self._worker_id = worker_id
        self._wake_channel = wake_channel(queue_name)
        self._queue_key = queue_name  # arq's queue name is its sorted set's key
        self._keys = [idle_workers_key(queue_name), inbox_key(queue_name, worker_id)]
        self._member = f"{lease_ms} {worker_id}"
        self._stop = redis.register_script(STOP_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self.waiting = False  # a wait is in flight (registered or about to be)
        self._wait_number = 0  # tells this wait's stop token from a stale one
        self._unblocking = False

    async def wait(self, timeout: float) -> list[ClaimedJob]:
        """Register and block up to `timeout` s for a job; the jobs handed over (none on timeout or
        `unblock`). EVAL, not EVALSHA: the pair is pipelined and must not fail on an empty script
        cache (a restarted Redis) while the pop behind it blocks; Redis caches the compiled script."""
        timeout = max(MIN_WAIT_S, timeout)
        self._wait_number += 1
        self.waiting, self._unblocking = True, False
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.eval(REGISTER_SCRIPT, 2, *self._keys, self._member, str(int(timeout * 1000)),
                          str(self._wait_number))  # fmt: skip
                pipe.execute_command("BLPOP", self._keys[1], f"{timeout:.3f}")  # seconds, fractional
                leftovers, popped = await pipe.execute()
        finally:
            self.waiting = False
        items: list[bytes] = list(leftovers)
        if popped is not None:
            items.append(popped[1])
        return _parsed(items)

    async def unblock(self) -> None:
        """End the wait in flight (once; nothing when none is): deregister and release its pop."""
        if not self.waiting or self._unblocking:
            return
        self._unblocking = True
        await self._stop(keys=self._keys, args=[self._member, "0", str(self._wait_number)])

    async def take_leftovers(self) -> list[ClaimedJob]:
        """Deregister and take what the inbox still holds (the worker is stopping)."""
        items = await self._stop(keys=self._keys, args=[self._member, "1", "0"])
        return _parsed(items)

    async def release(self, job: ClaimedJob) -> None:
        """Give back a job handed to this worker that it will not run (it may no longer claim)."""
        await self._release(
            keys=[IN_PROGRESS_PREFIX + job.job_id, RETRY_PREFIX + job.job_id, ABORT_SET,
                  self._wake_channel, self._queue_key],
            args=[self._worker_id, job.job_id, "1" if job.aborted else "0", now_ms(), job.score],
        )  # fmt: skip
        log.info("handed job given back", job_id=job.job_id)


def _parsed(items: list[bytes]) -> list[ClaimedJob]:
    jobs = []
    for item in items:
        if not item[:1].isdigit():
            continue  # a stop token
        try:
            jobs.append(parse_handed_job(item))
        except ValueError as exc:  # not ours to run: its lease lapses and a claim takes it then
            log.error("malformed hand-off item dropped", error=str(exc), size=len(item))
    return jobs
