"""Our arq `Worker` subclass: the one place that reaches into arq's worker loop.

What it changes, and why:
- claims are batched in one Lua call and take a short *lease* (`JOB_LEASE_SECONDS`) whose value is
  this worker's id, instead of arq's anonymous `in-progress` key that lives for the longest timeout
  + 10 s: a killed worker's jobs are free again within about one lease;
- a claimed job's score on the queue is its lease's deadline, so running jobs are out of the range
  a claim reads (arq reads `queue_read_limit` ids and tries each, running or not);
- freed slots are gathered into one claim only while the process is short of CPU (`CpuLoad`);
- finishing a job (result, queue removal) only happens while this worker still holds the lease, so a
  paused-then-resumed zombie cannot overwrite or delete what a newer owner is doing;
- a heartbeat (`src/worker/heartbeat.py`) renews the leases, publishes the registry record and
  decides whether this worker may claim at all (version fencing, data fingerprint, drain);
- an idle worker waits for a direct hand-off (`src/worker/handoff.py`): an enqueue gives it the job,
  lease included, without a wake-up and a claim round trip.
It refuses to run without JSON (de)serializers or on a queue outside our protocol's namespace.
Every arq method overridden or relied on is in `RELIED_ON_ARQ_METHODS`, checked by a guard test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import structlog
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    keep_cronjob_progress,
    result_key_prefix,
    retry_key_prefix,
)
from arq.cron import CronJob
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import ms_to_datetime, timestamp_ms, to_ms
from arq.worker import (
    Function,
    JobExecutionFailed,
    Retry,
    RetryJob,
    Worker,
    no_result,
)
from redis.exceptions import RedisError

from src.domain.jobs import DONE_CHANNEL, PROTOCOL_VERSION, HandedJob, wake_channel
from src.infrastructure.redis_problems import RedisProblemLog
from src.infrastructure.redis_script_batcher import ScriptBatcher, through_cancellation
from src.infrastructure.redis_subscription import RedisSubscription
from src.worker.cpu_load import CpuLoad
from src.worker.handoff import Handoff
from src.worker.heartbeat import Heartbeat, LifecycleConfig
from src.worker.job_runner import JobFailed

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
    "run_job": ("job_id", "score"),  # ours for the jobs our claim fetched; arq's otherwise
    "_jobs_started": (),
    "_cancel_aborted_jobs": (),
    "heart_beat": (),
    "finish_job": ("job_id", "finish", "result_data", "result_timeout_s", "keep_result_forever",
                   "incr_score", "keep_in_progress"),
    "finish_failed_job": ("job_id", "result_data"),
    "handle_sig_wait_for_completion": ("signum",),
    "_release_sem_dec_counter_on_complete": (),
    "run_cron": ("n", "delay", "num_windows"),
    "_poll_iteration": (),
}  # fmt: skip
# Worker attributes read or set here (checked by the guard test on a built worker).
RELIED_ON_ARQ_ATTRIBUTES = ("queue_read_limit", "max_burst_jobs", "allow_abort_jobs", "allow_pick_jobs",
                            "job_counter", "sem", "tasks", "job_tasks", "in_progress_timeout_s")  # fmt: skip

# Read the ready jobs, claim up to `limit` of them and fetch what running them needs, in one call
# (arq reads, then claims per job, then fetches per job in a transaction of its own).
# KEYS: queue, abort set. ARGV: now_ms, worker_id, lease_ms, in-progress prefix, limit, read cap,
# job key prefix, retry key prefix.
# Returns {more (1: the queue may hold more ready jobs), then per claimed job: id, score, payload or
# false, try, aborted (0|1)}. Each claim is a lease (the in-progress key, valued with this worker's
# id) only this worker's finish clears; the try count and abort flag are arq's (`INCR` of its retry
# key, `ZREM` from its abort set). A claimed job's score becomes its lease's deadline: running jobs
# leave the ready range, so a claim reads only what it can take (arq reads `queue_read_limit` ids
# and tries each: with as many jobs running across the workers, nobody could claim the next one).
# Should the worker die, the score and the lease lapse together and the job is ready again (the
# deadline is on Redis's clock, as the lease's expiry and a hand-off's deadline are). Ids that
# another worker holds are skipped, reading further, up to the read cap.
CLAIM_SCRIPT = """
local limit, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local deadline = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]))
local claimed = {0}
local skipped, read = 0, 0
while true do
  local want = math.min(limit + 1, cap - read)
  if want <= 0 then claimed[1] = 1 break end
  local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', skipped, want)
  read = read + #ready / 2
  for i = 1, #ready, 2 do
    if (#claimed - 1) / 5 >= limit then claimed[1] = 1 break end
    local id = ready[i]
    if redis.call('SET', ARGV[4] .. id, ARGV[2], 'NX', 'PX', ARGV[3]) then
      redis.call('ZADD', KEYS[1], 'XX', deadline, id)
      local try = redis.call('INCR', ARGV[8] .. id)
      redis.call('EXPIRE', ARGV[8] .. id, 88400)
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = ready[i + 1]
      claimed[#claimed + 1] = redis.call('GET', ARGV[7] .. id)
      claimed[#claimed + 1] = try
      claimed[#claimed + 1] = redis.call('ZREM', KEYS[2], id)
    else
      skipped = skipped + 1
    end
  end
  if claimed[1] == 1 or #ready / 2 < want then break end
end
return claimed
"""
RETRY_KEY_TTL_S = 88400  # arq's
HANDOFF_SETTLE_S = 0.005  # how long a job just handed over has the loop to itself (`_let_run`)
HANDOFF_REARM_S = 0.002  # and, once it has finished, how long before registering again (`_let_run`)
BUSY_CLAIM_GATHER_S = 0.003  # a CPU-bound worker's wait for more freed slots before a claim
# KEYS: queue, abort set. ARGV: worker_id, finish (0|1), result or '', result px (0: keep),
# keep-in-progress px or '', score or '', job id. The job's own keys are built here from arq's
# prefixes, as the claim builds them (fewer arguments to encode and send per finished job); a
# finished job's id is published on the done channel for the callers waiting on it. A job that stays
# queued (a retry, or put back as the worker stops) gets `score` back in place of its lease deadline:
# its first score, or when it is deferred, that plus the deferral (arq's `ZINCRBY` of the same).
FINISH_SCRIPT = (
    """
local id = ARGV[7]
local in_progress = '$IN_PROGRESS' .. id
if redis.call('GET', in_progress) ~= ARGV[1] then return 0 end
if ARGV[5] == '' then redis.call('DEL', in_progress) else redis.call('PEXPIRE', in_progress, ARGV[5]) end
if ARGV[2] == '1' then
  if ARGV[3] ~= '' then
    if ARGV[4] == '0' then redis.call('SET', '$RESULT' .. id, ARGV[3])
    else redis.call('SET', '$RESULT' .. id, ARGV[3], 'PX', ARGV[4]) end
  end
  redis.call('DEL', '$RETRY' .. id, '$JOB' .. id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('PUBLISH', '$DONE', id)
elseif ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[6], id)
end
return 1
""".replace("$IN_PROGRESS", in_progress_key_prefix)
    .replace("$RESULT", result_key_prefix)
    .replace("$RETRY", retry_key_prefix)
    .replace("$JOB", job_key_prefix)
    .replace("$DONE", DONE_CHANNEL)
)


class AppWorker(Worker):
    """arq's worker, constrained to our protocol, with leases and a heartbeat."""

    def __init__(self, *args: Any, worker_id: str, lifecycle: LifecycleConfig, **kwargs: Any) -> None:
        queue_name = kwargs.get("queue_name")
        if not isinstance(queue_name, str) or not queue_name.startswith(f"jobs:{PROTOCOL_VERSION}:"):
            raise ValueError(f"queue {queue_name!r} is outside the jobs:{PROTOCOL_VERSION}: namespace")
        if kwargs.get("job_serializer") is None or kwargs.get("job_deserializer") is None:
            raise ValueError("AppWorker needs the JSON job serializer and deserializer (never pickle)")
        self._handoff: Handoff | None = None  # before arq's __init__ sets allow_pick_jobs
        super().__init__(*args, **kwargs)
        self.worker_id = worker_id
        self.lifecycle = lifecycle
        # arq sets in-progress keys for the longest timeout + 10 s; ours are leases renewed each beat.
        self.in_progress_timeout_s = lifecycle.lease_s
        self.allow_pick_jobs = False  # until the first beat says this worker may claim
        self._claim = ScriptBatcher(self.pool, CLAIM_SCRIPT).call_now  # one claim at a time: never batched
        self._finish = ScriptBatcher(self.pool, FINISH_SCRIPT)  # jobs finishing together: one round trip
        self._finish_keys = (self.queue_name, abort_jobs_ss)
        self.heartbeat = Heartbeat(self)
        self._crons_started = False
        self._slot_free = asyncio.Event()
        self._cpu_load = CpuLoad()
        self._abort_checked_at = float("-inf")
        self._redis_problems = RedisProblemLog("claim loop")
        self._fetched: dict[str, tuple[bytes | None, int, bool]] = {}  # what the claim read, per job
        self._scores: dict[str, int] = {}  # running jobs' first scores (the queue holds their lease deadline)
        self._finished: list[tuple[str, asyncio.Task[None]]] = []  # job tasks done since the last poll
        self._holding_slot: set[str] = set()  # jobs started by `_start_job` whose slot is still taken
        # An enqueue publishes on the queue's wake channel: an idle worker claims at once instead of
        # at its next poll; the poll delay stays as the safety net (and in burst mode).
        self._woken = asyncio.Event()
        self._wake_hooks: list[Callable[[], None]] = []  # `_until_any` waits, ended by a wake-up
        self._wake_subscription = RedisSubscription(self.pool, wake_channel(queue_name), self._on_wake)
        if lifecycle.direct_handoff and not self.burst:
            self._handoff = Handoff(self.pool, queue_name, worker_id, int(lifecycle.lease_s * 1000))
        self.jobs_handed_off = 0
        original_startup = self.on_startup

        async def startup_then_beat(ctx: dict[Any, Any]) -> None:
            if original_startup is not None:
                await original_startup(ctx)
            await self.heartbeat.start()
            if not self.burst:
                self._wake_subscription.start()

        self.on_startup = startup_then_beat

    @property
    def allow_pick_jobs(self) -> bool:
        return self._allow_pick_jobs

    @allow_pick_jobs.setter
    def allow_pick_jobs(self, allowed: bool) -> None:
        """arq's flag, set by arq on a signal and by the heartbeat each beat; a worker that may no
        longer claim stops waiting for hand-offs at once."""
        self._allow_pick_jobs = allowed
        if not allowed:
            self._end_handoff_wait()

    def _on_wake(self, _message: bytes) -> None:
        """Jobs were enqueued that nobody was handed: claim them (a wait for a hand-off ends)."""
        self._woken.set()
        for wake in tuple(self._wake_hooks):
            wake()
        self._end_handoff_wait()

    def _end_handoff_wait(self) -> None:
        if self._handoff is not None and self._handoff.waiting:
            asyncio.ensure_future(self._unblock_handoff(self._handoff))

    @staticmethod
    async def _unblock_handoff(handoff: Handoff) -> None:
        try:
            await handoff.unblock()
        except (RedisError, OSError) as exc:  # the wait ends at its timeout instead
            log.warning("could not end the hand-off wait", error=type(exc).__name__)

    async def _poll_iteration(self) -> None:
        """arq's poll iteration, changed in four ways. Reading the ready jobs and claiming them is one
        Lua call. While the queue may hold more ready jobs, claim again as soon as a slot is free
        instead of sleeping the poll delay (no cliff for jobs longer than the delay). When it is
        drained, wait up to the poll delay for a hand-off (a job given to this worker by the enqueue)
        or a wake-up (jobs enqueued for anyone: claim at once); arq's loop then has no delay left
        to sleep. And survive a Redis outage: log, back off, poll again (never exit)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.poll_delay_s
        claim = True
        try:
            while True:
                if claim:
                    self._woken.clear()  # a wake-up arriving during this poll triggers the next one
                more = await self._poll_once(claim)
                self._redis_problems.succeeded()
                claim = True
                if not self.allow_pick_jobs:
                    return
                if more:
                    if not await self._slots_to_claim(self.poll_delay_s):
                        return
                    continue
                if self.burst:
                    return
                if self._handoff and self.job_counter < self.max_jobs and not self._woken.is_set():
                    waited = await self._wait_for_handoff(until - loop.time())
                    if waited is None and loop.time() >= until:
                        return
                    # Handed a job: the queue held nothing for us at the last claim, and any job
                    # enqueued since without a hand-off set `_woken` (checked before the next wait).
                    # Nothing but time left (a stale stop token): claim, then wait the rest.
                    claim = waited != "handed"
                    continue
                if not await self._wake_or_slot(until - loop.time()):
                    return
        except (RedisError, OSError) as exc:  # named (out of memory is not "unreachable"), once per change
            self._redis_problems.failed(exc)
            await asyncio.sleep(min(2.0, 10 * self.poll_delay_s))

    async def _poll_once(self, claim: bool = True) -> bool:
        """One pass of arq's `_poll_iteration` (claim unless told not to, aborts, finished tasks,
        health and crons); True when the queue may still hold ready jobs this worker could claim."""
        more = False
        count = self.queue_read_limit
        if self.burst and self.max_burst_jobs >= 0:
            count = min(count, self.max_burst_jobs - self._jobs_started())
        if claim and count > 0 and self.allow_pick_jobs and self.job_counter < self.max_jobs:
            more = await self._claim_ready(count)
        if self.allow_abort_jobs and self._abort_check_due():
            await self._cancel_aborted_jobs()
        # arq scans every task on every poll; the done callback lists the finished ones instead.
        while self._finished:
            job_id, task = self._finished.pop()
            if self.tasks.get(job_id) is task:
                del self.tasks[job_id]
            if not task.cancelled():
                task.result()  # as arq does: an error of run_job itself surfaces here
        await self.heart_beat()
        return more

    async def _claim_ready(self, count: int) -> bool:
        free = self.max_jobs - self.job_counter
        reply = await self._claim(
            (self.queue_name, abort_jobs_ss),
            (timestamp_ms(), self.worker_id, int(self.lifecycle.lease_s * 1000), in_progress_key_prefix,
             free, count, job_key_prefix, retry_key_prefix),
        )  # fmt: skip
        more, taken = int(reply[0]), (len(reply) - 1) // 5
        for i in range(1, len(reply), 5):
            job_id_b, score_b, payload, job_try, aborted = reply[i : i + 5]
            job_id = job_id_b.decode() if isinstance(job_id_b, bytes) else str(job_id_b)
            await self._start_job(job_id, int(float(score_b)), payload or None, int(job_try), bool(aborted))
        # Nothing claimed (the read cap's worth of jobs others hold): wait for a wake-up or the poll
        # delay, not spin.
        return taken > 0 and more == 1

    async def _start_job(
        self, job_id: str, score: int, payload: bytes | None, job_try: int, aborted: bool
    ) -> asyncio.Task[None]:
        """Run a job this worker holds the lease of, with what its claim (or hand-off) fetched."""
        running = self.tasks.get(job_id)
        if running is not None and not running.done():
            # Its lease lapsed while it ran here (a pause longer than the lease) and this worker
            # claimed it again: the running task holds the lease once more; a second run would race it.
            log.warning("job claimed again while it runs here: left to the running task", job_id=job_id)
            if aborted and job_id in self.job_tasks:  # the claim took the abort request: honour it
                self.job_tasks[job_id].cancel()
                self.aborting_tasks.add(job_id)
            return running
        self._fetched[job_id] = (payload, job_try, aborted)
        await self.sem.acquire()
        self.job_counter += 1
        self._holding_slot.add(job_id)
        task = self.loop.create_task(self.run_job(job_id, score))
        task.add_done_callback(partial(self._job_done, job_id))
        self.tasks[job_id] = task
        return task

    async def _wait_for_handoff(self, timeout: float) -> Literal["handed", "woken"] | None:
        """Idle with free slots: register for a hand-off and wait up to `timeout` for one; a
        wake-up or losing the right to claim ends the wait early (`_on_wake`, the `allow_pick_jobs`
        setter). None when the time passed with neither. A wait cancelled by shutdown leaves what it
        was handed to `close`, which gives it back."""
        if timeout <= 0 or self._handoff is None:
            return None
        jobs = await self._handoff.wait(timeout)
        started = [task for job in jobs if (task := await self._run_handed(job)) is not None]
        if started:
            await self._let_run(started)
        if self._woken.is_set() or not self.allow_pick_jobs:
            return "woken"
        return "handed" if jobs else None

    async def _run_handed(self, job: HandedJob) -> asyncio.Task[None] | None:
        if self.allow_pick_jobs and not self.heartbeat.draining and self.job_counter < self.max_jobs:
            self.jobs_handed_off += 1
            return await self._start_job(job.job_id, job.score, job.payload, job.job_try, job.aborted)
        if self._handoff is not None:
            await self._handoff.release(job)
        return None

    async def _let_run(self, started: list[asyncio.Task[None]]) -> None:
        """Leave the event loop to a job just handed over until it finishes, waits on I/O for a
        while (`HANDOFF_SETTLE_S`) or a wake-up comes: registering again at once would make the
        job share the loop with that round trip, and a lone job's latency is what a hand-off is
        for. A job that finished gets `HANDOFF_REARM_S` more: its finish has just woken whoever
        waits for its result, and on a shared host (the API, Redis and the workers on a few cores)
        registering at once competes with that caller for a core. Jobs enqueued meanwhile are not
        lost: nobody hands them to this worker, so they wake it, which ends either wait."""
        await self._until_any(started, HANDOFF_SETTLE_S)
        if all(task.done() for task in started):  # (a wake-up ends `_until_any` at once)
            await self._until_any((), HANDOFF_REARM_S)

    async def _until_any(self, tasks: Sequence[asyncio.Task[None]], timeout: float) -> None:
        """Wait until one of `tasks` ends, a wake-up comes or `timeout` passes: one future and its
        callbacks (asyncio.wait over an `Event.wait` task would add a task and two loop turns)."""
        if self._woken.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(*_: object) -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_later(timeout, wake)
        for task in tasks:
            task.add_done_callback(wake)
        self._wake_hooks.append(wake)
        try:
            await waiter
        finally:
            timer.cancel()
            for task in tasks:
                task.remove_done_callback(wake)
            self._wake_hooks.remove(wake)

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's `run_job` for a job our claim fetched (payload, try, abort flag came with the claim:
        no per-job transaction), with the same outcomes: result stored, retried with defer, put back
        on cancellation, failed; arq's own path for anything else."""
        self._scores[job_id] = score
        try:
            await self._run_job(job_id, score)
        finally:
            self._scores.pop(job_id, None)
            # the slot is free as the job ends, in its own task: a done callback would run a loop turn later
            self._free_slot(job_id)

    async def _run_job(self, job_id: str, score: int) -> None:
        fetched = self._fetched.pop(job_id, None)
        if fetched is None:
            await super().run_job(job_id, score)
            return
        payload, job_try, abort_requested = fetched
        start_ms = timestamp_ms()
        function_name, enqueue_time_ms = "<unknown>", 0
        args: tuple[Any, ...] = ()
        kwargs: dict[Any, Any] = {}

        async def failed_before_start(exc: BaseException) -> None:
            self.jobs_failed += 1
            if not isinstance(exc, asyncio.CancelledError):  # an abort: the ledger says cancelled already
                await self._refuse_in_ledger(job_id, str(exc))
            result_data = serialize_result(
                function_name, args, kwargs, job_try, enqueue_time_ms, False, exc, start_ms, timestamp_ms(),
                f"{job_id}:{function_name}", self.queue_name, job_id=job_id, serializer=self.job_serializer,
            )  # fmt: skip
            await self.finish_failed_job(job_id, result_data)

        if payload is None:
            log.warning("job expired before it started", job_id=job_id)
            return await failed_before_start(JobExecutionFailed("job expired"))
        try:
            function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
                payload, deserializer=self.job_deserializer
            )
        except SerializationError as exc:
            log.error("job payload refused", job_id=job_id, error=str(exc.__cause__ or exc))
            return await failed_before_start(exc)
        if abort_requested:
            log.info("job aborted before it started", job_id=job_id)
            return await failed_before_start(asyncio.CancelledError())
        function = self.functions.get(function_name)
        if function is None:
            log.warning("job of an unknown function", job_id=job_id, function=function_name)
            return await failed_before_start(JobExecutionFailed(f"function {function_name!r} not found"))
        if enqueue_job_try and enqueue_job_try > job_try:
            job_try = enqueue_job_try
            await self.pool.setex(retry_key_prefix + job_id, RETRY_KEY_TTL_S, str(job_try))
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            log.warning("job exceeded its tries", job_id=job_id, max_tries=max_tries)
            return await failed_before_start(JobExecutionFailed(f"max {max_tries} retries exceeded"))
        await self._run_function(job_id, score, function, args, kwargs, job_try, enqueue_time_ms)

    async def _run_function(
        self,
        job_id: str,
        score: int,
        function: Function | CronJob,
        args: tuple[Any, ...],
        kwargs: dict[Any, Any],
        job_try: int,
        enqueue_time_ms: int,
    ) -> None:
        """The second half of arq's `run_job`: run under the timeout, classify the outcome as arq
        does, store the result and finish under the lease."""
        is_cron = isinstance(function, CronJob)
        ref = function.name if is_cron else f"{job_id}:{function.name}"
        ctx = {**self.ctx, "job_id": job_id, "job_try": job_try, "score": score,
               "enqueue_time": ms_to_datetime(enqueue_time_ms)}  # fmt: skip
        if self.on_job_start:
            await self.on_job_start(ctx)
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        result: Any = no_result
        finish, success, incr_score = False, False, None
        start_ms = timestamp_ms()
        # The function runs in this task (arq starts a task of its own per job: a task and two loop
        # turns more per job); an abort cancels this task while the function runs, and only then.
        task = asyncio.current_task()
        assert task is not None
        # A timeout of 0: the task enforces its own (our tasks' job runner records a timeout in the
        # ledger as a failed try); a second timer per job here would cost as much as the rest of
        # this method. Else arq's, as `asyncio.timeout` (cheaper than wait_for: no task per job).
        deadline = asyncio.timeout(timeout_s) if timeout_s else contextlib.nullcontext()
        try:
            self.job_tasks[job_id] = task
            try:
                async with deadline:
                    result = await function.coroutine(ctx, *args, **kwargs)
            finally:
                del self.job_tasks[job_id]
        except (Exception, asyncio.CancelledError) as exc:
            if self.retry_jobs and isinstance(exc, Retry):
                incr_score = exc.defer_score + (timestamp_ms() - score) if exc.defer_score else None
                self.jobs_retried += 1
            elif job_id in self.aborting_tasks and isinstance(exc, asyncio.CancelledError):
                task.uncancel()  # the abort is handled here: the rest of this task runs as usual
                result, finish = exc, True
                self.aborting_tasks.remove(job_id)
                self.jobs_failed += 1
            elif self.retry_jobs and isinstance(exc, asyncio.CancelledError | RetryJob):
                self.jobs_retried += 1  # shutdown: back on the queue for another worker
            else:
                result, finish = exc, True
                self.jobs_failed += 1
                if not isinstance(exc, JobFailed):  # JobRunner has logged those, with their category
                    log.error("job raised", job_id=job_id, error_type=type(exc).__name__)
        else:
            success, finish = True, True
            self.jobs_complete += 1
        finished_ms = timestamp_ms()
        keep_forever = (
            self.keep_result_forever if function.keep_result_forever is None else function.keep_result_forever
        )
        keep_s = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
        result_data = None
        if result is not no_result and (keep_forever or keep_s > 0):
            result_data = serialize_result(
                function.name, args, kwargs, job_try, enqueue_time_ms, success, result, start_ms, finished_ms,
                ref, self.queue_name, job_id=job_id, serializer=self.job_serializer,
            )  # fmt: skip
        if self.on_job_end:
            await self.on_job_end(ctx)
        await self.finish_job(
            job_id, finish, result_data, keep_s, keep_forever, incr_score,
            keep_cronjob_progress if is_cron else None,
        )  # fmt: skip
        if self.after_job_end:
            await self.after_job_end(ctx)

    async def _refuse_in_ledger(self, job_id: str, reason: str) -> None:
        """A job this worker takes off the queue without running it is recorded `failed` in the
        ledger, with the reason, so it is listed and retryable instead of waiting there forever
        (and never mistaken for one a stranger took)."""
        runner = self.ctx.get("runner")
        if runner is None:
            return
        try:
            await runner.refuse(job_id, f"{reason} (on worker {self.worker_id})")
        except Exception as exc:  # noqa: BLE001 - the queue is still cleaned up; the reconciler sees the rest
            log.error("could not record a refused job in the ledger", job_id=job_id, error=type(exc).__name__)

    def _job_done(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._finished.append((job_id, task))
        self._free_slot(job_id)  # a task cancelled before its first step never ran `run_job`'s finally

    def _free_slot(self, job_id: str) -> None:
        if job_id in self._holding_slot:
            self._holding_slot.remove(job_id)
            self._release_sem_dec_counter_on_complete()

    def _abort_check_due(self) -> bool:
        """arq checks its abort set on every poll; ours polls on every wake-up, so check only while a
        job is running (only running jobs can be aborted here; queued ones are checked when they
        start) and at most once per poll delay, as arq's cadence."""
        if self.job_counter == 0:  # the running jobs, counted as they start and finish
            return False
        now = asyncio.get_running_loop().time()
        if now - self._abort_checked_at < self.poll_delay_s:
            return False
        self._abort_checked_at = now
        return True

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

    async def _slots_to_claim(self, timeout: float) -> bool:
        """More jobs are ready: wait (up to `timeout`; False when none freed) for a free slot, and
        while this process is short of CPU, up to `BUSY_CLAIM_GATHER_S` more for a quarter of the
        slots. A CPU-bound worker then makes fewer, bigger claims, and its finishes and ledger
        writes go out in bigger batches; one with CPU to spare claims for a slot as soon as it
        frees: a 50 ms job's slot does not idle through a gather (bench A/B in bench/NOTES.md)."""
        if not await self._slot_freed(timeout):
            return False
        if not self._cpu_load.saturated():
            return True
        loop = asyncio.get_running_loop()
        until = loop.time() + BUSY_CLAIM_GATHER_S
        wanted = max(1, self.max_jobs // 4)
        while self.max_jobs - self.job_counter < wanted and (left := until - loop.time()) > 0:
            self._slot_free.clear()  # set again by the next job to finish
            try:
                await asyncio.wait_for(self._slot_free.wait(), left)
            except TimeoutError:
                break
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
        # staying queued: back to its first score (plus the deferral), not its lease deadline
        first = None if finish else self._scores.get(job_id)
        score = "" if first is None else first + (incr_score or 0)
        # submitted, then awaited through any cancel: a job's end is recorded to completion even
        # when the worker stops meanwhile (arq's close gathers the job tasks: none may end cancelled)
        applied = await through_cancellation(
            self._finish.submit(
                self._finish_keys,
                [
                    self.worker_id,
                    "1" if finish else "0",
                    result_data or b"",
                    expire_ms or 0,
                    "" if keep_in_progress is None else to_ms(keep_in_progress),
                    score,
                    job_id,
                ],
            )
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
        await self._give_back_handed_jobs()
        log.info(
            "worker stopped",
            jobs_complete=self.jobs_complete,
            jobs_failed=self.jobs_failed,
            jobs_retried=self.jobs_retried,
            jobs_handed_off=self.jobs_handed_off,
        )
        try:
            await super().close()
        except (RedisError, OSError) as exc:  # Redis gone at shutdown: the records expire by themselves
            log.warning("Redis unreachable while closing", error=type(exc).__name__)
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
            await self.pool.aclose(close_connection_pool=True)
            self._pool = None

    async def _give_back_handed_jobs(self) -> None:
        """Deregister, and give back any job handed over that never ran."""
        if self._handoff is None:
            return
        try:
            for job in await self._handoff.take_leftovers():
                await self._handoff.release(job)
        except (RedisError, OSError) as exc:  # their leases lapse, then another worker claims them
            log.warning("Redis unreachable: handed jobs left to their leases", error=type(exc).__name__)
