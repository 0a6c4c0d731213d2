"""A job type declared through the registry only (`JobRegistry`, `JobSpec`) runs end to end on a real
worker on its own queue, and arq's task API works inside it: `Retry(defer=…)`, per-job tries and
timeout, `ctx['job_try']` as the ledger's attempt, scheduling with `defer_by` / `defer_until`, and a
job put on the queue without TaskService is refused loudly, never counted as done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq import Retry
from arq.connections import ArqRedis
from arq.jobs import Job
from pydantic import BaseModel, ConfigDict

from src.api.schemas import job_response
from src.application.services.normalization_service import RunInfo
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.appointments import (
    NORMALIZATION,
    Appointment,
    KindResult,
    NormalizationResult,
    NormalizationStatus,
)
from src.domain.jobs import ErrorCategory, JobEnvelope, JobRecord, JobStatus, queue_key
from src.errors import TransientError
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.repository_factory import build_repository
from src.jobs.context import JobContext, run_info
from src.jobs.registry import JobRegistry
from src.jobs.spec import JobSpec, RetryPolicy
from src.worker.app_worker import AppWorker
from src.worker.settings import build_worker
from tests.conftest import publish_deployment

pytestmark = pytest.mark.integration

QUEUE = "phones"
RETRY_DEFER_S = 0.4
calls: list[tuple[str, int, float]] = []  # (phone id, ctx['job_try'], when)


class Phone(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phone_id: str


async def normalize_phone(ctx: JobContext, payload: Phone) -> dict[str, Any]:
    calls.append((payload.phone_id, ctx["job_try"], asyncio.get_running_loop().time()))
    if payload.phone_id == "retry-once" and ctx["job_try"] == 1:
        raise Retry(defer=RETRY_DEFER_S)
    if payload.phone_id == "carrier-down":
        raise TransientError("carrier down")
    if payload.phone_id == "slow":
        await asyncio.sleep(30)
    return {"phone_id": payload.phone_id, "job_try": ctx["job_try"]}


PHONE = JobSpec(
    name="normalize_phone",
    handler=normalize_phone,
    payload=Phone,
    queue=QUEUE,
    timeout_s=0.5,
    retry=RetryPolicy(max_tries=2, backoff_s=0.05),
)
ONCE = JobSpec(
    name="notify_once",  # a transient error is not retried: its policy retries nothing
    handler=normalize_phone,
    payload=Phone,
    queue=QUEUE,
    retry=RetryPolicy(retry_on=frozenset()),
)


class AppointmentPhone(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    appointment_id: str


async def verify_phone(ctx: JobContext, payload: AppointmentPhone) -> dict[str, Any]:
    """A job that records a result per appointment, as docs/architecture.md shows it."""
    run, started = run_info(ctx), datetime.now(UTC)
    appointment = await ctx["repository"].get_appointment(payload.appointment_id)
    assert appointment is not None
    result = KindResult(
        status="valid", data={"e164": "+5511999990000"}, provenance=run.provenance(started, datetime.now(UTC))
    )
    written = await ctx["repository"].save_results(
        "verify_phone", {appointment.id: result}, job_id=run.job_id, attempt=run.attempt
    )
    return {"written": written}


VERIFY = JobSpec(name="verify_phone", handler=verify_phone, payload=AppointmentPhone, queue=QUEUE)
REGISTRY = JobRegistry([PHONE, ONCE, VERIFY])


@pytest.fixture
async def tasks(settings: Settings, arq_pool: ArqRedis) -> AsyncIterator[TaskService]:
    calls.clear()
    repository = build_repository(settings)
    await repository.init()
    try:
        yield TaskService(RedisJobQueue(arq_pool), repository=repository, catalog=REGISTRY)
    finally:
        await repository.close()


def envelope(phone_id: str, task: str = PHONE.name, **ids: str | int) -> JobEnvelope:
    return JobEnvelope(task=task, logical_key=f"{task}:{phone_id}", ids=ids or {"phone_id": phone_id})


async def run_burst(settings: Settings) -> AppWorker:
    await publish_deployment(settings)
    worker = build_worker(settings, QUEUE, burst=True, handle_signals=False, registry=REGISTRY)
    try:
        await asyncio.wait_for(worker.async_run(), 60)
    finally:
        await worker.close()
    return worker


async def record(tasks: TaskService, job_id: str) -> JobRecord:
    found = await tasks.repository.get_job(job_id)
    assert found is not None, job_id
    return found


async def test_a_job_declared_in_the_registry_runs_on_its_own_queue(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    result = await tasks.enqueue(envelope("p-1"))  # its queue comes from the registry
    assert result.status == "queued"
    assert await arq_pool.zcard(queue_key(QUEUE)) == 1
    worker = await run_burst(settings)
    done = await record(tasks, result.job_id)
    assert (done.status, done.queue, done.attempt) == (JobStatus.SUCCEEDED, QUEUE, 1)
    assert done.result == {"phone_id": "p-1", "job_try": 1}
    assert [f for f in worker.functions] == ["normalize_phone", "notify_once", "verify_phone"]


async def test_retry_with_defer_is_a_retry_after_that_delay_and_job_try_is_the_attempt(
    settings: Settings, tasks: TaskService
) -> None:
    result = await tasks.enqueue(envelope("retry-once"))
    await run_burst(settings)
    done = await record(tasks, result.job_id)
    assert (done.status, done.attempt, done.app_failures) == (JobStatus.SUCCEEDED, 2, 1)
    assert done.result == {"phone_id": "retry-once", "job_try": 2}
    (_, first_try, first_at), (_, second_try, second_at) = calls
    assert (first_try, second_try) == (1, 2)  # the ledger's attempts
    assert second_at - first_at >= RETRY_DEFER_S  # not the policy's 0.05 s backoff


async def test_the_jobs_own_tries_and_timeout_are_honoured(settings: Settings, tasks: TaskService) -> None:
    """ARQ_MAX_TRIES is 5 and ARQ_JOB_TIMEOUT 300 s; the entry says 2 tries and 0.5 s."""
    assert settings.arq_max_tries > 2 and settings.arq_job_timeout > 0.5
    down = await tasks.enqueue(envelope("carrier-down"))
    slow = await tasks.enqueue(envelope("slow"))
    await run_burst(settings)
    failed = await record(tasks, down.job_id)
    assert (failed.status, failed.app_failures, failed.error_category) == (
        JobStatus.FAILED, 2, ErrorCategory.TRANSIENT,
    )  # fmt: skip
    assert failed.error_message == "carrier down (gave up after 2 tries)"
    timed_out = await record(tasks, slow.job_id)
    assert (timed_out.status, timed_out.app_failures, timed_out.error_category) == (
        JobStatus.FAILED, 2, ErrorCategory.TIMEOUT,
    )  # fmt: skip
    assert "0.5 s" in (timed_out.error_message or "")


async def test_an_error_category_the_policy_does_not_retry_fails_at_once(
    settings: Settings, tasks: TaskService
) -> None:
    result = await tasks.enqueue(envelope("carrier-down", task=ONCE.name))
    await run_burst(settings)
    failed = await record(tasks, result.job_id)
    assert (failed.status, failed.app_failures, failed.error_message) == (JobStatus.FAILED, 1, "carrier down")


async def test_an_invalid_payload_fails_the_job_naming_the_field(
    settings: Settings, tasks: TaskService
) -> None:
    result = await tasks.enqueue(envelope("p-2", phone=3))
    await run_burst(settings)
    failed = await record(tasks, result.job_id)
    assert (failed.status, failed.error_category) == (JobStatus.FAILED, ErrorCategory.PERMANENT)
    assert failed.error_message is not None
    assert "payload of normalize_phone is invalid" in failed.error_message
    assert "phone_id: Field required" in failed.error_message
    assert calls == []


async def test_a_scheduled_job_shows_scheduled_and_runs_at_its_time(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    result = await tasks.enqueue(envelope("later"), defer_by=1.0)
    view = await tasks.get_job(result.job_id)
    shown = job_response(view)
    assert shown.status == "scheduled" and shown.not_before is not None
    assert view.record.status is JobStatus.QUEUED and view.queue_state.queued
    ready, deferred, _ = await tasks.queue_depth(QUEUE)
    assert (ready, deferred) == (0, 1)  # on the queue, not claimable yet (nor handed to a worker)
    await run_burst(settings)
    done = await record(tasks, result.job_id)
    assert done.status is JobStatus.SUCCEEDED and done.started_at is not None
    assert done.started_at >= shown.not_before
    assert job_response(await tasks.get_job(result.job_id)).status == "succeeded"


async def test_defer_until_takes_an_aware_time_and_defers_are_checked(tasks: TaskService) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    result = await tasks.enqueue(envelope("tomorrow"), defer_until=when)
    assert (await record(tasks, result.job_id)).envelope.not_before == when
    ready, deferred, _ = await tasks.queue_depth(QUEUE)
    assert (ready, deferred) == (0, 1)
    with pytest.raises(ValueError, match="aware datetime"):
        await tasks.enqueue(envelope("naive"), defer_until=datetime.now() + timedelta(hours=1))  # noqa: DTZ005
    with pytest.raises(ValueError, match="not both"):
        await tasks.enqueue(envelope("both"), defer_by=1, defer_until=when)
    with pytest.raises(ValueError, match="negative"):
        await tasks.enqueue(envelope("past"), defer_by=-1)


async def test_a_job_name_the_registry_does_not_know_is_refused_at_enqueue(tasks: TaskService) -> None:
    with pytest.raises(ValueError, match="no job named 'normalise_phone'.*normalize_phone"):
        await tasks.enqueue(envelope("p-3", task="normalise_phone"))
    assert await tasks.repository.get_job("normalise_phone:p-3:1") is None  # nothing recorded


async def test_jobs_put_on_the_queue_without_task_service_are_refused_loudly(
    settings: Settings, tasks: TaskService, arq_pool: ArqRedis
) -> None:
    """arq's own `enqueue_job`: with arq-style arguments, and with our envelope but no ledger record.
    Neither runs the handler, both are failed results and failures in the metrics."""
    queue = queue_key(QUEUE)
    await arq_pool.enqueue_job("normalize_phone", phone_id="p-4", _job_id="stray:1", _queue_name=queue)
    unrecorded = envelope("p-5")
    await arq_pool.enqueue_job(
        "normalize_phone",
        envelope=unrecorded.model_dump(mode="json"),
        _job_id=unrecorded.job_id,
        _queue_name=queue,
    )
    worker = await run_burst(settings)
    assert calls == []
    assert (worker.jobs_complete, worker.jobs_failed) == (0, 2)
    for job_id, why in (("stray:1", "not one job envelope"), (unrecorded.job_id, "no ledger record")):
        info = await Job(
            job_id, arq_pool, _queue_name=queue, _deserializer=arq_pool.job_deserializer
        ).result_info()
        assert info is not None and info.success is False, job_id
        assert why in str(info.result), info.result
    assert worker.ctx["task_stats"]["normalize_phone"].failed == {"permanent": 2}
    assert await tasks.repository.get_job(unrecorded.job_id) is None


async def test_a_new_job_kind_s_result_sits_beside_the_normalization(
    settings: Settings, tasks: TaskService
) -> None:
    """A job of a new kind writes its result for an appointment with its run's provenance; it shows
    under `results.<kind>` and the normalization's result, provenance included, is left as it was."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    appointment = Appointment(id="appt-1", paciente="P", documento="52998224725", endereco="R. A 1",
                              data_hora=at, created_at=at)  # fmt: skip
    await tasks.repository.insert_appointments([appointment])
    normalization = NormalizationResult(
        appointment_id="appt-1", status=NormalizationStatus.NORMALIZED,
        provenance=RunInfo("normalize:appt-1:1", 1, "w-0", "0.9").provenance(at, at),
    )  # fmt: skip
    await tasks.repository.save_normalizations([normalization], job_id="normalize:appt-1:1", attempt=1)
    result = await tasks.enqueue(
        JobEnvelope(task=VERIFY.name, logical_key="verify_phone:appt-1", ids={"appointment_id": "appt-1"})
    )
    worker = await run_burst(settings)
    assert (await record(tasks, result.job_id)).result == {"written": 1}

    stored = await tasks.repository.get_appointment("appt-1")
    assert stored is not None and stored.results.keys() == {NORMALIZATION, "verify_phone"}
    verified = stored.results["verify_phone"]
    assert (verified.status, verified.data) == ("valid", {"e164": "+5511999990000"})
    assert (verified.provenance.job_id, verified.provenance.attempt) == (result.job_id, 1)
    assert verified.provenance.worker_id == worker.worker_id
    assert stored.results[NORMALIZATION] == normalization.kind_result()
    assert stored.provenance == normalization.provenance
