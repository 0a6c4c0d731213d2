"""TaskService against a real redis-server: idempotent, pipelined, ledger first."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from redis.exceptions import ConnectionError as RedisConnectionError

from src.application.services import task_service
from src.application.services.task_service import TaskService
from src.config import Settings, get_settings
from src.domain.jobs import JobEnvelope, JobStatus, queue_key
from src.errors import UnsafePayload
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.repository_factory import build_repository

pytestmark = pytest.mark.integration


def envelope(n: int, generation: int = 1) -> JobEnvelope:
    return JobEnvelope(
        task="normalize_appointment",
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
    service = TaskService(RedisJobQueue(arq_pool), repository=repository, producer_version="test-1")
    envelopes = [envelope(i) for i in range(2500)]

    first = await service.enqueue_many(envelopes)
    assert [r.status for r in first].count("queued") == 2500
    assert await arq_pool.zcard(queue_key("normalization")) == 2500
    record = await repository.get_job("normalize:a42:1")
    assert (
        record is not None
        and record.status == JobStatus.QUEUED
        and record.envelope.ids["appointment_id"] == "a42"
    )

    second = await service.enqueue_many(envelopes[:10])
    assert {r.status for r in second} == {"already_queued"}
    assert await arq_pool.zcard(queue_key("normalization")) == 2500
    await repository.close()


async def test_next_generation_is_never_refused_by_a_cached_result(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """A result cached under generation 1 refuses gen 1 again but accepts gen 2."""
    repository = build_repository(settings)
    await repository.init()
    service = TaskService(RedisJobQueue(arq_pool), repository=repository)
    await arq_pool.set("arq:result:normalize:a1:1", b"{}")
    assert (await service.enqueue(envelope(1))).status == "already_queued"
    assert (await service.enqueue(envelope(1, generation=2))).status == "queued"
    await repository.close()


async def test_payload_in_redis_is_json_with_ids_only(settings: Settings, arq_pool: ArqRedis) -> None:
    """The stored job is JSON (never pickle) and carries ids, not personal data."""
    repository = build_repository(settings)
    await repository.init()
    await TaskService(RedisJobQueue(arq_pool), repository=repository).enqueue(envelope(7))
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
        assert pool.default_queue_name == queue_key("normalization")
        await service.close()
    finally:
        get_settings.cache_clear()
        os.environ.pop("REDIS_URL", None)


async def test_concurrent_duplicate_enqueues_create_one_job(settings: Settings, arq_pool: ArqRedis) -> None:
    """50 concurrent enqueues of one job id: exactly one reports queued."""
    repository = build_repository(settings)
    await repository.init()
    service = TaskService(RedisJobQueue(arq_pool), repository=repository)
    results = await asyncio.gather(*(service.enqueue(envelope(9)) for _ in range(50)))
    assert [r.status for r in results].count("queued") == 1
    await repository.close()


async def test_payload_is_what_arq_serializes_with_our_json_serializer(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """The payload assembled around the envelope's JSON decodes to exactly arq's `serialize_job`
    of the same job, so arq's worker code reads it unchanged."""
    repository = build_repository(settings)
    await repository.init()
    env = JobEnvelope(
        task="normalize_batch_chunk",
        logical_key="chunk:b1:0",
        ids={"batch_id": "b1", "seq_from": 0, "seq_to": 9},
        request_id="req-é",  # non-ASCII survives both encodings
        batch_id="b1",
        producer_version="test-1",
    )
    await TaskService(RedisJobQueue(arq_pool), repository=repository).enqueue(env)
    raw = await arq_pool.get(job_key_prefix + env.job_id)
    assert raw is not None
    stored = json.loads(raw)
    expected = json.loads(
        serialize_job(
            env.task,
            (),
            {"envelope": env.model_dump(mode="json")},
            None,
            stored["et"],
            serializer=arq_pool.job_serializer,
        )
    )
    assert stored == expected
    assert abs(stored["et"] - time.time() * 1000) < 60_000
    await repository.close()


async def test_bulk_enqueue_spans_chunks_and_reports_duplicates_in_order(
    settings: Settings, arq_pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 7: already-queued ids inside any chunk are reported in place, the rest queued."""
    monkeypatch.setattr(task_service, "ENQUEUE_CHUNK", 7)
    repository = build_repository(settings)
    await repository.init()
    service = TaskService(RedisJobQueue(arq_pool), repository=repository)
    await service.enqueue_many([envelope(i) for i in (3, 11, 12)])
    results = await service.enqueue_many([envelope(i) for i in range(20)])
    assert [r.job_id for r in results] == [f"normalize:a{i}:1" for i in range(20)]
    assert [i for i, r in enumerate(results) if r.status == "already_queued"] == [3, 11, 12]
    assert await arq_pool.zcard(queue_key("normalization")) == 20
    await repository.close()


async def test_redis_failing_midway_defers_the_rest_and_loses_nothing(
    settings: Settings, arq_pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails on the second chunk: the first is queued, every later job comes back `deferred`,
    and every job of the call has its `queued` ledger record (the reconciler's input)."""
    monkeypatch.setattr(task_service, "ENQUEUE_CHUNK", 5)
    real_register = arq_pool.register_script
    calls = 0

    def failing_after_first(script: str) -> object:
        real = real_register(script)

        async def run(**kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise RedisConnectionError("connection refused")
            return await real(**kwargs)

        return run

    monkeypatch.setattr(arq_pool, "register_script", failing_after_first)
    repository = build_repository(settings)
    await repository.init()
    results = await TaskService(RedisJobQueue(arq_pool), repository=repository).enqueue_many(
        [envelope(i) for i in range(13)]
    )
    assert [r.status for r in results] == ["queued"] * 5 + ["deferred"] * 8
    assert await arq_pool.zcard(queue_key("normalization")) == 5
    for i in range(13):
        record = await repository.get_job(f"normalize:a{i}:1")
        assert record is not None and record.status is JobStatus.QUEUED
    await repository.close()


async def test_oversized_payload_is_refused_before_anything_is_written(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """A job whose payload exceeds the limit raises `UnsafePayload`; its chunk is neither recorded
    nor queued (a record the reconciler could never enqueue would be left otherwise)."""
    repository = build_repository(settings)
    await repository.init()
    service = TaskService(RedisJobQueue(arq_pool, max_payload_bytes=1024), repository=repository)
    big = JobEnvelope(
        task="normalize_appointment", logical_key="normalize:big", ids={"appointment_id": "x" * 2000}
    )
    with pytest.raises(UnsafePayload, match="exceeds the 1024 limit"):
        await service.enqueue_many([envelope(1), big])
    assert await repository.get_job("normalize:a1:1") is None
    assert await arq_pool.zcard(queue_key("normalization")) == 0
    await repository.close()
