"""Our arq `Worker` subclass: the one place that reaches into arq's worker loop.

What it changes, and why:
- claims are batched in one Lua call and take a short *lease* (`JOB_LEASE_SECONDS`) whose value is
  this worker's id, instead of arq's anonymous `in-progress` key that lives for the longest timeout
  + 10 s: a killed worker's jobs are free again within about one lease;
- finishing a job (result, queue removal) only happens while this worker still holds the lease, so a
  paused-then-resumed zombie cannot overwrite or delete what a newer owner is doing;
- a heartbeat (`src/worker/heartbeat.py`) renews the leases, publishes the registry record and
  decides whether this worker may claim at all (version fencing, data fingerprint, drain).
It refuses to run without JSON (de)serializers or on a queue outside our protocol's namespace.
Every arq method overridden or relied on is in `RELIED_ON_ARQ_METHODS`, checked by a guard test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from src.domain.jobs import DONE_CHANNEL, PROTOCOL_VERSION, wake_channel
from src.infrastructure.redis_subscription import RedisSubscription
from src.worker.heartbeat import Heartbeat, LifecycleConfig

log = structlog.get_logger(__name__)

RELIED_ON_ARQ_METHODS: dict[str, tuple[str, ...]] = {
    "__init__": ("functions", "queue_name", "redis_pool", "burst", "on_startup", "on_shutdown",
                 "handle_signals", "job_completion_wait", "max_jobs", "job_timeout", "keep_result",
                 "poll_delay", "max_tries", "health_check_interval", "health_check_key", "ctx",
                 "job_serializer", "job_deserializer", "cron_jobs"),
    "main": (),
    "run": (),
    "async_run": (),
    "close": (),
    "run_job": ("job_id", "score"),
    "start_jobs": ("job_ids",),
    "finish_job": ("job_id", "finish", "result_data", "result_timeout_s", "keep_result_forever",
                   "incr_score", "keep_in_progress"),
    "finish_failed_job": ("job_id", "result_data"),
    "handle_sig_wait_for_completion": ("signum",),
    "_release_sem_dec_counter_on_complete": (),
    "run_cron": ("n", "delay", "num_windows"),
    "_poll_iteration": (),
}  # fmt: skip

# ARGV: now_ms, worker_id, lease_ms, in-progress prefix, job ids...  →  flat [id, score, ...]
# ARGV: now_ms, worker_id, lease_ms, in-progress prefix, limit, job ids...  →  flat [id, score, ...]
CLAIM_SCRIPT = """
local claimed = {}
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[5])
for i = 6, #ARGV do
  if #claimed >= 2 * limit then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    if redis.call('SET', ARGV[4] .. id, ARGV[2], 'NX', 'PX', ARGV[3]) then
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
"""
# KEYS: in-progress, result, retry, job, abort set, queue, done channel (a finished job's id is
#       published there for the callers waiting on it).
# ARGV: worker_id, finish (0|1), result or '', result px (0: keep), keep-in-progress px or '',
#       incr score or '', job id
FINISH_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[5] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
if ARGV[2] == '1' then
  if ARGV[3] ~= '' then
    if ARGV[4] == '0' then redis.call('SET', KEYS[2], ARGV[3])
    else redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4]) end
  end
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('ZREM', KEYS[5], ARGV[7])
  redis.call('ZREM', KEYS[6], ARGV[7])
  redis.call('PUBLISH', KEYS[7], ARGV[7])
elseif ARGV[6] ~= '' then
  redis.call('ZINCRBY', KEYS[6], ARGV[6], ARGV[7])
end
return 1
"""


