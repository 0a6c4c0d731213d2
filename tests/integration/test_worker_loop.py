"""Our worker's own loop (`src/worker/app_worker.py`, `claim_loop.py`, `job_execution.py`) with real
workers in this process on a real redis-server: crons across two workers and in a burst, a drain
after SIGTERM, an operator's abort, `Retry(defer=...)` in a worker that waits for work, and jobs
refused before they start. Jobs are declared in a registry of this module only (as in
test_job_registry.py), on queues of their own. Waits are deadlines of several intervals; nothing
asserts how fast anything went."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.jobs import Job, JobResult
from arq.worker import func
from pydantic import BaseModel, ConfigDict

from src.application.services.queue_admin import QueueAdmin
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.jobs import ErrorCategory, JobEnvelope, JobRecord, JobStatus, queue_key
from src.infrastructure.job_serializer import JobFailure
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.keys import ABORT_MAX_AGE_MS, ABORT_SET, IN_PROGRESS_PREFIX, JOB_PREFIX
from src.infrastructure.repository_factory import build_repository
from src.jobs.context import JobContext
from src.jobs.registry import JobRegistry
from src.jobs.spec import Cron, JobSpec, NoPayload
from src.worker.app_worker import AppWorker
from src.worker.settings import build_worker
from tests.conftest import publish_deployment

pytestmark = pytest.mark.integration

LOOP, TICKS, STARTUP = "loop", "ticks", "startup"  # one queue per concern: no worker sees another's jobs
TICK_S = 1  # the crons' interval
SHORT_S = 0.3  # a short job's run: well within the completion wait
SLACK_MS = 1_000  # the worker's, Redis's and the test's clocks, one host

RUNS: list[tuple[str, str, int]] = []  # (item, worker id, attempt) as each run starts
DONE: list[str] = []  # items whose run returned
TICKED: list[tuple[str, str]] = []  # (tick job id, worker id)


class Work(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str


async def work(ctx: JobContext, payload: Work) -> dict[str, Any]:
    """`hang-*` hangs on its first attempt only (so a drained run completes elsewhere); `short-*`
    takes SHORT_S; anything else returns at once."""
    RUNS.append((payload.item, ctx["worker_id"], ctx["job_try"]))
    if payload.item.startswith("hang") and ctx["job_try"] == 1:
        await asyncio.sleep(3600)
    if payload.item.startswith("short"):
        await asyncio.sleep(SHORT_S)
    DONE.append(payload.item)
    return {"item": payload.item}


async def tick(ctx: JobContext, payload: NoPayload) -> dict[str, Any]:
    TICKED.append((ctx["job_id"], ctx["worker_id"]))
    return {}


WORK = JobSpec(name="loop_work", handler=work, payload=Work, queue=LOOP)
RETIRED = JobSpec(name="loop_retired", handler=work, payload=Work, queue=LOOP)  # the API's, not the worker's
EVERY_SECOND = JobSpec(
    name="every_second", handler=tick, payload=NoPayload, queue=TICKS, cron=Cron.every(TICK_S)
)
AT_STARTUP = JobSpec(
    name="at_startup",
    handler=tick,
    payload=NoPayload,
    queue=STARTUP,
    cron=Cron.every(TICK_S, run_at_startup=True),
)
NOT_AT_STARTUP = JobSpec(
    name="not_at_startup", handler=tick, payload=NoPayload, queue=STARTUP, cron=Cron.every(TICK_S)
)
REGISTRY = JobRegistry([WORK, EVERY_SECOND, AT_STARTUP, NOT_AT_STARTUP])
API_REGISTRY = JobRegistry([WORK, RETIRED])


@pytest.fixture
async def tasks(settings: Settings, arq_pool: ArqRedis) -> AsyncIterator[TaskService]:
    RUNS.clear()
    DONE.clear()
    TICKED.clear()
    repository = build_repository(settings)
    await repository.init()
    await publish_deployment(settings)
    try:
        yield TaskService(RedisJobQueue(arq_pool), repository=repository, catalog=API_REGISTRY)
    finally:
        await repository.close()


def envelope(item: str, task: str = WORK.name) -> JobEnvelope:
    return JobEnvelope(task=task, logical_key=f"{task}:{item}", ids={"item": item}, producer_version="test-1")


def worker_on(settings: Settings, queue: str, **options: Any) -> AppWorker:
    return build_worker(settings, queue, handle_signals=False, registry=REGISTRY, **options)


@contextlib.asynccontextmanager
async def running(worker: AppWorker) -> AsyncIterator[asyncio.Task[None]]:
    """Run a (non-burst) worker in the background; closed (its running jobs put back) at the end."""
    run = asyncio.create_task(worker.async_run())
    try:
        yield run
    finally:
        await worker.close()
        await asyncio.gather(run, return_exceptions=True)


async def until(probe: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await probe()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.02)
    return value


async def record(tasks: TaskService, job_id: str) -> JobRecord:
    found = await tasks.repository.get_job(job_id)
    assert found is not None, job_id
    return found


async def arq_result(pool: ArqRedis, queue: str, job_id: str) -> JobResult | None:
    """The result stored under `job_id`, as arq's client reads it."""
    return await Job(
        job_id, pool, _queue_name=queue_key(queue), _deserializer=pool.job_deserializer
    ).result_info()


