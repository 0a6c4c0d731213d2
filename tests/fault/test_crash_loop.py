"""A poison job: every worker that runs it dies (out of memory, a crash in native code), simulated by
kill -9 of whichever worker holds it, and a supervisor that starts a new one each time. Its lost
leases are counted; each re-delivery waits with backoff; at JOB_MAX_LEASE_LOSSES it is quarantined,
named with its last holder, and the fleet goes on working."""

from __future__ import annotations

import signal
import time

import pytest

from src.domain.jobs import ErrorCategory, JobRecord, JobStatus
from src.worker.job_runner import lease_loss_delay_s
from tests.fault.harness import LEASE_S, Cluster, Process, wait_for

pytestmark = pytest.mark.fault

MAX_LOSSES = 3  # JOB_MAX_LEASE_LOSSES's default


async def test_a_job_that_kills_its_workers_is_quarantined_after_three_lost_leases(cluster: Cluster) -> None:
    """Three workers die running the same job: it is then `failed` (category quarantined, the last
    holder named), runs no more, shows in doctor, /queue/failed and /queue/health, and an operator's
    retry runs it (nobody kills it now); other jobs run meanwhile."""
    await cluster.start_api()
    await cluster.start_worker("maintenance", queue="maintenance")
    env = {"TEST_ITEM_DELAY_MS": "1500"}  # long enough for the supervisor to catch it mid-run
    worker = await cluster.start_worker("worker-0", env=env)
    (job_id,) = (await cluster.create_appointments(1, prefix="Poison")).values()

    killed: list[Process] = []
    delays: list[float] = []
    killed_at = 0.0
    for loss in range(1, MAX_LOSSES + 1):
        current = worker

        async def running_on_current(current: Process = current) -> JobRecord | None:
            record = await cluster.repo.get_job(job_id)
            assert record is not None and record.status is not JobStatus.SUCCEEDED, (
                "the poison job ran to the end"
            )
            return (
                record
                if record.status is JobStatus.RUNNING and record.worker_id == current.worker_id
                else None
            )

        record = await wait_for(
            running_on_current, timeout=15 * LEASE_S, what=f"run {loss} of the poison job"
        )
        if killed:
            assert record.lease_losses == loss - 1
            delays.append(time.monotonic() - killed_at)
        worker.send(signal.SIGKILL)  # the job "crashes" its worker
        killed_at = time.monotonic()
        assert worker.wait_exit(10) == -signal.SIGKILL
        killed.append(worker)
        worker = await cluster.start_worker(f"worker-{loss}", env=env)  # the supervisor restarts it

    async def quarantined() -> JobRecord | None:
        record = await cluster.repo.get_job(job_id)
        assert record is not None
        return record if record.status is JobStatus.FAILED else None

    record = await wait_for(quarantined, timeout=15 * LEASE_S, what="the poison job to be quarantined")
    quarantined_s = time.monotonic() - killed_at
    assert record.error_category is ErrorCategory.QUARANTINED
    assert record.lease_losses == MAX_LOSSES and record.worker_id == killed[-1].worker_id
    # each re-delivery waited for the lease to lapse and then its backoff (0.5 s, then 1 s)
    for loss, delay in enumerate(delays, start=1):
        assert delay >= lease_loss_delay_s(loss), delays
    print(
        f"RECOVERY crash loop: quarantined {quarantined_s:.1f}s after the third death; re-deliveries "
        f"{', '.join(f'{d:.1f}s' for d in delays)} after each death (lease {LEASE_S:g}s + backoff)"
    )

    others = await cluster.create_appointments(5, prefix="Healthy")
    await cluster.wait_all_succeeded(others.values(), timeout=60)
    after = await cluster.repo.get_job(job_id)
    assert after == record, "a quarantined job ran again"

    doctor = cluster.run_cli("doctor")
    assert doctor.returncode != 0 and "quarantined" in doctor.stdout and job_id in doctor.stdout, (
        doctor.stdout
    )
    assert (killed[-1].worker_id or "?") in doctor.stdout
    failed = (await cluster.client.get("/api/v1/queue/failed")).json()
    assert failed["by_category"]["quarantined"] == 1
    assert [j["worker_id"] for j in failed["items"] if j["job_id"] == job_id] == [killed[-1].worker_id]
    health = (await cluster.client.get("/api/v1/queue/health")).json()
    assert health["status"] == "degraded" and [a["kind"] for a in health["alarms"]] == ["quarantined"]

    retried = await cluster.client.post(f"/api/v1/queue/job/{job_id}/retry")
    assert retried.status_code == 202, retried.text
    successor = retried.json()["job_id"]
    assert successor.endswith(":2")
    done = await cluster.wait_all_succeeded([successor], timeout=60)
    assert done[successor].worker_id == worker.worker_id and done[successor].lease_losses == 0
