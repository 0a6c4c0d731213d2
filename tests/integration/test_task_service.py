"""TaskService against a real redis-server: idempotent, pipelined, ledger first."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from src.application.services.task_service import TaskService
from src.config import Settings, get_settings
from src.domain.jobs import JobEnvelope, JobName, JobStatus, QueueName, queue_key
from src.infrastructure.repository_factory import build_repository

pytestmark = pytest.mark.integration


def envelope(n: int, generation: int = 1) -> JobEnvelope:
    return JobEnvelope(
        task=JobName.NORMALIZE_APPOINTMENT,
        logical_key=f"normalize:a{n}",
        generation=generation,
        ids={"appointment_id": f"a{n}"},
        producer_version="test-1",
    )


async def test_bulk_enqueue_writes_ledger_then_queue_and_is_idempotent(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """2,500 jobs go out in pipelined chunks; a second call reports every one as already queued."""
    repository = build_repository(settings)
    await repository.init()
    service = TaskService(pool=arq_pool, repository=repository, producer_version="test-1")
    envelopes = [envelope(i) for i in range(2500)]

    first = await service.enqueue_many(envelopes)
    assert [r.status for r in first].count("queued") == 2500
    assert await arq_pool.zcard(queue_key(QueueName.NORMALIZATION)) == 2500
    record = await repository.get_job("normalize:a42:1")
    assert (
        record is not None
        and record.status == JobStatus.QUEUED
        and record.envelope.ids["appointment_id"] == "a42"
    )

    second = await service.enqueue_many(envelopes[:10])
    assert {r.status for r in second} == {"already_queued"}
    assert await arq_pool.zcard(queue_key(QueueName.NORMALIZATION)) == 2500
    await repository.close()


async def test_next_generation_is_never_refused_by_a_cached_result(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """A result cached under generation 1 refuses gen 1 again but accepts gen 2."""
    repository = build_repository(settings)
    await repository.init()
    service = TaskService(pool=arq_pool, repository=repository)
    await arq_pool.set("arq:result:normalize:a1:1", b"{}")
    assert (await service.enqueue(envelope(1))).status == "already_queued"
    assert (await service.enqueue(envelope(1, generation=2))).status == "queued"
    await repository.close()


async def test_payload_in_redis_is_json_with_ids_only(settings: Settings, arq_pool: ArqRedis) -> None:
    """The stored job is JSON (never pickle) and carries ids, not personal data."""
    repository = build_repository(settings)
    await repository.init()
    await TaskService(pool=arq_pool, repository=repository).enqueue(envelope(7))
    raw = await arq_pool.get(job_key_prefix + "normalize:a7:1")
    assert raw is not None and raw.startswith(b"{")
    assert b'"appointment_id":"a7"' in raw
    await repository.close()


async def test_task_service_without_arguments_builds_a_working_pool(
    redis_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployment guide's check: `await TaskService().get_pool()` returns a pool that answers."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)  # type: ignore[attr-defined]
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "x.sqlite3"))
    get_settings.cache_clear()
    try:
        service = TaskService()
        pool = await service.get_pool()
        assert await pool.ping() is True
        assert pool.default_queue_name == queue_key(QueueName.NORMALIZATION)
        await service.close()
    finally:
        get_settings.cache_clear()
        os.environ.pop("REDIS_URL", None)


async def test_concurrent_duplicate_enqueues_create_one_job(settings: Settings, arq_pool: ArqRedis) -> None:
    """50 concurrent enqueues of one job id: exactly one reports queued."""
    repository = build_repository(settings)
    await repository.init()
    service = TaskService(pool=arq_pool, repository=repository)
    results = await asyncio.gather(*(service.enqueue(envelope(9)) for _ in range(50)))
    assert [r.status for r in results].count("queued") == 1
    await repository.close()
