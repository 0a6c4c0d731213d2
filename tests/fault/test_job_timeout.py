"""A job that runs past ARQ_JOB_TIMEOUT fails (category timeout): each timeout is a used try, retried
with backoff while ARQ_MAX_TRIES allows, then `failed` for good; it never comes back by itself."""

from __future__ import annotations

import asyncio
import time

import pytest

from src.domain.jobs import ErrorCategory
from tests.fault.harness import BASE_ENV, Cluster

pytestmark = pytest.mark.fault

KEEP_RESULT_S = 2
RECONCILE_S = float(BASE_ENV["RECONCILE_EVERY_SECONDS"])


async def test_a_job_over_its_timeout_is_a_failed_try_and_then_a_failure(cluster: Cluster) -> None:
    """Every run takes 3 s against a 1 s timeout: two tries, two app failures, then failed with
    category timeout; it is listed, counted, and still failed after its results expire many times."""
    await cluster.start_api()
    await cluster.start_worker("maintenance", queue="maintenance", ARQ_KEEP_RESULT=str(KEEP_RESULT_S))
    env = {"TEST_ITEM_DELAY_MS": "3000", "ARQ_JOB_TIMEOUT": "1", "ARQ_MAX_TRIES": "2",
           "ARQ_KEEP_RESULT": str(KEEP_RESULT_S)}  # fmt: skip
    await cluster.start_worker("worker", env=env)
    (job_id,) = (await cluster.create_appointments(1, prefix="Slow")).values()

    started = time.monotonic()
    waited = await cluster.client.get(f"/api/v1/queue/job/{job_id}", params={"wait": 20})
    failed_s = time.monotonic() - started
    assert waited.status_code == 200 and waited.json()["status"] == "failed", waited.text
    record = await cluster.repo.get_job(job_id)
    assert record is not None
    assert (record.error_category, record.app_failures, record.attempt, record.interruptions) == (
        ErrorCategory.TIMEOUT,
        2,
        2,
        0,
    )
    assert record.error_message is not None and "timeout" in record.error_message
    listed = (await cluster.client.get("/api/v1/queue/failed")).json()
    assert listed["by_category"]["timeout"] == 1 and listed["items"][0]["job_id"] == job_id
    doctor = cluster.run_cli("doctor")
    assert doctor.returncode != 0 and "timeout=1" in doctor.stdout, doctor.stdout

    # Its arq result expires every 2 s and the reconciler looks every second: it stays failed.
    await asyncio.sleep(3 * max(KEEP_RESULT_S, RECONCILE_S) + 2)
    later = await cluster.repo.get_job(job_id)
    assert later == record, "a job that timed out ran again by itself"
    print(
        f"RECOVERY timeout 1 s, 2 tries: failed (category timeout) {failed_s:.1f}s after the create; "
        f"unchanged {3 * max(KEEP_RESULT_S, RECONCILE_S) + 2:.0f}s later (results kept {KEEP_RESULT_S}s)"
    )
    appointment = await cluster.repo.get_appointment(next(iter(await _appointments(cluster, job_id))))
    assert appointment is not None and appointment.normalization_status.value == "pending"


async def _appointments(cluster: Cluster, job_id: str) -> list[str]:
    record = await cluster.repo.get_job(job_id)
    assert record is not None
    return [str(record.envelope.ids["appointment_id"])]
