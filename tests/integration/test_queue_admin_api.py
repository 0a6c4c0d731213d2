"""Queue management endpoints against a real redis-server and real (in-process) workers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import result_key_prefix

from src.config import Settings
from src.domain.workers import WorkerState
from src.worker.settings import build_worker
from tests import worker_hooks
from tests.conftest import RunBurstWorker, publish_deployment

pytestmark = pytest.mark.integration

BODY = {
    "paciente": "Carla Dias",
    "documento": "529.982.247-25",
    "endereco": "Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
    "data_hora": "2026-12-01T10:00:00-03:00",
}


async def create(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.post("/api/v1/appointments", json=BODY)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def wait_for(predicate: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.05)


async def test_queue_info_counts_ledger_and_queue(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """/info lists both queues; lengths follow the queue and finished counts follow the ledger."""
    for _ in range(3):
        await create(api)
    info = {q["name"]: q for q in (await api.get("/api/v1/queue/info")).json()["items"]}
    assert set(info) == {"normalization", "maintenance"}
    assert info["normalization"]["length"] == 3 and info["normalization"]["oldest_queued_age_s"] >= 0
    await run_burst_worker()
    one = (await api.get("/api/v1/queue/info/normalization")).json()
    assert one["length"] == 0 and one["finished"] == 3 and one["in_progress"] == 0
    missing = await api.get("/api/v1/queue/info/nope")
    assert missing.status_code == 404 and "normalization" in missing.json()["detail"]


async def test_cancel_a_queued_job_and_refuse_cancelling_a_finished_one(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker, arq_pool: ArqRedis
) -> None:
    """A queued job is cancelled and taken off the queue; cancelling a finished job is 409 with why."""
    cancelled = await create(api)
    done = await create(api)
    response = await api.post(f"/api/v1/queue/job/{cancelled['job_id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["in_queue"] is False
    worker = await run_burst_worker()
    assert worker.jobs_complete == 1
    conflict = await api.post(f"/api/v1/queue/job/{done['job_id']}/cancel")
    assert conflict.status_code == 409 and "already succeeded" in conflict.json()["detail"]
    assert (await api.post("/api/v1/queue/job/normalize:nope:1/cancel")).status_code == 404


async def test_cancel_aborts_a_running_job(
    api: httpx.AsyncClient, settings: Settings, arq_pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running job is aborted: it ends cancelled, the worker carries on."""
    worker_hooks.install(monkeypatch, item_delay_ms=5000)
    slow = settings
    await publish_deployment(slow)
    created = await create(api)
    worker = build_worker(slow, handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    job_url = f"/api/v1/queue/job/{created['job_id']}"

    async def running() -> bool:
        return bool((await api.get(job_url)).json()["status"] == "running")

    await wait_for(running, 20 * settings.worker_heartbeat_interval)
    assert (await api.post(f"{job_url}/cancel")).json()["status"] == "cancelled"

    async def aborted() -> bool:
        return not worker.tasks or all(t.done() for t in worker.tasks.values())

    await wait_for(aborted, 20 * settings.arq_poll_delay + 5)
    assert (await api.get(job_url)).json()["status"] == "cancelled"
    await worker.close()
    await asyncio.gather(run, return_exceptions=True)


async def test_retry_runs_a_failed_job_under_the_next_generation(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker, arq_pool: ArqRedis
) -> None:
    """A failed job with a cached arq result is retried as generation 2, which succeeds; retrying a
    queued job is 409."""
    created = await create(api)
    assert (await api.post(f"/api/v1/queue/job/{created['job_id']}/retry")).status_code == 409
    state = api._transport.app.state  # type: ignore[attr-defined]
    record = await state.repository.get_job(created["job_id"])
    await state.tasks.remove_queued(created["job_id"], record.queue)
    await state.repository.cancel_job(created["job_id"], at=record.enqueued_at)
    await arq_pool.set(result_key_prefix + created["job_id"], b'{"s":false}')
    retried = await api.post(f"/api/v1/queue/job/{created['job_id']}/retry")
    assert retried.status_code == 202
    assert retried.json()["job_id"] == created["job_id"].rsplit(":", 1)[0] + ":2"
    await run_burst_worker()
    job = (await api.get(f"/api/v1/queue/job/{retried.json()['job_id']}")).json()
    assert job["status"] == "succeeded"


async def test_retry_follows_generations_and_requeues_a_vanished_job(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker, arq_pool: ArqRedis
) -> None:
    """A queued job whose arq job is gone is enqueued again at once (202, same id); retrying a
    generation that a live one replaced answers with that one; once it succeeded, 409 and the
    succeeded generation is never superseded."""
    created = await create(api)
    job_id = created["job_id"]
    state = api._transport.app.state  # type: ignore[attr-defined]
    record = await state.repository.get_job(job_id)
    await state.tasks.remove_queued(job_id, record.queue)  # gone, as a stranger or a wipe leaves it
    requeued = await api.post(f"/api/v1/queue/job/{job_id}/retry")
    assert requeued.status_code == 202 and requeued.json() == {
        "previous_job_id": job_id,
        "job_id": job_id,
        "status": "queued",
    }
    await state.tasks.remove_queued(job_id, record.queue)
    await arq_pool.set(result_key_prefix + job_id, b'{"s":false}')  # and a result blocks its id
    moved = await api.post(f"/api/v1/queue/job/{job_id}/retry")
    successor = job_id.rsplit(":", 1)[0] + ":2"
    assert moved.status_code == 202 and moved.json()["job_id"] == successor
    superseded = (await api.get(f"/api/v1/queue/job/{job_id}")).json()
    assert (superseded["status"], superseded["superseded_by"]) == ("superseded", successor)
    again = await api.post(f"/api/v1/queue/job/{job_id}/retry")
    assert again.status_code == 202 and again.json() == {
        "previous_job_id": job_id,
        "job_id": successor,
        "status": "already_queued",
    }
    waited = await api.get(f"/api/v1/queue/job/{job_id}", params={"wait": 0.1})
    assert waited.json()["job_id"] == job_id  # the answer is the asked job's record
    await run_burst_worker()
    refused = await api.post(f"/api/v1/queue/job/{job_id}/retry")
    assert refused.status_code == 409 and "succeeded" in refused.json()["detail"]
    done = await state.tasks.wait_for_result(job_id, 5)  # a waiter on the old id gets the outcome
    assert (done.job_id, done.status.value) == (successor, "succeeded")


async def test_cleanup_never_deletes_queued_or_running_jobs(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """Cleanup with a zero window removes finished records and results, and keeps queued ones."""
    finished = await create(api)
    await run_burst_worker()
    queued = await create(api)
    report = (await api.post("/api/v1/queue/cleanup", params={"older_than_s": 0})).json()
    assert report["ledger_records_deleted"] == 1 and report["results_deleted"] == 1
    assert (await api.get(f"/api/v1/queue/job/{finished['job_id']}")).status_code == 404
    assert (await api.get(f"/api/v1/queue/job/{queued['job_id']}")).json()["status"] == "queued"


async def test_failed_listing_counts_by_category(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """A job whose appointment vanished is listed as failed, category permanent, counted."""
    created = await create(api)
    state = api._transport.app.state  # type: ignore[attr-defined]
    await state.repository._run(  # test-only: make the appointment disappear
        lambda conn: conn.execute("DELETE FROM appointments WHERE id = ?", (created["appointment_id"],))
    )
    await run_burst_worker()
    failed = (await api.get("/api/v1/queue/failed")).json()
    assert failed["total"] == 1 and failed["by_category"]["permanent"] == 1
    assert failed["items"][0]["job_id"] == created["job_id"]
    assert "no longer exists" in failed["items"][0]["error_message"]


async def test_workers_endpoint_flags_fenced_workers_and_skew(
    api: httpx.AsyncClient, settings: Settings, arq_pool: ArqRedis
) -> None:
    """A worker of a version that is not allowed shows as fenced, with version skew flagged."""
    await publish_deployment(settings)
    ghost = build_worker(settings.model_copy(update={"app_version": "old-1"}), handle_signals=False)
    run = asyncio.create_task(ghost.async_run())

    async def listed() -> bool:
        return bool((await api.get("/api/v1/workers")).json()["items"])

    await wait_for(listed, 20 * settings.worker_heartbeat_interval)
    body = (await api.get("/api/v1/workers")).json()
    view = body["items"][0]
    assert view["fenced"] is True and view["version_skew"] is True and body["skew"] is True
    assert view["worker"]["state"] == WorkerState.FENCED.value
    assert body["allowed_versions"] == ["test-1"]
    allowed = await api.post("/api/v1/workers/versions/old-1/allow")
    assert allowed.json() == ["old-1", "test-1"]
    await ghost.close()
    await asyncio.gather(run, return_exceptions=True)


async def test_job_long_poll_answers_when_the_job_finishes(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """`?wait=S` answers as soon as a running worker finishes the job (well before S), answers with
    the current status after S when nobody runs it, and is bounded and validated."""
    created = await create(api)
    job_url = f"/api/v1/queue/job/{created['job_id']}"
    idle = await api.get(job_url, params={"wait": 0.3})
    assert idle.status_code == 200 and idle.json()["status"] == "queued"
    assert (await api.get(job_url, params={"wait": 61})).status_code == 422
    assert (await api.get(job_url, params={"wait": -1})).status_code == 422
    assert (await api.get("/api/v1/queue/job/normalize:nope:1", params={"wait": 1})).status_code == 404

    await publish_deployment(settings)
    worker = build_worker(settings, handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    try:
        started = asyncio.get_running_loop().time()
        answered = await api.get(job_url, params={"wait": 60})
        assert answered.status_code == 200 and answered.json()["status"] == "succeeded"
        assert asyncio.get_running_loop().time() - started < 30  # finished, not timed out
    finally:
        await worker.close()
        await asyncio.gather(run, return_exceptions=True)
