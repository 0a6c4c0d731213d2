"""`GET /metrics` shows the fleet: queues, ledger, workers (through the registry) and task outcomes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from src.config import Settings
from src.worker.settings import build_worker
from tests.conftest import RunBurstWorker, publish_deployment

pytestmark = pytest.mark.integration

BODY = {
    "paciente": "Rita Lopes",
    "documento": "529.982.247-25",
    "endereco": "Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
    "data_hora": "2026-12-01T10:00:00-03:00",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_need_the_operator_token(api: httpx.AsyncClient) -> None:
    """Without a token /metrics is 401."""
    assert (await api.get("/metrics", headers={"Authorization": ""})).status_code == 401


async def test_metrics_cover_queue_ledger_and_worker_stats(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """Queue depth before the run; ledger counts and the worker's task outcomes after it."""
    for _ in range(2):
        await api.post("/api/v1/appointments", json=BODY)
    before = samples((await api.get("/metrics")).text)
    assert before[("clinic_queue_depth", (("queue", "normalization"), ("state", "ready")))] == 2
    assert before[("clinic_jobs", (("category", ""), ("queue", "normalization"), ("status", "queued")))] == 2
    await run_burst_worker()
    after = samples((await api.get("/metrics")).text)
    assert (
        after[("clinic_jobs", (("category", ""), ("queue", "normalization"), ("status", "succeeded")))] == 2
    )
    assert after[("clinic_queue_depth", (("queue", "normalization"), ("state", "ready")))] == 0


async def test_worker_counters_reach_the_api_through_the_registry(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """A live worker's published outcomes and duration histogram appear in the API's scrape."""
    await publish_deployment(settings)
    worker = build_worker(settings, handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    for _ in range(3):
        await api.post("/api/v1/appointments", json=BODY)
    deadline = asyncio.get_running_loop().time() + 20 * settings.worker_heartbeat_interval
    key = (
        "clinic_task_runs_total",
        (
            ("category", ""),
            ("outcome", "succeeded"),
            ("task", "normalize_appointment"),
            ("worker", worker.worker_id),
        ),
    )
    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    while scraped.get(key) != 3:
        assert asyncio.get_running_loop().time() < deadline, scraped.get(key)
        await asyncio.sleep(settings.worker_heartbeat_interval)
        scraped = samples((await api.get("/metrics")).text)
    assert (
        scraped[("clinic_workers", (("queue", "normalization"), ("state", "ok"), ("version", "test-1")))] == 1
    )
    assert scraped[("clinic_workers", (("queue", "maintenance"), ("state", "ok"), ("version", "")))] == 0
    assert scraped[("clinic_workers_lost", (("queue", "normalization"),))] == 0
    assert scraped[("clinic_health", (("check", "maintenance"),))] == 0  # no maintenance worker here
    assert scraped[("clinic_health", (("check", "consumers"),))] == 1
    assert scraped[("clinic_task_duration_seconds_count", (("task", "normalize_appointment"),))] == 3
    assert scraped[("clinic_worker_heartbeat_age_seconds", (("worker", worker.worker_id),))] >= 0
    await worker.close()
    await asyncio.gather(run, return_exceptions=True)
