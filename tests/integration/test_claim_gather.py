"""Before claiming for freed slots, a worker short of CPU waits for a quarter of its slots to be
free (fewer, bigger claims), and one with CPU to spare claims for the first free slot at once.
Jobs held open by the test on a real redis-server; the CPU measure is replaced by a fixed answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.jobs import serialize_job
from arq.worker import func

from src.config import Settings
from src.infrastructure.queue.keys import ClaimedJob
from src.worker import claim_loop
from src.worker.settings import build_worker
from tests.conftest import publish_deployment

pytestmark = pytest.mark.integration

gates: dict[str, asyncio.Event] = {}


async def held(ctx: dict[str, Any]) -> None:
    await gates[ctx["job_id"]].wait()


async def test_a_cpu_bound_worker_gathers_freed_slots_and_an_idle_one_does_not(
    settings: Settings, arq_pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claim_loop, "BUSY_CLAIM_GATHER_S", 60.0)  # the gather ends by slots, not time
    await publish_deployment(settings)
    worker = build_worker(
        settings.model_copy(update={"arq_max_jobs": 8}),
        burst=True,
        handle_signals=False,
        functions=[func(held, name="held")],  # type: ignore[arg-type]
    )
    payload = serialize_job("held", (), {}, 1, 1, serializer=arq_pool.job_serializer)
    gates.clear()

    async def start(job_id: str) -> None:
        gates[job_id] = asyncio.Event()
        worker._start_job(ClaimedJob(job_id, 0, payload, 1, False))

    async def end(job_id: str) -> None:
        task = worker.tasks[job_id]
        gates[job_id].set()
        await asyncio.wait_for(asyncio.gather(task), 30)

    try:
        for n in range(8):
            await start(f"t:gather:{n}")
        assert worker.job_counter == 8
        monkeypatch.setattr(worker._cpu_load, "saturated", lambda: True)
        waiting = asyncio.create_task(worker._slots_to_claim(60))
        await end("t:gather:0")
        await asyncio.sleep(0.3)
        assert not waiting.done()  # one slot of 8 is free; a quarter is 2
        await end("t:gather:1")
        assert await asyncio.wait_for(waiting, 30) is True
        assert worker.max_jobs - worker.job_counter == 2

        await start("t:gather:8")
        await start("t:gather:9")
        assert worker.job_counter == 8
        monkeypatch.setattr(worker._cpu_load, "saturated", lambda: False)
        waiting = asyncio.create_task(worker._slots_to_claim(60))
        await end("t:gather:2")
        assert await asyncio.wait_for(waiting, 30) is True  # the first free slot is enough
        assert worker.max_jobs - worker.job_counter == 1
    finally:
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await worker.close()
