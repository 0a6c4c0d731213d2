"""The waiting half of the worker's loop: when to claim, when to wait, and for what.

- While the queue may hold more ready jobs, claim again as soon as a slot is free (no poll-delay
  cliff for jobs longer than the delay); while this process is short of CPU, gather freed slots
  for a moment first (`CpuLoad`), so a busy worker makes fewer, bigger claims.
- When the queue is drained, wait up to the poll delay for a direct hand-off (an enqueue gives the
  job to this worker, lease included) or a wake-up (jobs enqueued for anyone: claim at once).
- A Redis outage is logged once per change, backed off and polled through; the loop never exits.
`AppWorker` (app_worker.py) supplies the claim itself (`_poll_once`, `_start_job`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import structlog
from redis.exceptions import RedisError

from src.infrastructure.queue.handoff import Handoff
from src.infrastructure.queue.keys import ClaimedJob
from src.worker.cpu_load import CpuLoad

if TYPE_CHECKING:
    from src.infrastructure.redis_problems import RedisProblemLog
    from src.worker.heartbeat import Heartbeat

log = structlog.get_logger(__name__)

HANDOFF_SETTLE_S = 0.005  # how long a job just handed over has the loop to itself (`_let_run`)
HANDOFF_REARM_S = 0.002  # and, once it has finished, how long before registering again (`_let_run`)
BUSY_CLAIM_GATHER_S = 0.003  # a CPU-bound worker's wait for more freed slots before a claim


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """`event.wait()` for up to `timeout` s; False when the time ran out. Not `asyncio.wait_for`: on
    Python 3.11 it can swallow a cancellation that arrives as the event is set (a stop would be lost)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


class ClaimLoop:
    burst: bool
    max_jobs: int
    poll_delay_s: float
    heartbeat: Heartbeat
    _redis_problems: RedisProblemLog

    def __init__(self, handoff: Handoff | None) -> None:
        self._handoff = handoff
        self._allow_pick_jobs = False
        self._slots: set[str] = set()  # jobs started here whose slot is still taken
        self._slot_free = asyncio.Event()
        self._finished: list[tuple[str, asyncio.Task[None]]] = []  # job tasks done since the last poll
        self._cpu_load = CpuLoad()
        self._abort_checked_at = float("-inf")
        # An enqueue publishes on the queue's wake channel: an idle worker claims at once instead of
        # at its next poll; the poll delay stays as the safety net (and in burst mode).
        self._woken = asyncio.Event()
        self._wake_hooks: list[Callable[[], None]] = []  # `_until_any` waits, ended by a wake-up
        self.jobs_handed_off = 0

    async def _poll_once(self, claim: bool = True) -> bool:
        raise NotImplementedError

    def _start_job(self, job: ClaimedJob) -> asyncio.Task[None]:
        raise NotImplementedError

    def _on_slot_freed(self) -> None:
        raise NotImplementedError

    @property
    def job_counter(self) -> int:
        """Slots in use (arq's name)."""
        return len(self._slots)

    @property
    def allow_pick_jobs(self) -> bool:
        return self._allow_pick_jobs

    @allow_pick_jobs.setter
    def allow_pick_jobs(self, allowed: bool) -> None:
        """Set by the heartbeat each beat and on a stop; a worker that may no longer claim stops
        waiting for hand-offs at once."""
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
        """Claim and wait until the poll delay is over (see the module's docstring)."""
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

    async def _run_handed(self, job: ClaimedJob) -> asyncio.Task[None] | None:
        if self.allow_pick_jobs and not self.heartbeat.draining and self.job_counter < self.max_jobs:
            self.jobs_handed_off += 1
            return self._start_job(job)
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

    # slots
    def _job_done(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._finished.append((job_id, task))
        self._free_slot(job_id)  # a task cancelled before its first step never ran its own `finally`

    def _free_slot(self, job_id: str) -> None:
        if job_id in self._slots:
            self._slots.remove(job_id)
            self._slot_free.set()
            self._on_slot_freed()

    def _abort_check_due(self) -> bool:
        """Check the abort requests only while a job is running (queued jobs get theirs with their
        claim) and at most once per poll delay: a busy worker polls on every wake-up."""
        if not self._slots:
            return False
        now = asyncio.get_running_loop().time()
        if now - self._abort_checked_at < self.poll_delay_s:
            return False
        self._abort_checked_at = now
        return True

    async def _wake_or_slot(self, timeout: float) -> bool:
        """Nothing claimed: wait for an enqueue's wake-up (or, when every slot is busy, for a slot).
        False when `timeout` passed first."""
        if timeout <= 0:
            return False
        if self.job_counter >= self.max_jobs:
            return await self._slot_freed(timeout)
        return await _wait(self._woken, timeout)

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
            if not await _wait(self._slot_free, left):
                break
        return True

    async def _slot_freed(self, timeout: float) -> bool:
        self._slot_free.clear()
        if self.job_counter < self.max_jobs:
            return True
        return await _wait(self._slot_free, timeout)
