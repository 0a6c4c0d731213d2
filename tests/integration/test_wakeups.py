"""Completion announcements and subscriptions: a caller learns a job finished through one shared
subscription, and losing a subscription costs latency only (polling takes over, the subscription
comes back). An idle worker taking a job at once, by hand-off or by wake-up, is in test_handoff.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from arq.connections import ArqRedis

from scripts.local_redis import start_redis_server
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.appointments import Appointment
from src.domain.jobs import JobEnvelope, JobStatus
from src.errors import NotFound
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.keys import DONE_CHANNEL
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.redis_subscription import RedisSubscription
from src.infrastructure.repository_factory import build_repository
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def appointment(appointment_id: str) -> Appointment:
    return Appointment(
        id=appointment_id,
        paciente="Paciente",
        documento="52998224725",
        endereco="Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
        data_hora=datetime(2026, 12, 1, 10, tzinfo=UTC),
        created_at=datetime.now(UTC),
    )


def envelope(appointment_id: str) -> JobEnvelope:
    return JobEnvelope(
        task="normalize_appointment",
        logical_key=f"normalize:{appointment_id}",
        ids={"appointment_id": appointment_id},
        producer_version="test-1",
    )


async def test_wait_for_result_without_a_feed_polls_and_reports_unknown_and_timeouts(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: object
) -> None:
    """No feed: the ledger is polled with backoff. Unknown job → NotFound; a job nobody runs →
    TimeoutError naming its status; after a worker ran it → the final record."""
    repository = build_repository(settings)
    await repository.init()
    tasks = TaskService(RedisJobQueue(arq_pool), repository=repository)
    with pytest.raises(NotFound):
        await tasks.wait_for_result("normalize:nope:1", timeout=1)
    await repository.insert_appointments([appointment("w2")])
    await tasks.enqueue(envelope("w2"))
    with pytest.raises(TimeoutError, match="still queued"):
        await tasks.wait_for_result("normalize:w2:1", timeout=0.3)
    waiting = asyncio.create_task(tasks.wait_for_result("normalize:w2:1", timeout=30))
    await run_burst_worker()  # type: ignore[operator]
    record = await waiting
    assert record.status is JobStatus.SUCCEEDED
    await repository.close()


async def test_finished_jobs_are_announced_on_the_done_channel(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: object
) -> None:
    """The worker's lease-fenced finish publishes the job id; a job that only retries does not."""
    repository = build_repository(settings)
    await repository.init()
    heard: list[bytes] = []
    subscription = RedisSubscription(arq_pool, DONE_CHANNEL, heard.append)
    subscription.start()
    await asyncio.wait_for(subscription.live.wait(), 10)
    await repository.insert_appointments([appointment("w3"), appointment("w4")])
    await TaskService(RedisJobQueue(arq_pool), repository=repository).enqueue_many(
        [envelope("w3"), envelope("w4")]
    )
    await run_burst_worker()  # type: ignore[operator]
    deadline = asyncio.get_running_loop().time() + 10
    while len(heard) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert sorted(heard) == [b"normalize:w3:1", b"normalize:w4:1"]
    await subscription.stop()
    await repository.close()


async def test_subscription_comes_back_after_a_redis_restart(tmp_path: Path) -> None:
    """Redis restarts on the same port: the subscription reports itself down, reconnects with
    backoff and delivers messages published after the restart."""
    server = start_redis_server(tmp_path / "redis")
    settings = make_settings(server.url, tmp_path)
    pool = create_redis_pool(settings)
    heard: list[bytes] = []
    subscription = RedisSubscription(pool, "test:channel", heard.append)
    try:
        subscription.start()
        await asyncio.wait_for(subscription.live.wait(), 10)
        await pool.publish("test:channel", "before")
        server.stop()
        deadline = asyncio.get_running_loop().time() + 10
        while subscription.live.is_set() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not subscription.live.is_set()
        server = start_redis_server(tmp_path / "redis2", server.port)
        await asyncio.wait_for(subscription.live.wait(), 30)  # backoff is capped at 5 s
        await pool.publish("test:channel", "after")
        deadline = asyncio.get_running_loop().time() + 10
        while b"after" not in heard and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert heard == [b"before", b"after"]
    finally:
        await subscription.stop()
        await pool.aclose(close_connection_pool=True)
        server.stop()
