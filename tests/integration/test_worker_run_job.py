"""Our `run_job` (the job's payload, try count and abort flag come with the claim) gives arq's
outcomes for every case arq handles: result stored, retried with a defer, aborted before start,
expired payload, unknown function, tries exhausted, timeout. A burst worker on a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, job_key_prefix, retry_key_prefix
from arq.jobs import Job, serialize_job
from arq.worker import func

from src.config import Settings
from src.domain.jobs import queue_key
from src.infrastructure.job_serializer import JobFailure
from src.infrastructure.queue.keys import ClaimedJob
from src.worker.app_worker import AppWorker
from src.worker.settings import build_worker
from tests.conftest import publish_deployment

pytestmark = pytest.mark.integration

QUEUE = queue_key("normalization")
calls: list[str] = []


async def ok(ctx: dict[str, Any], value: int) -> dict[str, int]:
    calls.append(f"ok:{ctx['job_try']}")
    return {"doubled": value * 2}


async def retry_once(ctx: dict[str, Any]) -> str:
    calls.append(f"retry_once:{ctx['job_try']}")
    if ctx["job_try"] == 1:
        raise Retry(defer=0.05)
    return "second try"


async def too_slow(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(30)


FUNCTIONS = [
    func(ok, name="ok", max_tries=3),  # type: ignore[arg-type]
    func(retry_once, name="retry_once", max_tries=3),  # type: ignore[arg-type]
    func(too_slow, name="too_slow", timeout=0.2, max_tries=1),  # type: ignore[arg-type]
    func(too_slow, name="hangs", timeout=60, max_tries=1),  # type: ignore[arg-type]
]


async def run_burst(settings: Settings) -> AppWorker:
    await publish_deployment(settings)
    worker = build_worker(settings, burst=True, handle_signals=False, functions=FUNCTIONS)
    try:
        await asyncio.wait_for(worker.async_run(), 60)
    finally:
        await worker.close()
    return worker


async def result_of(pool: ArqRedis, job_id: str) -> tuple[bool, Any]:
    info = await Job(job_id, pool, _queue_name=QUEUE, _deserializer=pool.job_deserializer).result_info()
    assert info is not None, f"no result stored for {job_id}"
    return info.success, info.result


async def test_success_and_retry_with_defer(settings: Settings, arq_pool: ArqRedis) -> None:
    calls.clear()
    await arq_pool.enqueue_job("ok", 21, _job_id="t:ok:1", _queue_name=QUEUE)
    await arq_pool.enqueue_job("retry_once", _job_id="t:retry:1", _queue_name=QUEUE)
    worker = await run_burst(settings)
    assert await result_of(arq_pool, "t:ok:1") == (True, {"doubled": 42})
    assert await result_of(arq_pool, "t:retry:1") == (True, "second try")
    assert sorted(calls) == ["ok:1", "retry_once:1", "retry_once:2"]
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (2, 1, 0)
    assert await arq_pool.zcard(QUEUE) == 0


async def test_jobs_that_must_not_run_fail_with_arqs_reasons(settings: Settings, arq_pool: ArqRedis) -> None:
    """Expired payload, abort requested before start, unknown function, tries exhausted, timeout:
    each ends with a failed result naming why, and none of the functions ran."""
    calls.clear()
    for job_id, function in (("t:expired:1", "ok"), ("t:aborted:1", "ok"), ("t:unknown:1", "nope"),
                             ("t:exhausted:1", "ok"), ("t:slow:1", "too_slow")):  # fmt: skip
        args = (1,) if function == "ok" else ()
        await arq_pool.enqueue_job(function, *args, _job_id=job_id, _queue_name=QUEUE)
    await arq_pool.delete(job_key_prefix + "t:expired:1")
    await arq_pool.zadd(abort_jobs_ss, {"t:aborted:1": 1})
    await arq_pool.set(retry_key_prefix + "t:exhausted:1", 3)  # the claim makes it try 4 of max 3
    worker = await run_burst(settings)
    assert calls == []
    failures = {job_id: await result_of(arq_pool, job_id) for job_id in
                ("t:expired:1", "t:aborted:1", "t:unknown:1", "t:exhausted:1", "t:slow:1")}  # fmt: skip
    for job_id, (success, result) in failures.items():
        assert success is False and isinstance(result, JobFailure), job_id
    assert failures["t:expired:1"][1].message == "job expired"
    assert failures["t:aborted:1"][1].type_name == "CancelledError"
    assert "'nope' not found" in failures["t:unknown:1"][1].message
    assert failures["t:exhausted:1"][1].message == "max 3 retries exceeded"
    assert failures["t:slow:1"][1].type_name == "TimeoutError"
    assert worker.jobs_failed == 5 and await arq_pool.zcard(QUEUE) == 0


async def test_aborting_a_running_job_fails_it_and_the_worker_carries_on(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """The function runs in the job's own task: an abort requested while it runs cancels it there,
    the result says CancelledError (arq's outcome), and the worker then runs the next job and still
    applies a job timeout."""
    calls.clear()
    await publish_deployment(settings)
    worker = build_worker(settings, handle_signals=False, functions=FUNCTIONS)
    run = asyncio.create_task(worker.async_run())
    try:
        await arq_pool.enqueue_job("hangs", _job_id="t:running:1", _queue_name=QUEUE)
        deadline = asyncio.get_running_loop().time() + 20 * settings.arq_poll_delay + 10
        while "t:running:1" not in worker.tasks:
            assert asyncio.get_running_loop().time() < deadline, "the job never started"
            await asyncio.sleep(0.01)
        await arq_pool.zadd(abort_jobs_ss, {"t:running:1": 1})
        success, result = await wait_result(arq_pool, "t:running:1", deadline)
        assert success is False and isinstance(result, JobFailure)
        assert result.type_name == "CancelledError"
        await arq_pool.enqueue_job("ok", 4, _job_id="t:after:1", _queue_name=QUEUE)
        await arq_pool.enqueue_job("too_slow", _job_id="t:after-slow:1", _queue_name=QUEUE)
        assert await wait_result(arq_pool, "t:after:1", deadline + 10) == (True, {"doubled": 8})
        success, result = await wait_result(arq_pool, "t:after-slow:1", deadline + 10)
        assert success is False and result.type_name == "TimeoutError"
        assert worker.jobs_failed == 2 and worker.jobs_complete == 1
    finally:
        await worker.close()
        await asyncio.gather(run, return_exceptions=True)


async def wait_result(pool: ArqRedis, job_id: str, deadline: float) -> tuple[bool, Any]:
    job = Job(job_id, pool, _queue_name=QUEUE, _deserializer=pool.job_deserializer)
    while (info := await job.result_info()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"no result for {job_id}"
        await asyncio.sleep(0.02)
    return info.success, info.result


async def test_every_ending_gives_the_slot_back_once(settings: Settings, arq_pool: ArqRedis) -> None:
    """A job frees its slot from inside its task as it ends (a done callback would run a loop turn
    later); a task cancelled before its first step never gets there, and its done callback frees the
    slot instead. Each only once: a slot freed twice would let the worker run more than max_jobs."""
    await publish_deployment(settings)
    worker = build_worker(settings, burst=True, handle_signals=False, functions=FUNCTIONS)
    payload = serialize_job("ok", (3,), {}, 1, 1, serializer=arq_pool.job_serializer)
    try:
        never = worker._start_job(ClaimedJob("t:never:1", 0, payload, 1, False))
        assert worker.job_counter == 1
        never.cancel()
        await asyncio.gather(never, return_exceptions=True)
        await asyncio.sleep(0)  # its done callback
        assert worker.job_counter == 0 and never.cancelled()
        del worker.tasks["t:never:1"]  # as the next poll does with a finished task
        ran = [worker._start_job(ClaimedJob(f"t:ran:{i}", 0, payload, 1, False)) for i in range(3)]
        assert worker.job_counter == 3
        await asyncio.gather(*ran)
        await asyncio.sleep(0)  # their done callbacks: nothing freed twice
        assert worker.job_counter == 0 and worker.jobs_complete == 3
    finally:
        await worker.close()


async def test_an_abort_that_came_too_late_is_forgotten_when_the_run_ends(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """An abort request that reaches a job as it finishes is not its outcome: the run ends as it
    ended (complete), and the mark is dropped, so a later run of the same id on this worker is not
    taken for an aborted one."""
    await publish_deployment(settings)
    worker = build_worker(settings, burst=True, handle_signals=False, functions=FUNCTIONS)
    payload = serialize_job("ok", (3,), {}, 1, 1, serializer=arq_pool.job_serializer)
    try:
        worker.executor.aborting.add("t:late:1")  # as `_abort` marks it, the cancel landing too late
        await worker._start_job(ClaimedJob("t:late:1", 0, payload, 1, False))
        assert worker.jobs_complete == 1 and worker.jobs_failed == 0
        assert "t:late:1" not in worker.executor.aborting
    finally:
        await worker.close()