async def result_of(pool: ArqRedis, queue: str, job_id: str) -> tuple[bool, Any]:
    info = await arq_result(pool, queue, job_id)
    assert info is not None, f"no result stored for {job_id}"
    return info.success, info.result


def started(item: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return any(run[0] == item for run in RUNS)

    return probe


def record_tick_attempts(worker: AppWorker, attempts: list[tuple[str, str, bool]]) -> None:
    """Note each (worker id, tick id, queued) as `worker` queues its cron ticks."""
    enqueue_tick = worker.consumer.enqueue_tick

    async def noted(job_id: str, payload: bytes, run_at: datetime) -> bool:
        queued = await enqueue_tick(job_id, payload, run_at)
        attempts.append((worker.worker_id, job_id, queued))
        return queued

    worker.consumer.enqueue_tick = noted  # type: ignore[method-assign]


def tick_ms(job_id: str) -> int:
    return int(job_id.rpartition(":")[2])


# crons


async def test_two_workers_run_each_cron_tick_once_and_skip_none(
    settings: Settings, tasks: TaskService
) -> None:
    """Both workers of a queue queue every tick of a cron due each second; each tick is queued by one
    of them, runs once, and none between the first and the last observed is missing."""
    attempts: list[tuple[str, str, bool]] = []  # (worker id, tick id, queued)
    first, second = worker_on(settings, TICKS), worker_on(settings, TICKS)
    for worker in (first, second):
        record_tick_attempts(worker, attempts)
    wanted_ticks = 4
    async with running(first), running(second):

        async def ran_enough() -> bool:
            return len(TICKED) >= wanted_ticks

        await until(ran_enough, timeout=3 * (wanted_ticks + 1) * TICK_S + 10, what=f"{wanted_ticks} ticks")
        seen = [tick_ms(job_id) for job_id, _ in TICKED]
        window = set(range(min(seen), max(seen) + 1, TICK_S * 1000))

        async def window_ran() -> bool:  # a late tick still runs; a skipped one never does
            return window <= {tick_ms(job_id) for job_id, _ in TICKED}

        await until(window_ran, timeout=3 * TICK_S + 10, what=f"every tick in {sorted(window)}")
    ran = Counter(job_id for job_id, _ in TICKED)
    assert [job_id for job_id, n in ran.items() if n > 1] == [], "a tick ran twice"
    assert {worker for _, worker in TICKED} <= {first.worker_id, second.worker_id}
    both = {first.worker_id, second.worker_id}
    contested = [t for t in ran if tick_ms(t) in window and {w for w, t_, _ in attempts if t_ == t} == both]
    assert len(contested) >= 2, "the two workers did not both queue the same ticks"
    for job_id in contested:  # queued by one, refused to the other
        assert sorted(queued for _, t, queued in attempts if t == job_id) == [False, True]


async def test_a_run_at_startup_cron_fires_once_in_a_burst_and_the_burst_ends(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """A burst runs each run-at-startup cron once and then ends, though the cron is due again every
    second; a cron without run-at-startup never fires in a burst."""
    worker = worker_on(settings, STARTUP, burst=True)
    try:
        await asyncio.wait_for(worker.async_run(), timeout=3 * 3 * TICK_S + 10)
    finally:
        await worker.close()
    assert [job_id.rpartition(":")[0] for job_id, _ in TICKED] == ["at_startup"]
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    assert await arq_pool.zcard(queue_key(STARTUP)) == 0


async def test_a_tick_run_by_one_worker_is_not_queued_again_by_a_late_one(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """A worker whose schedule lags (a stalled loop, Redis back after an outage) queues a tick the
    other worker has already run: refused, so the tick never runs a second time once the lease the
    finished tick keeps has lapsed. (A cron stores no result, arq's default: only that lease says
    the tick is done.)"""
    ahead, late = worker_on(settings, TICKS, burst=True), worker_on(settings, TICKS, burst=True)
    try:
        past = (datetime.now().astimezone() - timedelta(seconds=10)).replace(microsecond=123_456)
        ahead.cron_jobs[0].next_run = past
        late.cron_jobs[0].next_run = past
        await ahead._run_crons()
        await ahead._claim_ready(ahead.queue_read_limit)
        await asyncio.gather(*ahead.tasks.values())
        [(tick_id, _)] = TICKED
        await late._run_crons()  # the same tick, already run
        assert await arq_pool.zscore(queue_key(TICKS), tick_id) is None
        await arq_pool.pexpire(IN_PROGRESS_PREFIX + tick_id, 1)  # as the kept lease lapses, later
        await asyncio.sleep(0.05)
        await late._claim_ready(late.queue_read_limit)
        await asyncio.gather(*late.tasks.values())
        assert [job_id for job_id, _ in TICKED] == [tick_id]
    finally:
        await ahead.close()
        await late.close()


# stopping, aborting, retrying


async def test_a_drain_finishes_short_jobs_and_puts_the_long_one_back_at_its_own_score(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """SIGTERM with ARQ_JOB_COMPLETION_WAIT: the jobs that end within the wait succeed there; the one
    still running is put back (lease gone, its own score, not the lease's deadline), recorded as an
    interruption, and another worker completes it. Each job completes once."""
    wait_s = 3
    draining = settings.model_copy(update={"arq_job_completion_wait": wait_s})
    shorts = [(await tasks.enqueue(envelope(f"short-{n}"))).job_id for n in range(2)]
    long_id = (await tasks.enqueue(envelope("hang-drain"))).job_id
    own_score = await arq_pool.zscore(queue_key(LOOP), long_id)
    first = worker_on(draining, LOOP)
    async with running(first) as run:
        for item in ("short-0", "short-1", "hang-drain"):
            await until(started(item), timeout=3 * settings.worker_heartbeat_interval + 10, what=item)
        first.handle_sig_wait_for_completion(signal.SIGTERM)
        await asyncio.wait([run], timeout=3 * wait_s + 10)
        assert run.done(), "the worker did not stop after the completion wait"
    # closed (as `run` closes after a stop): the put-back has been written
    assert await arq_pool.zscore(queue_key(LOOP), long_id) == own_score
    assert await arq_pool.exists(IN_PROGRESS_PREFIX + long_id, JOB_PREFIX + long_id) == 1  # payload only
    assert (first.jobs_complete, first.jobs_retried, first.jobs_failed) == (2, 1, 0)
    for job_id in shorts:
        done = await record(tasks, job_id)
        assert (done.status, done.worker_id, done.attempt) == (JobStatus.SUCCEEDED, first.worker_id, 1)
        assert (await result_of(arq_pool, LOOP, job_id))[0] is True
    interrupted = await record(tasks, long_id)
    assert (interrupted.status, interrupted.interruptions, interrupted.app_failures) == (
        JobStatus.INTERRUPTED, 1, 0)  # fmt: skip

    second = worker_on(settings, LOOP, burst=True)
    try:
        await asyncio.wait_for(second.async_run(), timeout=30)
    finally:
        await second.close()
    finished = await record(tasks, long_id)
    assert (finished.status, finished.worker_id, finished.attempt) == (
        JobStatus.SUCCEEDED,
        second.worker_id,
        2,
    )
    assert Counter(DONE) == {"short-0": 1, "short-1": 1, "hang-drain": 1}
    assert await arq_pool.zcard(queue_key(LOOP)) == 0


async def test_an_aborted_job_ends_cancelled_and_the_next_job_runs_in_its_slot(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """One slot, a hanging job and one waiting behind it: an operator's cancel aborts the running
    job (cancelled in the ledger, a CancelledError as its result, run once), the worker goes on with
    the next job in the freed slot, and counts one failure."""
    hang_id = (await tasks.enqueue(envelope("hang-abort"))).job_id
    next_id = (await tasks.enqueue(envelope("after-abort"))).job_id
    worker = worker_on(settings.model_copy(update={"arq_max_jobs": 1}), LOOP)
    async with running(worker):
        await until(
            started("hang-abort"), timeout=3 * settings.worker_heartbeat_interval + 10, what="the job"
        )
        assert worker.job_counter == 1 and [run[0] for run in RUNS] == ["hang-abort"]  # one slot
        cancelled = await QueueAdmin(tasks.repository, tasks).cancel(hang_id)
        assert cancelled.status is JobStatus.CANCELLED

        async def next_done() -> bool:
            return (await record(tasks, next_id)).status is JobStatus.SUCCEEDED

        await until(next_done, timeout=3 * 20 * settings.arq_poll_delay + 10, what="the next job")
        assert (worker.jobs_failed, worker.jobs_complete, worker.jobs_retried) == (1, 1, 0)
    success, result = await result_of(arq_pool, LOOP, hang_id)
    assert success is False and isinstance(result, JobFailure) and result.type_name == "CancelledError"
    assert (await record(tasks, hang_id)).status is JobStatus.CANCELLED  # not overwritten as interrupted
    assert [run[0] for run in RUNS] == ["hang-abort", "after-abort"] and DONE == ["after-abort"]
    assert await arq_pool.zscore(ABORT_SET, hang_id) is None
    assert await arq_pool.zcard(queue_key(LOOP)) == 0


DEFER_S = 1.5
deferred_runs: list[tuple[int, int]] = []  # (job_try, epoch ms) of each run


async def defer_once(ctx: dict[str, Any]) -> str:
    deferred_runs.append((ctx["job_try"], int(time.time() * 1000)))
    if ctx["job_try"] == 1:
        raise Retry(defer=DEFER_S)
    return "second try"


async def test_a_deferred_retry_waits_on_the_queue_and_runs_after_its_deferral(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """A plain arq function raising `Retry(defer=...)` in a worker that waits for work: the job stays
    queued, its lease released, scored the deferral after its run, and it runs again (no wake-up
    announces it: the poll finds it) not before that score."""
    deferred_runs.clear()
    queue = queue_key(LOOP)
    await arq_pool.enqueue_job("defer_once", _job_id="t:defer:1", _queue_name=queue)
    defer = func(defer_once, name="defer_once", max_tries=3)
    worker = worker_on(settings, LOOP, functions=[defer])
    async with running(worker):

        async def put_back() -> float | None:
            if not deferred_runs or await arq_pool.exists(IN_PROGRESS_PREFIX + "t:defer:1"):
                return None
            score: float | None = await arq_pool.zscore(queue, "t:defer:1")
            return score

        score = await until(put_back, timeout=3 * settings.worker_heartbeat_interval + 10, what="the retry")
        assert len(deferred_runs) == 1, "it ran again before its deferral"
        first_run_ms = deferred_runs[0][1]
        assert (
            first_run_ms + DEFER_S * 1000 - SLACK_MS
            <= score
            <= time.time() * 1000 + DEFER_S * 1000 + SLACK_MS
        )

        async def result() -> JobResult | None:
            return await arq_result(arq_pool, LOOP, "t:defer:1")

        info = await until(result, timeout=3 * DEFER_S + 10, what="the second try")
        assert (info.success, info.result) == (True, "second try")
        assert [job_try for job_try, _ in deferred_runs] == [1, 2]
        assert deferred_runs[1][1] >= score - SLACK_MS  # not before its deferred score
        assert (worker.jobs_retried, worker.jobs_complete, worker.jobs_failed) == (1, 1, 0)
    assert await arq_pool.zcard(queue) == 0


# refused before they start


async def test_ledger_jobs_refused_before_they_start_fail_in_the_ledger_and_the_worker_goes_on(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """A payload that is not JSON and a job of a function this worker does not have: each fails in
    the ledger (permanent, saying why and on which worker, so it is listed and retryable) and with a
    stored result; the worker runs the next job."""
    garbled = (await tasks.enqueue(envelope("garbled"))).job_id
    await arq_pool.set(JOB_PREFIX + garbled, b"\x80\x04not json", keepttl=True)
    unknown = (await tasks.enqueue(envelope("retired", task=RETIRED.name))).job_id
    good = (await tasks.enqueue(envelope("good"))).job_id
    worker = worker_on(settings, LOOP)
    async with running(worker):

        async def all_ended() -> bool:
            records = [await record(tasks, job_id) for job_id in (garbled, unknown, good)]
            return all(r.status.terminal for r in records)

        await until(all_ended, timeout=3 * settings.worker_heartbeat_interval + 10, what="the three jobs")
        assert (worker.jobs_failed, worker.jobs_complete) == (2, 1)
    assert (await record(tasks, good)).status is JobStatus.SUCCEEDED
    for job_id, why in ((garbled, "unable to deserialize job"), (unknown, "'loop_retired' not found")):
        failed = await record(tasks, job_id)
        assert failed.status is JobStatus.FAILED and failed.error_category is ErrorCategory.PERMANENT
        assert failed.error_message is not None and why in failed.error_message
        assert worker.worker_id in failed.error_message
        success, result = await result_of(arq_pool, LOOP, job_id)
        assert success is False and why in result.message
    assert [run[0] for run in RUNS] == ["good"]
    assert await arq_pool.zcard(queue_key(LOOP)) == 0


async def test_abort_requests_older_than_their_max_age_are_dropped(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """An abort request for a job nobody runs (its worker gone, its job taken off the queue) is
    dropped once older than ABORT_MAX_AGE_MS, as the consumer says, instead of being read on every
    poll for ever; a recent one stays for the job's next claim."""
    now = int(time.time() * 1000)
    await arq_pool.zadd(ABORT_SET, {"t:stale:1": now - ABORT_MAX_AGE_MS - 5_000, "t:recent:1": now})
    worker = worker_on(settings, LOOP, burst=True)
    try:
        assert await worker.consumer.abort_requests({"t:running:1"}) == set()
        assert await arq_pool.zrange(ABORT_SET, 0, -1) == [b"t:recent:1"]
    finally:
        await worker.close()
