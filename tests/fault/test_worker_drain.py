"""SIGTERM to a worker process (`python workers.py` with the tests' hooks) mid-work, looked at in
Redis between its exit and the next worker's start: what the drain leaves on the queue."""

from __future__ import annotations

import signal

import pytest

from src.config import Environment, Settings
from src.domain.jobs import JobStatus, queue_key
from src.infrastructure.queue.keys import IN_PROGRESS_PREFIX, JOB_PREFIX, RESULT_PREFIX
from src.infrastructure.redis_pool import create_redis_pool
from tests.fault.harness import Cluster, duplicated, wait_for

pytestmark = pytest.mark.fault

QUEUE = queue_key("normalization")


async def test_sigterm_puts_the_unfinished_job_back_at_its_own_score(cluster: Cluster) -> None:
    """The short jobs running at SIGTERM finish there within ARQ_JOB_COMPLETION_WAIT; the long one is
    back on the queue when the process has exited 0: its lease gone, its payload kept, scored as it
    was enqueued (not with its lease's deadline, which would hold it back a lease). Another worker
    then completes it; every job completes once, no item is written twice."""
    wait_s, delay_ms = 4, 1500  # a short job: one delayed read; the chunk: ten delayed pages
    items = 1000
    await cluster.start_api(BATCH_CHUNK_SIZE="5000")
    report = await cluster.import_csv(items)
    (chunk,) = report["job_ids"]
    shorts = list((await cluster.create_appointments(3)).values())
    pool = create_redis_pool(
        Settings(_env_file=None, environment=Environment.TEST, redis_url=cluster.redis_url()),
        max_connections=4,
    )
    try:
        own_score = await pool.zscore(QUEUE, chunk)
        assert own_score is not None
        env = {"TEST_ITEM_DELAY_MS": str(delay_ms), "ARQ_JOB_COMPLETION_WAIT": str(wait_s)}
        draining = await cluster.start_worker("draining", env=env)

        async def all_running() -> bool:
            running = await cluster.running_on(draining)
            return set(shorts) | {chunk} <= set(running)

        await wait_for(all_running, timeout=30, what="the four jobs running on one worker", interval=0.02)
        draining.send(signal.SIGTERM)
        assert draining.wait_exit(3 * wait_s + 20) == 0, draining.tail()

        assert await pool.zscore(QUEUE, chunk) == own_score
        assert await pool.exists(IN_PROGRESS_PREFIX + chunk) == 0
        assert await pool.exists(JOB_PREFIX + chunk) == 1
        for job_id in shorts:
            assert await pool.zscore(QUEUE, job_id) is None and await pool.exists(RESULT_PREFIX + job_id)
        records = await cluster.jobs([chunk, *shorts])
        assert (records[chunk].status, records[chunk].interruptions) == (JobStatus.INTERRUPTED, 1)
        for job_id in shorts:
            short = records[job_id]
            assert (short.status, short.worker_id, short.attempt, short.interruptions) == (
                JobStatus.SUCCEEDED, draining.worker_id, 1, 0)  # fmt: skip

        other = await cluster.start_worker("other")
        finished = (await cluster.wait_all_succeeded([chunk], timeout=60))[chunk]
        assert (finished.worker_id, finished.attempt, finished.app_failures) == (other.worker_id, 2, 0)
        assert duplicated(cluster.effects()) == {}
        counts = await cluster.repo.count_batch(report["batch_id"])
        assert counts.normalized == items and counts.pending == 0
    finally:
        await pool.aclose(close_connection_pool=True)