class AppWorker(Worker):
    """arq's worker, constrained to our protocol, with leases and a heartbeat."""

    def __init__(self, *args: Any, worker_id: str, lifecycle: LifecycleConfig, **kwargs: Any) -> None:
        queue_name = kwargs.get("queue_name")
        if not isinstance(queue_name, str) or not queue_name.startswith(f"jobs:{PROTOCOL_VERSION}:"):
            raise ValueError(f"queue {queue_name!r} is outside the jobs:{PROTOCOL_VERSION}: namespace")
        if kwargs.get("job_serializer") is None or kwargs.get("job_deserializer") is None:
            raise ValueError("AppWorker needs the JSON job serializer and deserializer (never pickle)")
        super().__init__(*args, **kwargs)
        self.worker_id = worker_id
        self.lifecycle = lifecycle
        # arq sets in-progress keys for the longest timeout + 10 s; ours are leases renewed each beat.
        self.in_progress_timeout_s = lifecycle.lease_s
        self.allow_pick_jobs = False  # until the first beat says this worker may claim
        self._claim = self.pool.register_script(CLAIM_SCRIPT)
        self._finish = self.pool.register_script(FINISH_SCRIPT)
        self.heartbeat = Heartbeat(self)
        self._crons_started = False
        self._slot_free = asyncio.Event()
        self._claimed = 0
        # An enqueue publishes on the queue's wake channel: an idle worker claims at once instead of
        # at its next poll; the poll delay stays as the safety net (and in burst mode).
        self._woken = asyncio.Event()
        self._wake_subscription = RedisSubscription(
            self.pool, wake_channel(queue_name), lambda _: self._woken.set()
        )
        original_startup = self.on_startup

        async def startup_then_beat(ctx: dict[Any, Any]) -> None:
            if original_startup is not None:
                await original_startup(ctx)
            await self.heartbeat.start()
            if not self.burst:
                self._wake_subscription.start()

        self.on_startup = startup_then_beat

    async def _poll_iteration(self) -> None:
        """arq's poll, with three changes. While the queue keeps giving jobs, poll again as soon as a
        slot is free instead of sleeping the poll delay (no cliff for jobs longer than the delay).
        When it gives none, wait for a wake-up (an enqueue) for up to the poll delay and poll at once
        when one comes; arq's loop then has no delay left to sleep. And survive a Redis outage:
        log, back off, poll again (never exit)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.poll_delay_s
        try:
            while True:
                self._claimed = 0
                self._woken.clear()  # a wake-up arriving during this poll triggers the next one
                await super()._poll_iteration()
                if not self.allow_pick_jobs:
                    return
                if self._claimed:
                    if self.job_counter >= self.max_jobs and not await self._slot_freed(self.poll_delay_s):
                        return
                    continue
                if self.burst or not await self._wake_or_slot(until - loop.time()):
                    return
        except (RedisError, OSError) as exc:
            log.error("redis unreachable: retrying", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(min(2.0, 10 * self.poll_delay_s))

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim the ids read by this poll in batches of the free slots (one Lua call per batch, each
        claim a lease held by this worker). Between batches it waits for a slot to free up instead of
        for the next poll, so short jobs are not capped at `max_jobs` per poll delay."""
        candidates = [i for i in (j.decode() for j in job_ids) if i not in self.tasks]
        lease_ms = int(self.lifecycle.lease_s * 1000)
        while candidates and self.allow_pick_jobs:
            free = self.max_jobs - self.job_counter
            if free <= 0:
                if not await self._slot_freed(self.poll_delay_s):
                    return  # nothing finished within a poll delay: let the poll loop run (heartbeat, aborts)
                continue
            batch, candidates = candidates[: free * 4], candidates[free * 4 :]
            reply = await self._claim(
                keys=[self.queue_name],
                args=[timestamp_ms(), self.worker_id, lease_ms, in_progress_key_prefix, free, *batch],
            )
            for job_id_b, score_b in zip(reply[::2], reply[1::2], strict=True):
                job_id = job_id_b.decode() if isinstance(job_id_b, bytes) else str(job_id_b)
                await self.sem.acquire()
                self.job_counter += 1
                task = self.loop.create_task(self.run_job(job_id, int(float(score_b))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task
                self._claimed += 1

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_free.set()
        limit = self.lifecycle.max_jobs_before_restart
        if limit and self.jobs_complete + self.jobs_failed + self.jobs_retried >= limit:
            self.drain(f"WORKER_MAX_JOBS_BEFORE_RESTART reached ({limit} jobs)")

    async def _wake_or_slot(self, timeout: float) -> bool:
        """Nothing claimed: wait for an enqueue's wake-up (or, when every slot is busy, for a slot).
        False when `timeout` passed first."""
        if timeout <= 0:
            return False
        if self.job_counter >= self.max_jobs:
            return await self._slot_freed(timeout)
        try:
            await asyncio.wait_for(self._woken.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _slot_freed(self, timeout: float) -> bool:
        self._slot_free.clear()
        if self.job_counter < self.max_jobs:
            return True
        try:
            await asyncio.wait_for(self._slot_free.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's finish, applied only while this worker holds the job's lease."""
        expire_ms = 0 if keep_result_forever or not result_timeout_s else to_ms(result_timeout_s)
        applied = await self._finish(
            keys=self._finish_keys(job_id),
            args=[
                self.worker_id,
                "1" if finish else "0",
                result_data or b"",
                expire_ms or 0,
                "" if keep_in_progress is None else to_ms(keep_in_progress),
                "" if not incr_score else incr_score,
                job_id,
            ],
        )
        if not applied:
            log.warning("lease lost before finishing: result left to the current owner", job_id=job_id)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        keep = self.keep_result_forever or self.keep_result_s > 0
        await self.finish_job(
            job_id,
            True,
            result_data if keep else None,
            None if self.keep_result_forever else self.keep_result_s,
            self.keep_result_forever,
            None,
            None,
        )

    def _finish_keys(self, job_id: str) -> list[str]:
        return [
            in_progress_key_prefix + job_id,
            result_key_prefix + job_id,
            retry_key_prefix + job_id,
            job_key_prefix + job_id,
            abort_jobs_ss,
            self.queue_name,
            DONE_CHANNEL,
        ]

    async def run_cron(self, n: Any, delay: float, num_windows: int = 2) -> None:
        """In burst mode, run-at-startup crons fire once and nothing is scheduled after, so a burst of
        the maintenance queue ends instead of finding a new cron job every tick."""
        if self.burst and self._crons_started:
            return
        await super().run_cron(n, delay, num_windows)
        self._crons_started = True

    def release_running_jobs(self, reason: str) -> int:
        """Cancel every running job: arq puts each back on the queue at once, the ledger records an
        interruption (never a used try), and other workers take them over."""
        running = [t for t in self.tasks.values() if not t.done()]
        for task in running:
            task.cancel()
        if running:
            log.error("releasing running jobs", count=len(running), reason=reason)
        return len(running)

    def drain(self, reason: str) -> None:
        """Stop claiming, let running jobs finish within the completion wait, then exit 0."""
        if self.heartbeat.draining:
            return
        self.heartbeat.draining = True
        log.warning("draining: the worker will exit when running jobs are done", reason=reason)
        import signal

        self.handle_sig_wait_for_completion(signal.SIGTERM)

    def handle_sig_wait_for_completion(self, signum: Any) -> None:
        self.heartbeat.draining = True
        super().handle_sig_wait_for_completion(signum)

    async def close(self) -> None:
        await self._wake_subscription.stop()
        await self.heartbeat.stop()
        log.info(
            "worker stopped",
            jobs_complete=self.jobs_complete,
            jobs_failed=self.jobs_failed,
            jobs_retried=self.jobs_retried,
        )
        try:
            await super().close()
        except (RedisError, OSError) as exc:  # Redis gone at shutdown: the records expire by themselves
            log.warning("Redis unreachable while closing", error=type(exc).__name__)
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
            await self.pool.aclose(close_connection_pool=True)
            self._pool = None

    async def wait_idle(self, timeout: float) -> None:
        """Test helper: wait until no job task is running (bounded)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while any(not t.done() for t in self.tasks.values()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("jobs still running")
            await asyncio.sleep(0.05)
