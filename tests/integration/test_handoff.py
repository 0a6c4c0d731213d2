"""Direct hand-off against a real Redis: an idle worker registers and blocks on its inbox, the enqueue
script gives it the job with its lease, and nothing handed over is lost when the worker stops
waiting, stops, dies or may no longer claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from src.application.ports import Repository
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.jobs import JobEnvelope, JobStatus, queue_key
from src.infrastructure.completion_feed import RedisCompletionFeed
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.handoff import REGISTER_SCRIPT, STOP_SCRIPT, Handoff
from src.infrastructure.queue.keys import idle_workers_key, inbox_key, wake_channel
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository
from src.worker.app_worker import AppWorker
from src.worker.settings import build_worker
from tests.conftest import make_settings, publish_deployment
from tests.integration.test_wakeups import appointment, envelope

pytestmark = pytest.mark.integration

QUEUE = queue_key("normalization")
SLOW_POLL_S = 30.0  # a job that waited for a poll would take this long


def job(n: int) -> JobEnvelope:
    return JobEnvelope(
        task="normalize_appointment",
        logical_key=f"handoff:{n}",
        ids={"appointment_id": f"h{n}"},
        producer_version="test-1",
    )


@pytest.fixture
async def tasks(settings: Settings, arq_pool: ArqRedis) -> AsyncIterator[TaskService]:
    repository = build_repository(settings)
    await repository.init()
    yield TaskService(RedisJobQueue(arq_pool), repository=repository)
    await repository.close()


async def register_only(pool: ArqRedis, worker_id: str, *, lease_ms: int, wait_ms: int) -> None:
    """A registration with nobody blocked on the inbox (a worker that died while waiting)."""
    keys = (idle_workers_key(QUEUE), inbox_key(QUEUE, worker_id))
    await pool.eval(REGISTER_SCRIPT, 2, *keys, f"{lease_ms} {worker_id}", str(wait_ms))


async def test_an_enqueue_hands_the_job_to_a_waiting_worker_with_its_lease(
    arq_pool: ArqRedis, tasks: TaskService
) -> None:
    handoff = Handoff(arq_pool, QUEUE, "w-1", lease_ms=3000)
    waiting = asyncio.create_task(handoff.wait(10.0))
    while not await arq_pool.zcard(idle_workers_key(QUEUE)):
        await asyncio.sleep(0.01)
    assert handoff.waiting
    envelope_ = job(1)
    assert (await tasks.enqueue(envelope_)).status == "queued"
    handed = await asyncio.wait_for(waiting, 5.0)  # well before the 10 s wait ends
    assert [h.job_id for h in handed] == [envelope_.job_id]
    assert handed[0].job_try == 1 and not handed[0].aborted
    assert handed[0].payload == await arq_pool.get(job_key_prefix + envelope_.job_id)
    assert await arq_pool.get(in_progress_key_prefix + envelope_.job_id) == b"w-1"
    assert 0 < await arq_pool.pttl(in_progress_key_prefix + envelope_.job_id) <= 3000
    assert await arq_pool.get(retry_key_prefix + envelope_.job_id) == b"1"
    # still on the queue, as a claimed job is: if w-1 died, the lapsed lease frees it for a claim
    assert await arq_pool.zscore(QUEUE, envelope_.job_id) is not None
    assert await arq_pool.zcard(idle_workers_key(QUEUE)) == 0  # one job per registration
    assert not handoff.waiting


async def test_jobs_nobody_was_handed_wake_the_other_workers(arq_pool: ArqRedis, tasks: TaskService) -> None:
    await register_only(arq_pool, "w-1", lease_ms=3000, wait_ms=10_000)
    pubsub = arq_pool.pubsub()
    await pubsub.subscribe(wake_channel(QUEUE))
    try:
        assert (await pubsub.get_message(timeout=1.0))["type"] == "subscribe"  # type: ignore[index]
        results = await tasks.enqueue_many([job(1), job(2), job(3)])
        assert [r.status for r in results] == ["queued"] * 3
        message = await pubsub.get_message(timeout=2.0)
        assert message is not None and message["data"] == b"2"  # two left for a claim
        inbox = await arq_pool.lrange(inbox_key(QUEUE, "w-1"), 0, -1)
        assert len(inbox) == 1 and job(1).job_id.encode() in inbox[0]
        assert await arq_pool.exists(in_progress_key_prefix + job(2).job_id) == 0
        assert await arq_pool.zcard(QUEUE) == 3
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_lapsed_registration_is_skipped_and_removed_by_the_next(
    arq_pool: ArqRedis, tasks: TaskService
) -> None:
    await register_only(arq_pool, "w-gone", lease_ms=3000, wait_ms=50)
    await asyncio.sleep(0.2)  # 4 x the registration's wait
    await tasks.enqueue(job(1))
    assert await arq_pool.exists(in_progress_key_prefix + job(1).job_id) == 0
    assert await arq_pool.llen(inbox_key(QUEUE, "w-gone")) == 0
    await register_only(arq_pool, "w-live", lease_ms=3000, wait_ms=10_000)
    assert await arq_pool.zrange(idle_workers_key(QUEUE), 0, -1) == [b"3000 w-live"]
    await tasks.enqueue(job(2))
    assert await arq_pool.get(in_progress_key_prefix + job(2).job_id) == b"w-live"


async def test_unblock_ends_a_wait_at_once_and_deregisters(arq_pool: ArqRedis, tasks: TaskService) -> None:
    handoff = Handoff(arq_pool, QUEUE, "w-1", lease_ms=3000)
    waiting = asyncio.create_task(handoff.wait(20.0))
    while not await arq_pool.zcard(idle_workers_key(QUEUE)):
        await asyncio.sleep(0.01)
    await handoff.unblock()
    assert await asyncio.wait_for(waiting, 5.0) == []
    assert await arq_pool.zcard(idle_workers_key(QUEUE)) == 0
    await tasks.enqueue(job(1))  # no longer handed to w-1
    assert await arq_pool.exists(in_progress_key_prefix + job(1).job_id) == 0


async def test_a_job_left_in_the_inbox_comes_back_with_the_next_registration(
    arq_pool: ArqRedis, tasks: TaskService
) -> None:
    await register_only(arq_pool, "w-1", lease_ms=3000, wait_ms=10_000)
    await tasks.enqueue(job(1))  # pushed while w-1 was between two waits
    handoff = Handoff(arq_pool, QUEUE, "w-1", lease_ms=3000)
    handed = await asyncio.wait_for(handoff.wait(20.0), 5.0)  # returns at once, not after 20 s
    assert [h.job_id for h in handed] == [job(1).job_id]
    assert await arq_pool.zcard(idle_workers_key(QUEUE)) == 0  # not registered while holding leftovers
    assert await arq_pool.lrange(inbox_key(QUEUE, "w-1"), 0, -1) == []


async def test_a_released_job_is_free_for_any_worker_and_its_try_given_back(
    arq_pool: ArqRedis, tasks: TaskService
) -> None:
    await register_only(arq_pool, "w-1", lease_ms=3000, wait_ms=10_000)
    await tasks.enqueue(job(1))
    handoff = Handoff(arq_pool, QUEUE, "w-1", lease_ms=3000)
    [handed] = await handoff.take_leftovers()
    pubsub = arq_pool.pubsub()
    await pubsub.subscribe(wake_channel(QUEUE))
    try:
        await pubsub.get_message(timeout=1.0)
        await handoff.release(handed)
        message = await pubsub.get_message(timeout=2.0)
        assert message is not None and message["type"] == "message"  # idle workers claim it now
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert await arq_pool.exists(in_progress_key_prefix + job(1).job_id) == 0
    assert await arq_pool.exists(retry_key_prefix + job(1).job_id) == 0
    assert await arq_pool.zscore(QUEUE, job(1).job_id) is not None


@asynccontextmanager
async def redis_and_store(settings: Settings) -> AsyncIterator[tuple[ArqRedis, Repository, TaskService]]:
    """An emptied Redis database, an initialized store and a `TaskService` over both whose callers
    wait through a completion feed (it subscribes on the first wait only); closed afterwards."""
    pool = create_redis_pool(settings)
    await pool.flushdb()
    repository = build_repository(settings)
    await repository.init()
    feed = RedisCompletionFeed(pool)
    try:
        yield pool, repository, TaskService(RedisJobQueue(pool), repository=repository, completions=feed)
    finally:
        await feed.close()
        await pool.aclose(close_connection_pool=True)
        await repository.close()


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[AppWorker]:
    """A worker running (as `workers.py` builds it) and allowed to claim; closed afterwards."""
    await publish_deployment(settings)
    worker = build_worker(settings, handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    try:
        deadline = asyncio.get_running_loop().time() + 10 * settings.worker_heartbeat_interval
        while not worker.allow_pick_jobs:  # the first beat allows claiming
            assert asyncio.get_running_loop().time() < deadline, "the worker never started claiming"
            await asyncio.sleep(settings.worker_heartbeat_interval / 5)
        yield worker
    finally:
        await worker.close()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def wait_registered(pool: ArqRedis, worker: AppWorker, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    member = f"{int(worker.lifecycle.lease_s * 1000)} {worker.worker_id}"
    while not await pool.zscore(idle_workers_key(QUEUE), member):
        assert asyncio.get_running_loop().time() < deadline, "the worker never registered for a hand-off"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("direct_handoff", [True, False], ids=["handoff", "wake-up"])
async def test_an_idle_worker_runs_a_job_at_once_by_hand_off_or_wake_up(
    redis_server: object, tmp_path: Path, direct_handoff: bool
) -> None:
    """Poll delay 30 s: the job finishes, and the caller's `wait_for_result` returns the final
    record, well before one poll, through a hand-off (or, with `WORKER_DIRECT_HANDOFF=false`, a
    wake-up and a claim); the worker says which."""
    settings = make_settings(
        redis_server.url,  # type: ignore[attr-defined]
        tmp_path,
        arq_poll_delay=SLOW_POLL_S,
        worker_direct_handoff=direct_handoff,
    )
    async with redis_and_store(settings) as (pool, repository, tasks), running_worker(settings) as worker:
        if direct_handoff:
            await wait_registered(pool, worker, 10 * settings.worker_heartbeat_interval)
        else:
            await asyncio.wait_for(
                worker._wake_subscription.live.wait(), 10 * settings.worker_heartbeat_interval
            )
            await asyncio.sleep(0.2)  # inside its 30 s wait for a wake-up
            assert await pool.zcard(idle_workers_key(QUEUE)) == 0
        await repository.insert_appointments([appointment("h1")])
        started = asyncio.get_running_loop().time()
        await tasks.enqueue(envelope("h1"))
        record = await tasks.wait_for_result("normalize:h1:1", timeout=SLOW_POLL_S / 3)
        assert record.status is JobStatus.SUCCEEDED and record.worker_id == worker.worker_id
        assert asyncio.get_running_loop().time() - started < SLOW_POLL_S / 3
        assert worker.jobs_handed_off == (1 if direct_handoff else 0)
        stored = await repository.get_appointment("h1")
        assert stored is not None and stored.documento_normalizado is not None


async def test_jobs_back_to_back_run_at_once_and_the_worker_registers_again(
    redis_server: object, tmp_path: Path
) -> None:
    """Poll delay 30 s. Each job is enqueued as soon as the previous result is in, so some arrive
    while the worker pauses before registering again (`HANDOFF_REARM_S`): those are not handed,
    they wake it. Every job still finishes well before one poll, and the idle worker ends up
    registered for the next hand-off."""
    settings = make_settings(redis_server.url, tmp_path, arq_poll_delay=SLOW_POLL_S)  # type: ignore[attr-defined]
    async with redis_and_store(settings) as (pool, repository, tasks), running_worker(settings) as worker:
        await wait_registered(pool, worker, 10 * settings.worker_heartbeat_interval)
        ids = [f"b2b{n}" for n in range(20)]
        await repository.insert_appointments([appointment(i) for i in ids])
        started = asyncio.get_running_loop().time()
        for appointment_id in ids:
            await tasks.enqueue(envelope(appointment_id))
            record = await tasks.wait_for_result(f"normalize:{appointment_id}:1", SLOW_POLL_S / 3)
            assert record.status is JobStatus.SUCCEEDED
        assert asyncio.get_running_loop().time() - started < SLOW_POLL_S / 3
        assert 1 <= worker.jobs_handed_off <= len(ids)
        await wait_registered(pool, worker, 10 * settings.worker_heartbeat_interval)


async def test_a_worker_that_may_no_longer_claim_stops_waiting_and_is_not_handed_jobs(
    redis_server: object, tmp_path: Path
) -> None:
    settings = make_settings(redis_server.url, tmp_path, arq_poll_delay=SLOW_POLL_S)  # type: ignore[attr-defined]
    async with redis_and_store(settings) as (pool, _, tasks), running_worker(settings) as worker:
        await wait_registered(pool, worker, 10 * settings.worker_heartbeat_interval)
        worker.drain("test: stop claiming")
        deadline = asyncio.get_running_loop().time() + 3 * settings.worker_heartbeat_interval
        while await pool.zcard(idle_workers_key(QUEUE)) or worker._handoff.waiting:  # type: ignore[union-attr]
            assert asyncio.get_running_loop().time() < deadline, "the wait did not end"
            await asyncio.sleep(0.02)
        await tasks.enqueue(job(1))
        assert await pool.exists(in_progress_key_prefix + job(1).job_id) == 0


async def test_a_stopping_worker_gives_back_what_it_was_handed(
    settings: Settings, arq_pool: ArqRedis, tasks: TaskService
) -> None:
    worker = build_worker(settings, handle_signals=False)
    lease_ms = int(worker.lifecycle.lease_s * 1000)
    await register_only(arq_pool, worker.worker_id, lease_ms=lease_ms, wait_ms=10_000)
    await tasks.enqueue(job(1))  # handed over; the worker stops before running it
    assert await arq_pool.get(in_progress_key_prefix + job(1).job_id) == worker.worker_id.encode()
    await worker.close()
    assert await arq_pool.exists(in_progress_key_prefix + job(1).job_id) == 0
    assert await arq_pool.exists(retry_key_prefix + job(1).job_id) == 0
    assert await arq_pool.llen(inbox_key(QUEUE, worker.worker_id)) == 0
    assert await arq_pool.zcard(idle_workers_key(QUEUE)) == 0


async def test_a_job_handed_to_a_dead_worker_runs_elsewhere_after_its_lease(
    redis_server: object, tmp_path: Path
) -> None:
    settings = make_settings(redis_server.url, tmp_path, job_lease_seconds=1.0)  # type: ignore[attr-defined]
    async with redis_and_store(settings) as (pool, repository, tasks):
        await register_only(pool, "w-dead", lease_ms=int(settings.job_lease_seconds * 1000), wait_ms=60_000)
        await repository.insert_appointments([appointment("h9")])
        await tasks.enqueue(envelope("h9"))
        assert await pool.get(in_progress_key_prefix + "normalize:h9:1") == b"w-dead"
        async with running_worker(settings) as worker:
            record = await tasks.wait_for_result("normalize:h9:1", timeout=10 * settings.job_lease_seconds)
            assert record.status is JobStatus.SUCCEEDED and record.worker_id == worker.worker_id


async def test_a_stop_token_that_overtakes_its_registration_still_ends_that_wait(arq_pool: ArqRedis) -> None:
    """`unblock` travels on another connection than the wait it ends, so it may reach Redis first:
    that wait then neither registers nor blocks. A stale token (an earlier wait's) is dropped."""
    handoff = Handoff(arq_pool, QUEUE, "w-1", lease_ms=3000)
    keys = (idle_workers_key(QUEUE), inbox_key(QUEUE, "w-1"))
    await arq_pool.eval(STOP_SCRIPT, 2, *keys, "3000 w-1", "0", "1")  # the token of wait number 1
    assert await asyncio.wait_for(handoff.wait(20.0), 5.0) == []  # wait number 1: at once
    assert await arq_pool.zcard(idle_workers_key(QUEUE)) == 0
    await arq_pool.eval(STOP_SCRIPT, 2, *keys, "3000 w-1", "0", "1")  # stale by the next wait
    waiting = asyncio.create_task(handoff.wait(20.0))
    while not await arq_pool.zcard(idle_workers_key(QUEUE)):  # registered despite the stale token
        await asyncio.sleep(0.01)
    assert not waiting.done()
    await handoff.unblock()
    assert await asyncio.wait_for(waiting, 5.0) == []
