"""Appointments created while Redis is down: each is stored, answered 201 with its job `deferred`, and
enqueued by the reconciler within about one RECONCILE_EVERY_SECONDS of Redis coming back."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fault.harness import BASE_ENV, Cluster, duplicated

pytestmark = pytest.mark.fault

RECONCILE_S = float(BASE_ENV["RECONCILE_EVERY_SECONDS"])
OUTAGE_S = 5.0


async def test_creates_during_a_redis_outage_are_deferred_and_run_when_it_returns(cluster: Cluster) -> None:
    """10 creates during a 5 s outage all answer 201 `deferred`; once an empty Redis is back, every
    job then runs once."""
    await cluster.start_api()
    await cluster.start_worker("maintenance", queue="maintenance")
    await cluster.start_worker("worker")
    cluster.redis.stop()
    down_at = time.monotonic()
    statuses: list[str] = []
    jobs: dict[str, str] = {}
    for i in range(10):
        response = await cluster.client.post(
            "/api/v1/appointments",
            json={"paciente": f"Outage {i}", "documento": "529.982.247-25",
                  "endereco": f"R. das Flores {i + 1}, Centro, Sao Paulo - SP, 01310100",
                  "data_hora": "2026-12-01T14:30:00-03:00"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        body = response.json()
        statuses.append(body["enqueue_status"])
        jobs[body["appointment_id"]] = body["job_id"]
    assert statuses == ["deferred"] * 10
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    cluster.start_redis_again()
    back_at = time.monotonic()

    records = await cluster.wait_all_succeeded(jobs.values(), timeout=10 * RECONCILE_S + 60)
    done_s = time.monotonic() - back_at
    print(
        f"RECOVERY redis outage {OUTAGE_S:g}s: 10 creates answered 201 deferred; all run {done_s:.1f}s "
        f"after Redis returned (reconcile every {RECONCILE_S:g}s)"
    )
    assert all(r.attempt == 1 and r.app_failures == 0 for r in records.values())
    assert duplicated(cluster.effects()) == {}
