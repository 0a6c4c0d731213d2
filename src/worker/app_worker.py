"""Our worker: one queue, run in arq's vocabulary (`functions`, `cron_jobs`, `max_jobs`, ...; see
`src/worker/settings.py`) on a loop of our own instead of a subclass of arq's `Worker`.

The loop: claim ready jobs under leases (`src/infrastructure/queue/lease_consumer.py`), run each in
a task of its own (`job_execution.py`), and when the queue is drained wait for a direct hand-off
(`src/infrastructure/queue/handoff.py`) or an enqueue's wake-up, with the poll delay as the net.
A heartbeat (`heartbeat.py`) renews the leases, publishes this worker's record and decides whether
it may claim at all (version fencing, data fingerprint, drain). Crons are queued as unique ticks
from the same loop. On SIGTERM it stops claiming, lets running jobs finish within
`ARQ_JOB_COMPLETION_WAIT`, puts the rest back on the queue and exits.
From arq it takes only the task API (`func`, `cron`, `Retry`): see `ARQ_MEMBERS_USED`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Function
from redis.exceptions import RedisError

from src.domain.jobs import queue_key
from src.infrastructure.queue.handoff import Handoff
from src.infrastructure.queue.keys import ClaimedJob, now_ms, wake_channel
from src.infrastructure.queue.lease_consumer import LeaseConsumer
from src.infrastructure.queue.payload import Deserializer, Serializer, encode_job
from src.infrastructure.redis_problems import RedisProblemLog
from src.infrastructure.redis_subscription import RedisSubscription
from src.worker.claim_loop import ClaimLoop
from src.worker.heartbeat import Heartbeat, LifecycleConfig
from src.worker.job_execution import ExecutionDefaults, JobExecutor

log = structlog.get_logger(__name__)

# Every arq member src/ uses, with the fields it reads: arq's documented task API (`func`, `cron`,
# `Retry`) and its client (`ArqRedis`, for `enqueue_job` users). Nothing private, no module
# internals. `tests/unit/test_arq_guard.py` checks each against the installed arq and that src/
# imports nothing else from it (docs/architecture.md, "Upgrading arq and redis-py").
_TASK_FIELDS = ("name", "coroutine", "timeout_s", "keep_result_s", "keep_result_forever", "max_tries")
ARQ_MEMBERS_USED: dict[str, tuple[str, ...]] = {
    "arq.worker.func": (),
    "arq.worker.Function": _TASK_FIELDS,
    "arq.cron.cron": (),
    "arq.cron.CronJob": (*_TASK_FIELDS, "run_at_startup", "job_id", "next_run", "calculate_next"),
    "arq.Retry": ("defer_score",),
    "arq.typing.WorkerCoroutine": (),
    "arq.connections.ArqRedis": ("job_serializer", "job_deserializer", "default_queue_name"),
}
Hook = Callable[[dict[Any, Any]], Awaitable[None]]


class AppWorker(ClaimLoop):
    """One queue's worker: claims, runs and finishes jobs under leases, with a heartbeat."""

    def __init__(
        self,
        functions: Sequence[Function],
        *,
        queue_name: str,
        redis_pool: ArqRedis,
        worker_id: str,
        lifecycle: LifecycleConfig,
        job_serializer: Serializer,
        job_deserializer: Deserializer,
        cron_jobs: Sequence[CronJob] = (),
        burst: bool = False,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        handle_signals: bool = True,
        job_completion_wait: float = 0,
        max_jobs: int = 10,
        job_timeout: float = 300,
        keep_result: float = 3600,
        max_tries: int = 5,
        poll_delay: float = 0.5,
        allow_abort_jobs: bool = False,
        ctx: dict[Any, Any] | None = None,
    ) -> None:
        if not queue_name.startswith(queue_key("")):
            raise ValueError(f"queue {queue_name!r} is outside the {queue_key('')} namespace")
        self.functions: dict[str, Function | CronJob] = {f.name: f for f in functions}
        self.functions.update((c.name, c) for c in cron_jobs)
        if not self.functions:
            raise ValueError(f"no function or cron job to run on {queue_name}")
        self.queue_name = queue_name
        self.pool = redis_pool
        self.worker_id = worker_id
        self.lifecycle = lifecycle
        self.cron_jobs = list(cron_jobs)
        self.burst = burst
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.max_jobs = max_jobs
        self.poll_delay_s = poll_delay
        self.queue_read_limit = max(max_jobs * 5, 100)  # ids a claim may read past others' running jobs
        self.allow_abort_jobs = allow_abort_jobs
        self.ctx: dict[Any, Any] = ctx if ctx is not None else {}
        self._handle_signals = handle_signals
        self._job_completion_wait = job_completion_wait
        self._serialize = job_serializer
        self.tasks: dict[str, asyncio.Task[None]] = {}  # running jobs (and those just finished)
        self.main_task: asyncio.Future[None] | None = None
        self._closed = False
        self._crons_started = False
        lease_ms = int(lifecycle.lease_s * 1000)
        self.consumer = LeaseConsumer(redis_pool, queue_name, worker_id, lease_ms)
        self.executor = JobExecutor(
            functions=self.functions,
            consumer=self.consumer,
            ctx=self.ctx,
            defaults=ExecutionDefaults(job_timeout, keep_result, max_tries),
            serialize=job_serializer,
            deserialize=job_deserializer,
        )
        handoff = None
        if lifecycle.direct_handoff and not burst:
            handoff = Handoff(redis_pool, queue_name, worker_id, lease_ms)
        super().__init__(handoff)
        self.heartbeat = Heartbeat(self)
        self._redis_problems = RedisProblemLog("claim loop")
        self._wake_subscription = RedisSubscription(redis_pool, wake_channel(queue_name), self._on_wake)
        self.allow_pick_jobs = False  # until the first beat says this worker may claim

    # counters, as arq names them
    @property
    def jobs_complete(self) -> int:
        return self.executor.counts.complete

    @property
    def jobs_failed(self) -> int:
        return self.executor.counts.failed

    @property
    def jobs_retried(self) -> int:
        return self.executor.counts.retried

    # running
    def run(self) -> None:
        """Run until stopped (a signal, a drain, the end of a burst), then close: `python workers.py`."""
        loop = asyncio.get_event_loop()  # workers.py sets it (uvloop by default)
        try:
            loop.run_until_complete(self.async_run())
        except asyncio.CancelledError:
            pass  # a stop signal cancelled the main loop
        finally:
            loop.run_until_complete(self.close())

    async def async_run(self) -> None:
        """Run until stopped; does not close (tests close when they are done with the worker)."""
        self.main_task = asyncio.ensure_future(self.main())
        await self.main_task

    async def main(self) -> None:
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            stop = self.handle_sig_wait_for_completion if self._job_completion_wait else self.handle_sig
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, partial(stop, signum))
        log.info("worker starting", queue=self.queue_name, functions=sorted(self.functions))
        self.ctx["redis"] = self.pool
        if self.on_startup is not None:
            await self.on_startup(self.ctx)
        await self.heartbeat.start()
        if not self.burst:
            self._wake_subscription.start()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self._poll_iteration()
            if self.burst and await self._burst_done():
                return
            await asyncio.sleep(max(0.0, self.poll_delay_s - (loop.time() - started)))

    async def _burst_done(self) -> bool:
        """A burst ends when the queue is empty (running jobs stay on it until they finish)."""
        try:
            if await self.consumer.queued():
                return False
        except (RedisError, OSError) as exc:
            self._redis_problems.failed(exc)
            return False
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        return True

    async def _poll_once(self, claim: bool = True) -> bool:
        """One pass: claim (unless told not to), aborts, finished tasks, crons; True when the queue
        may still hold ready jobs this worker could claim."""
        more = False
        if claim and self.allow_pick_jobs and self.job_counter < self.max_jobs:
            more = await self._claim_ready(self.queue_read_limit)
        if self.allow_abort_jobs and self._abort_check_due():
            await self._cancel_aborted_jobs()
        while self._finished:  # the done callback lists the finished tasks: no scan of every task
            job_id, task = self._finished.pop()
            if self.tasks.get(job_id) is task:
                del self.tasks[job_id]
            if not task.cancelled():
                task.result()  # an error of the execution itself surfaces here
        await self._run_crons()
        return more

    async def _claim_ready(self, read_cap: int) -> bool:
        """Claim for the free slots, reading at most `read_cap` ids; True when more may be ready."""
        jobs, more = await self.consumer.claim(self.max_jobs - self.job_counter, read_cap)
        for job in jobs:
            self._start_job(job)
        return more  # nothing claimed (others hold what was read): wait, don't spin

    def _start_job(self, job: ClaimedJob) -> asyncio.Task[None]:
        """Run a job this worker holds the lease of, in a task of its own."""
        running = self.tasks.get(job.job_id)
        if running is not None and not running.done():
            # Its lease lapsed while it ran here (a pause longer than the lease) and this worker
            # claimed it again: the running task holds the lease once more; a second run would race it.
            log.warning("job claimed again while it runs here: left to the running task", job_id=job.job_id)
            if job.aborted:  # the claim took the abort request: honour it
                self._abort(job.job_id)
            return running
        self._slots.add(job.job_id)
        task = asyncio.get_running_loop().create_task(self._run_job(job))
        task.add_done_callback(partial(self._job_done, job.job_id))
        self.tasks[job.job_id] = task
        return task

    async def _run_job(self, job: ClaimedJob) -> None:
        try:
            await self.executor.run(job)
        finally:
            # An abort that arrived as the job was finishing was not its outcome: forget it, or a
            # later run of the same id here would be finished as cancelled instead of put back.
            self.executor.aborting.discard(job.job_id)
            self._free_slot(job.job_id)  # as the job ends, in its task: a done callback runs a turn later

    async def _cancel_aborted_jobs(self) -> None:
        for job_id in await self.consumer.abort_requests(self.tasks.keys()):
            self._abort(job_id)

    def _abort(self, job_id: str) -> None:
        task = self.tasks.get(job_id)
        if task is not None and not task.done():
            self.executor.aborting.add(job_id)
            task.cancel()

    def _on_slot_freed(self) -> None:
        limit = self.lifecycle.max_jobs_before_restart
        if limit and self.jobs_complete + self.jobs_failed + self.jobs_retried >= limit:
            self.drain(f"WORKER_MAX_JOBS_BEFORE_RESTART reached ({limit} jobs)")

    async def _run_crons(self) -> None:
        """Queue each cron's ticks due within two poll windows, each under its unique id (the
        queue's other workers queue the same ticks: one of each runs). In burst mode, the
        run-at-startup crons fire once and nothing after, so a burst ends."""
        if not self.cron_jobs or (self.burst and self._crons_started):
            return
        now = datetime.now().astimezone()  # cron fields are in the host's zone, as arq reads them
        cutoff = now + timedelta(seconds=2 * max(self.poll_delay_s, 0.5))
        for cron_job in self.cron_jobs:
            if cron_job.next_run is None:
                if not cron_job.run_at_startup:
                    cron_job.calculate_next(now)
                    continue
                cron_job.next_run = now
            if cron_job.next_run < cutoff:
                tick = cron_job.next_run
                job_id = cron_job.job_id or f"{cron_job.name}:{int(tick.timestamp() * 1000)}"
                payload = encode_job(self._serialize, cron_job.name, now_ms())
                await self.consumer.enqueue_tick(job_id, payload, max(tick, now))
                cron_job.calculate_next(tick)
        self._crons_started = True

    # stopping
    def release_running_jobs(self, reason: str) -> int:
        """Cancel every running job: each goes back on the queue at once, the ledger records an
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
        log.warning("draining: the worker will exit when running jobs are done", reason=reason)
        self.handle_sig_wait_for_completion(signal.SIGTERM)

    def handle_sig(self, signum: int) -> None:
        """Stop now: running jobs go back on the queue."""
        log.info("stopping", signal=signal.Signals(signum).name, running=len(self.tasks))
        self.release_running_jobs(f"stop on {signal.Signals(signum).name}")
        self._stop()

    def handle_sig_wait_for_completion(self, signum: int) -> None:
        """Stop claiming; running jobs have `ARQ_JOB_COMPLETION_WAIT` to finish, the rest go back."""
        self.heartbeat.draining = True
        self.allow_pick_jobs = False
        log.info("stopping after running jobs", signal=signal.Signals(signum).name, running=len(self.tasks))
        asyncio.ensure_future(self._stop_after_running_jobs(signum))

    async def _stop_after_running_jobs(self, signum: int) -> None:
        running = [task for task in self.tasks.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=self._job_completion_wait)
        self.release_running_jobs(f"completion wait over after {signal.Signals(signum).name}")
        self._stop()

    def _stop(self) -> None:
        if self.main_task is not None:
            self.main_task.cancel()

    async def close(self) -> None:
        """Stop the wake-ups and the heartbeat, give back what was handed over and never ran, wait
        for the running jobs to be finished or put back, run the shutdown hook, close the pool."""
        if self._closed:
            return
        self._closed = True
        if not self._handle_signals:
            self.release_running_jobs("worker closed")
            self._stop()
        await self._wake_subscription.stop()
        await self.heartbeat.stop()
        await self._give_back_handed_jobs()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        log.info("worker stopped", jobs_complete=self.jobs_complete, jobs_failed=self.jobs_failed,
                 jobs_retried=self.jobs_retried, jobs_handed_off=self.jobs_handed_off)  # fmt: skip
        try:
            if self.on_shutdown is not None:
                await self.on_shutdown(self.ctx)
        finally:
            await self.pool.aclose(close_connection_pool=True)

    async def _give_back_handed_jobs(self) -> None:
        """Deregister, and give back any job handed over that never ran."""
        if self._handoff is None:
            return
        try:
            for job in await self._handoff.take_leftovers():
                await self._handoff.release(job)
        except (RedisError, OSError) as exc:  # their leases lapse, then another worker claims them
            log.warning("Redis unreachable: handed jobs left to their leases", error=type(exc).__name__)
