"""Claiming ahead (`WORKER_CLAIM_AHEAD`) against a real Redis: a busy worker holds a few more jobs
than its slots, under lease, and starts each as a slot frees; it never runs more than its slots at
once, and what it claimed ahead goes back to the queue, try and lease returned, the moment it may no
longer run it (fenced, or stopping)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, retry_key_prefix
from arq.worker import func

from src.config import Settings
from src.domain.jobs import JobEnvelope, JobName, QueueName, queue_key
from src.worker.arq_worker import AppWorker
from src.worker.settings import build_worker, claim_ahead
from tests.conftest import make_settings, publish_deployment
from tests.integration.test_handoff import redis_and_store

pytestmark = pytest.mark.integration

QUEUE = queue_key(QueueName.NORMALIZATION)
SLOTS, AHEAD, JOBS = 2, 2, 6


def job(n: int) -> JobEnvelope:
    return JobEnvelope(
        task=JobName.NORMALIZE_APPOINTMENT, logical_key=f"ahead:{n}", ids={"n": n}, producer_version="test-1"
    )


class Gate:
    """The job body: counts how many run at once and blocks until released."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def body(self, ctx: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.append(ctx["job_id"])
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return {}


@asynccontextmanager
async def busy_worker(settings: Settings, gate: Gate) -> AsyncIterator[AppWorker]:
    await publish_deployment(settings)
    task = func(gate.body, name=JobName.NORMALIZE_APPOINTMENT.value)  # type: ignore[arg-type]
    worker = build_worker(settings, handle_signals=False, functions=[task])
    run = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        await worker.close()  # cancels what still runs (arq puts it back) before the gate opens
        gate.release.set()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def leases_of(pool: ArqRedis, worker: AppWorker) -> set[str]:
    held = set()
    for n in range(JOBS):
        if await pool.get(in_progress_key_prefix + job(n).job_id) == worker.worker_id.encode():
            held.add(job(n).job_id)
    return held


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


def test_the_default_is_a_tenth_of_the_slots(tmp_path: Path) -> None:
    assert claim_ahead(make_settings("redis://127.0.0.1:1/0", tmp_path, arq_max_jobs=100)) == 10
    assert claim_ahead(make_settings("redis://127.0.0.1:1/0", tmp_path)) == 4  # ARQ_MAX_JOBS 40
    assert claim_ahead(make_settings("redis://127.0.0.1:1/0", tmp_path, worker_claim_ahead=0)) == 0


async def test_a_busy_worker_claims_ahead_but_never_runs_more_than_its_slots(
    redis_server: object, tmp_path: Path
) -> None:
    settings = make_settings(
        redis_server.url,  # type: ignore[attr-defined]
        tmp_path,
        arq_max_jobs=SLOTS,
        worker_claim_ahead=AHEAD,
        worker_direct_handoff=False,
    )
    gate = Gate()
    async with redis_and_store(settings) as (pool, _, tasks), busy_worker(settings, gate) as worker:
        await tasks.enqueue_many([job(n) for n in range(JOBS)])
        wait_s = 20 * settings.worker_heartbeat_interval

        async def holding_slots_and_ahead() -> bool:
            return len(await leases_of(pool, worker)) == SLOTS + AHEAD and gate.running == SLOTS

        await until(holding_slots_and_ahead, wait_s, "the worker never held its slots and the jobs ahead")
        await asyncio.sleep(3 * settings.arq_poll_delay)  # polls go by: nothing more is claimed
        assert len(await leases_of(pool, worker)) == SLOTS + AHEAD and gate.most == SLOTS
        gate.release.set()

        async def all_done() -> bool:
            return worker.jobs_complete == JOBS

        await until(all_done, wait_s, "not every job finished")
        assert gate.most == SLOTS and sorted(gate.started) == sorted(job(n).job_id for n in range(JOBS))
        assert await leases_of(pool, worker) == set()


@pytest.mark.parametrize("how", ["fenced", "stopping"])
async def test_jobs_claimed_ahead_go_back_at_once_when_the_worker_may_not_run_them(
    redis_server: object, tmp_path: Path, how: str
) -> None:
    """Fenced (the heartbeat's `release_running_jobs`) or stopping (`close`): the jobs that never had
    a slot are back on the queue with their lease and try returned, for any worker to claim now."""
    settings = make_settings(
        redis_server.url,  # type: ignore[attr-defined]
        tmp_path,
        arq_max_jobs=SLOTS,
        worker_claim_ahead=AHEAD,
        worker_direct_handoff=False,
        job_lease_seconds=60.0,  # a lapsed lease would hide a missing give-back
    )
    gate = Gate()
    async with redis_and_store(settings) as (pool, _, tasks):
        async with busy_worker(settings, gate) as worker:
            await tasks.enqueue_many([job(n) for n in range(JOBS)])

            async def holding() -> bool:
                return len(await leases_of(pool, worker)) == SLOTS + AHEAD and gate.running == SLOTS

            await until(holding, 20 * settings.worker_heartbeat_interval, "never held slots + ahead")
            ahead = await leases_of(pool, worker) - set(gate.started)
            assert len(ahead) == AHEAD
            if how == "fenced":
                worker.allow_pick_jobs = False
                worker.release_running_jobs("test: fenced")

                async def given_back() -> bool:
                    return not await leases_of(pool, worker)

                await until(given_back, 3 * settings.worker_heartbeat_interval, "leases kept after fencing")
        # (stopping: leaving the block closed the worker)
        assert gate.started and set(gate.started).isdisjoint(ahead)  # never ran here
        for job_id in ahead:
            assert await pool.exists(in_progress_key_prefix + job_id) == 0
            assert await pool.exists(retry_key_prefix + job_id) == 0  # the try was not used
            assert await pool.zscore(QUEUE, job_id) is not None  # still queued, for anyone
