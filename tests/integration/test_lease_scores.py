"""A running job's score on the queue is its lease's deadline (claim, hand-off, renewal) and goes
back to its own score when the job stays queued (put back, retried, given back), on a real
redis-server. So a claim reads only jobs it can take: workers whose running jobs outnumber
`queue_read_limit` still claim the next ones (arq's reading of the first `queue_read_limit` ids,
held or not, would leave them idle)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.worker import func

from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.jobs import JobEnvelope, queue_key
from src.domain.workers import WorkerRecord
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.queue.handoff import Handoff
from src.infrastructure.repository_factory import build_repository
from src.worker.app_worker import AppWorker
from src.worker.settings import build_worker
from tests.conftest import publish_deployment
from tests.integration.test_handoff import register_only

pytestmark = pytest.mark.integration

QUEUE = queue_key("normalization")
DEFER_S = 600.0
LEASE_S = 30.0  # far from the deferral and from the slack: each score tells which rule set it
SLACK_MS = 1_000  # one host: the worker's, Redis's and the test's clocks read a little apart


async def hangs(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(3600)


async def retry_later(ctx: dict[str, Any]) -> None:
    raise Retry(defer=DEFER_S)


FUNCTIONS = [
    func(hangs, name="hangs", timeout=3600, max_tries=5),  # type: ignore[arg-type]
    func(retry_later, name="retry_later", max_tries=5),  # type: ignore[arg-type]
]


def now_ms() -> int:
    return int(time.time() * 1000)


@asynccontextmanager
async def claiming_worker(settings: Settings, *, max_jobs: int, read_cap: int) -> AsyncIterator[AppWorker]:
    """A built worker that claims only when the test calls `_claim_ready`; its running jobs are
    cancelled (put back, as a stopping worker does) and the worker closed afterwards."""
    await publish_deployment(settings)
    worker = build_worker(
        settings.model_copy(update={"arq_max_jobs": max_jobs, "job_lease_seconds": LEASE_S}),
        burst=True,
        handle_signals=False,
        functions=FUNCTIONS,
    )
    worker.queue_read_limit = read_cap
    try:
        yield worker
    finally:
        worker.release_running_jobs("test over")
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await worker.close()


async def enqueue(pool: ArqRedis, function: str, ids: Iterable[str]) -> dict[str, float]:
    """Enqueue one job per id, a millisecond apart (distinct scores); their scores."""
    scores: dict[str, float] = {}
    for job_id in ids:
        await pool.enqueue_job(function, _job_id=job_id, _queue_name=QUEUE)
        score = await pool.zscore(QUEUE, job_id)
        assert score is not None
        scores[job_id] = score
        await asyncio.sleep(0.002)
    return scores


async def wait_until_started(worker: AppWorker, job_ids: Iterable[str], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(job_id in worker.tasks for job_id in job_ids):
        assert asyncio.get_running_loop().time() < deadline, "the claimed jobs never started"
        await asyncio.sleep(0.01)


async def test_a_claimed_job_is_scored_with_its_lease_and_put_back_with_its_own_score(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    scores = await enqueue(arq_pool, "hangs", ["t:lease:1", "t:lease:2"])
    lease_ms = int(LEASE_S * 1000)
    async with claiming_worker(settings, max_jobs=1, read_cap=10) as worker:
        before = now_ms()
        more = await worker._claim_ready(worker.queue_read_limit)
        assert more is True  # its one slot is taken and the second job is still ready
        await wait_until_started(worker, ["t:lease:1"], timeout=5)
        leased = await arq_pool.zscore(QUEUE, "t:lease:1")
        assert leased is not None and before + lease_ms - SLACK_MS <= leased <= now_ms() + lease_ms + SLACK_MS
        assert await arq_pool.zscore(QUEUE, "t:lease:2") == scores["t:lease:2"]  # untouched
        tasks = TaskService(RedisJobQueue(arq_pool), repository=build_repository(settings))
        ready, deferred, oldest = await tasks.queue_depth("normalization")
        assert (ready, deferred, oldest) == (1, 1, scores["t:lease:2"])  # the running job is not "ready"
        worker.release_running_jobs("test: stopping")  # cancelled: arq puts it back on the queue
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        assert await arq_pool.zscore(QUEUE, "t:lease:1") == scores["t:lease:1"]  # ready again at once
        assert await arq_pool.exists(in_progress_key_prefix + "t:lease:1") == 0


async def test_workers_claim_past_the_jobs_other_workers_run(settings: Settings, arq_pool: ArqRedis) -> None:
    """Two workers reading at most 2 ids per claim: the first runs the first two jobs; the second
    still claims the third and fourth (with arq's read it would read the first two, held, and idle)."""
    ids = [f"t:many:{n}" for n in range(1, 6)]
    await enqueue(arq_pool, "hangs", ids)
    async with (
        claiming_worker(settings, max_jobs=2, read_cap=2) as first,
        claiming_worker(settings, max_jobs=2, read_cap=2) as second,
    ):
        assert await first._claim_ready(first.queue_read_limit) is True
        await wait_until_started(first, ids[:2], timeout=5)
        assert await second._claim_ready(second.queue_read_limit) is True
        await wait_until_started(second, ids[2:4], timeout=5)
        for job_id, owner in zip(ids[:4], [first, first, second, second], strict=True):
            assert await arq_pool.get(in_progress_key_prefix + job_id) == owner.worker_id.encode()
        assert await arq_pool.zcount(QUEUE, "-inf", now_ms()) == 1  # only the fifth is ready


async def test_a_claim_reads_past_ids_another_holder_has_not_rescored(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """Jobs held with their own scores (claimed by a release before this one, or whose lease is being
    taken over) are skipped, and the claim reads on to the ones it can take, up to its read cap."""
    ids = [f"t:held:{n}" for n in range(1, 6)]
    await enqueue(arq_pool, "hangs", ids)
    for job_id in ids[:3]:
        await arq_pool.set(in_progress_key_prefix + job_id, b"w-older", px=60_000)
    async with claiming_worker(settings, max_jobs=2, read_cap=10) as worker:
        assert await worker._claim_ready(worker.queue_read_limit) is False  # nothing ready is left
        await wait_until_started(worker, ids[3:], timeout=5)
    async with claiming_worker(settings, max_jobs=2, read_cap=3) as capped:
        # reading 3 ids finds only held ones: nothing claimed, no spinning (the next poll retries)
        assert await capped._claim_ready(capped.queue_read_limit) is False
        assert not capped.tasks


async def test_a_claim_goes_on_past_a_chunk_it_partly_claimed(settings: Settings, arq_pool: ArqRedis) -> None:
    """Two held ids, then five free, 3 slots: the first chunk (slots + 1 = 4 ids) skips the held two
    and claims two; the claimed ones leave the ready range, so the next chunk starts after the skipped
    ids only, claims the third, and sees a fourth: more are ready."""
    ids = [f"t:mixed:{n}" for n in range(1, 8)]
    await enqueue(arq_pool, "hangs", ids)
    for job_id in ids[:2]:
        await arq_pool.set(in_progress_key_prefix + job_id, b"w-older", px=60_000)
    async with claiming_worker(settings, max_jobs=3, read_cap=10) as worker:
        assert await worker._claim_ready(worker.queue_read_limit) is True
        await wait_until_started(worker, ids[2:5], timeout=5)
        assert sorted(worker.tasks) == ids[2:5]  # in queue order: none skipped, none out of turn


async def test_a_job_claimed_again_while_it_runs_here_is_not_run_twice(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """A pause longer than the lease lets it lapse; this worker's next claim takes its own running
    job again. The running task keeps it: no second run, and the score is its own when put back."""
    scores = await enqueue(arq_pool, "hangs", ["t:again:1"])
    async with claiming_worker(settings, max_jobs=2, read_cap=10) as worker:
        await worker._claim_ready(worker.queue_read_limit)
        await wait_until_started(worker, ["t:again:1"], timeout=5)
        running = worker.tasks["t:again:1"]
        await arq_pool.delete(in_progress_key_prefix + "t:again:1")  # the lease lapsed
        await arq_pool.zadd(QUEUE, {"t:again:1": scores["t:again:1"]})  # and so did its deadline
        await worker._claim_ready(worker.queue_read_limit)
        assert worker.tasks["t:again:1"] is running and worker.job_counter == 1
        assert await arq_pool.get(in_progress_key_prefix + "t:again:1") == worker.worker_id.encode()
        worker.release_running_jobs("test: stopping")
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        assert await arq_pool.zscore(QUEUE, "t:again:1") == scores["t:again:1"]


async def test_a_deferred_retry_is_scored_from_the_jobs_own_score(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    await enqueue(arq_pool, "retry_later", ["t:retry:1"])
    async with claiming_worker(settings, max_jobs=1, read_cap=10) as worker:
        before = now_ms()
        await worker._claim_ready(worker.queue_read_limit)
        await asyncio.gather(*worker.tasks.values())
        after = now_ms()
    score = await arq_pool.zscore(QUEUE, "t:retry:1")
    defer_ms = DEFER_S * 1000  # arq's ZINCRBY would have added it to the lease's deadline
    assert score is not None and before + defer_ms - SLACK_MS <= score <= after + defer_ms + SLACK_MS
    assert worker.jobs_retried == 1


async def test_renewing_a_lease_moves_the_score_of_the_jobs_this_worker_holds_only(
    arq_pool: ArqRedis,
) -> None:
    registry = DeploymentRegistry(arq_pool)
    await arq_pool.zadd(QUEUE, {"t:mine:1": 1000, "t:theirs:1": 1000})
    await arq_pool.set(in_progress_key_prefix + "t:mine:1", b"w-1", px=60_000)
    await arq_pool.set(in_progress_key_prefix + "t:theirs:1", b"w-2", px=60_000)
    await arq_pool.set(in_progress_key_prefix + "t:gone:1", b"w-1", px=60_000)  # finished meanwhile
    beat = datetime.now(UTC)
    before = now_ms()
    record = WorkerRecord(
        worker_id="w-1", hostname="h", pid=1, version="test-1", queue=QUEUE, tasks=[], fingerprint="f",
        started_at=beat, last_beat_at=beat,
    )  # fmt: skip
    renewed = await registry.publish(
        record,
        ttl_ms=60_000,
        job_ids=["t:mine:1", "t:theirs:1", "t:gone:1"],
        lease_ms=30_000,
        queue_key=QUEUE,
    )
    assert renewed == 2  # its own two leases
    renewed_to = await arq_pool.zscore(QUEUE, "t:mine:1")
    assert renewed_to is not None and before + 30_000 - SLACK_MS <= renewed_to <= now_ms() + 30_000 + SLACK_MS
    assert await arq_pool.zscore(QUEUE, "t:theirs:1") == 1000
    assert await arq_pool.zscore(QUEUE, "t:gone:1") is None  # never put back on the queue


async def test_a_handed_job_is_scored_with_its_lease_and_given_back_with_its_own_score(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    repository = build_repository(settings)
    await repository.init()
    try:
        tasks = TaskService(RedisJobQueue(arq_pool), repository=repository)
        await register_only(arq_pool, "w-1", lease_ms=30_000, wait_ms=10_000)
        envelope = JobEnvelope(
            task="normalize_appointment", logical_key="lease:h1", ids={"appointment_id": "h1"},
            producer_version="test-1",
        )  # fmt: skip
        before = now_ms()
        await tasks.enqueue(envelope)
        leased = await arq_pool.zscore(QUEUE, envelope.job_id)
        assert leased is not None and before + 30_000 - SLACK_MS <= leased <= now_ms() + 30_000 + SLACK_MS
        handoff = Handoff(arq_pool, QUEUE, "w-1", lease_ms=30_000)
        [handed] = await handoff.take_leftovers()
        assert before - SLACK_MS <= handed.score <= now_ms() + SLACK_MS  # the job's own score travels with it
        await handoff.release(handed)
        assert await arq_pool.zscore(QUEUE, envelope.job_id) == handed.score
    finally:
        await repository.close()
