"""The job protocol with a real redis-server and real burst workers."""

from __future__ import annotations

import asyncio
import json
import pickle
from datetime import UTC, datetime

import pytest
from arq.connections import ArqRedis, create_pool
from arq.connections import RedisSettings as ArqRedisSettings
from arq.constants import job_key_prefix, result_key_prefix
from arq.worker import Worker

from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.appointments import Appointment
from src.domain.jobs import JobEnvelope, JobStatus, queue_key
from src.infrastructure.job_serializer import make_serializers
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.repository_factory import build_repository
from tests.conftest import RunBurstWorker

pytestmark = pytest.mark.integration

EXECUTED: list[str] = []


def appointment(appointment_id: str) -> Appointment:
    return Appointment(
        id=appointment_id,
        paciente="Paciente Teste",
        documento="52998224725",
        endereco="Av. Paulista, 1578, Bela Vista, São Paulo - SP, 01310-200",
        data_hora=datetime(2026, 12, 1, 14, 30, tzinfo=UTC),
        created_at=datetime.now(UTC),
    )


async def enqueue_for(settings: Settings, pool: ArqRedis, appointment_id: str, store: bool = True) -> str:
    repository = build_repository(settings)
    await repository.init()
    if store:
        await repository.insert_appointments([appointment(appointment_id)])
    env = JobEnvelope(
        task="normalize_appointment",
        logical_key=f"normalize:{appointment_id}",
        ids={"appointment_id": appointment_id},
        producer_version="test-1",
    )
    await TaskService(RedisJobQueue(pool), repository=repository).enqueue(env)
    await repository.close()
    return env.job_id


async def test_planted_pickle_is_refused_without_running_and_worker_survives(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """A pickled job planted in our queue is refused (never unpickled); the next real job still runs."""

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (EXECUTED.append, ("pwned",))

    planted = pickle.dumps({"t": 1, "f": "normalize_appointment", "a": [Boom()], "k": {}, "et": 1})
    await arq_pool.set(job_key_prefix + "planted:1", planted)
    await arq_pool.zadd(queue_key("normalization"), {"planted:1": 1})
    good = await enqueue_for(settings, arq_pool, "ok1")

    worker = await run_burst_worker()
    assert EXECUTED == []
    assert worker.jobs_complete == 1 and worker.jobs_failed == 1
    _, deserialize = make_serializers(settings.max_job_payload_bytes)
    refused = deserialize(await arq_pool.get(result_key_prefix + "planted:1"))
    assert refused["s"] is False and "deserialize" in refused["r"].message
    repository = build_repository(settings)
    await repository.init()
    record = await repository.get_job(good)
    assert record is not None and record.status == JobStatus.SUCCEEDED
    await repository.close()


async def test_plain_arq_worker_on_default_queue_never_sees_our_jobs(
    settings: Settings, arq_pool: ArqRedis, redis_server: object
) -> None:
    """A ghost: plain arq (pickle, default queue) registering our task names takes nothing of ours."""
    await enqueue_for(settings, arq_pool, "ghost1")

    async def normalize_appointment(ctx: dict[str, object], *args: object, **kwargs: object) -> str:
        EXECUTED.append("ghost")
        return "stolen"

    ghost_pool = await create_pool(ArqRedisSettings.from_dsn(redis_server.url))  # type: ignore[attr-defined]
    ghost = Worker(
        [normalize_appointment], redis_pool=ghost_pool, burst=True, handle_signals=False, poll_delay=0.05
    )
    await ghost.async_run()
    await ghost.close()
    assert ghost.jobs_complete == 0 and "ghost" not in EXECUTED
    assert await arq_pool.zcard(queue_key("normalization")) == 1


async def test_missing_appointment_fails_with_a_clear_reason(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """A job whose appointment disappeared ends failed, permanent, saying so; no retry."""
    job_id = await enqueue_for(settings, arq_pool, "gone1", store=False)
    worker = await run_burst_worker()
    assert worker.jobs_failed == 1 and worker.jobs_retried == 0
    repository = build_repository(settings)
    await repository.init()
    record = await repository.get_job(job_id)
    assert record is not None
    assert record.status == JobStatus.FAILED
    assert record.error_category == "permanent"
    assert record.error_message == "appointment gone1 no longer exists"
    assert record.app_failures == 1
    await repository.close()
    _, deserialize = make_serializers(settings.max_job_payload_bytes)
    result = deserialize(await arq_pool.get(result_key_prefix + job_id))
    assert result["r"].type_name == "JobFailed" and result["r"].category == "permanent"


async def test_worker_logs_carry_job_and_worker_ids(
    settings: Settings,
    arq_pool: ArqRedis,
    run_burst_worker: RunBurstWorker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The worker's lines for a job carry job_id, request_id and worker_id; at INFO a job is two lines
    (started, succeeded), arq's own per-job lines stay at DEBUG."""
    from src.logging import configure_logging

    configure_logging("DEBUG", "json")
    job_id = await enqueue_for(settings, arq_pool, "log1")
    worker = await run_burst_worker()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if '"job done"' in line]
    assert lines, err[-2000:]
    assert f'"job_id": "{job_id}"' in lines[0]
    assert f'"worker_id": "{worker.worker_id}"' in lines[0]
    configure_logging("INFO", "json")
    job_id = await enqueue_for(settings, arq_pool, "log2")
    await run_burst_worker()
    info_lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "log2" in line]
    # at INFO: our two lines a job (rate-limited, with its ids), never arq's own per-job lines
    assert [e["event"] for e in info_lines] == ["job started", "job succeeded"], info_lines


async def test_burst_worker_drains_within_a_generous_deadline(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """Fifty queued jobs all succeed in one burst run (deadline, not a timing assertion)."""
    for i in range(50):
        await enqueue_for(settings, arq_pool, f"many{i}")
    worker = await asyncio.wait_for(run_burst_worker(), 120)
    assert worker.jobs_complete == 50 and worker.jobs_failed == 0
