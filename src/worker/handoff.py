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
from arq.constants import abort_jobs_ss, in_progress_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from src.domain.jobs import HandedJob, idle_workers_key, inbox_key, parse_handed_job, wake_channel

log = structlog.get_logger(__name__)

# Job items start with their try count (a digit); anything else in an inbox is a stop token: '' (the
# registration found jobs waiting) or 'stop:<wait number>' (`unblock` of that wait).
# KEYS: idle workers, inbox. ARGV: member, wait ms, wait number.
# Jobs left in the inbox come back, and so does an `unblock` of this very wait that overtook the
# registration (it travels on another connection): in both cases the worker is not registered and
# the blocking pop sent with this call is released at once. Otherwise registers until now + wait on
# Redis's clock and returns nothing. Stop tokens of earlier waits are dropped, and registrations
# that lapsed (workers that died waiting) removed.
REGISTER_SCRIPT = """
local items = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
local jobs, stopped = {}, false
for _, item in ipairs(items) do
  if string.find(item, '^%d') then jobs[#jobs + 1] = item
  elseif item == 'stop:' .. ARGV[3] then stopped = true end
end
if #jobs > 0 or stopped then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('RPUSH', KEYS[2], '')
  redis.call('PEXPIRE', KEYS[2], 60000)
  return jobs
end
local t = redis.call('TIME')
local now, wait = t[1] * 1000 + math.floor(t[2] / 1000), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))  -- lapsed (dead) workers
redis.call('ZADD', KEYS[1], string.format('%d', now + wait), ARGV[1])
if redis.call('PTTL', KEYS[1]) < wait + 60000 then redis.call('PEXPIRE', KEYS[1], wait + 60000) end
return jobs
"""
# KEYS: idle workers, inbox. ARGV: member, take (1: return the inbox's jobs and delete it;
# 0: release the blocking pop of wait number ARGV[3] with its stop token).
STOP_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  local items = redis.call('LRANGE', KEYS[2], 0, -1)
  redis.call('DEL', KEYS[2])
  local jobs = {}
  for _, item in ipairs(items) do
    if string.find(item, '^%d') then jobs[#jobs + 1] = item end
  end
  return jobs
end
redis.call('RPUSH', KEYS[2], 'stop:' .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], 60000)
return {}
"""
# KEYS: in-progress, retry, abort set, wake channel, queue. ARGV: worker id, job id, aborted (0|1),
# now ms, the job's score. Gives back a job handed to this worker that it will not run: the lease
# and the try go, the job's score is its own again instead of the lease's deadline, the abort request
# (if one came with it) stays, and idle workers are woken to claim the job.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
  redis.call('ZADD', KEYS[5], 'XX', ARGV[5], ARGV[2])
end
if ARGV[3] == '1' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2]) end
redis.call('PUBLISH', KEYS[4], 1)
return 1
"""
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

    async def wait(self, timeout: float) -> list[HandedJob]:
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

    async def take_leftovers(self) -> list[HandedJob]:
        """Deregister and take what the inbox still holds (the worker is stopping)."""
        items = await self._stop(keys=self._keys, args=[self._member, "1", "0"])
        return _parsed(items)

    async def release(self, job: HandedJob) -> None:
        """Give back a job handed to this worker that it will not run (it may no longer claim)."""
        await self._release(
            keys=[in_progress_key_prefix + job.job_id, retry_key_prefix + job.job_id, abort_jobs_ss,
                  self._wake_channel, self._queue_key],
            args=[self._worker_id, job.job_id, "1" if job.aborted else "0", timestamp_ms(), job.score],
        )  # fmt: skip
        log.info("handed job given back", job_id=job.job_id)


def _parsed(items: list[bytes]) -> list[HandedJob]:
    jobs = []
    for item in items:
        if not item[:1].isdigit():
            continue  # a stop token
        try:
            jobs.append(parse_handed_job(item))
        except ValueError as exc:  # not ours to run: its lease lapses and a claim takes it then
            log.error("malformed hand-off item dropped", error=str(exc), size=len(item))
    return jobs
