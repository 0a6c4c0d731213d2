"""Redis restarted empty (no persistence) in the middle of a run: processes reconnect by themselves
and the reconciler re-enqueues, from the ledger, every job whose arq job vanished."""

from __future__ import annotations

import time

import pytest

from src.domain.jobs import JobStatus
from tests.fault.harness import Cluster, duplicated, log_events, wait_for

pytestmark = pytest.mark.fault

VANISHED = "job vanished from the queue: enqueued again"


async def test_redis_restart_without_persistence_loses_no_job(cluster: Cluster) -> None:
    """After an empty Redis replaces the old one on the same port, the API and the workers carry on
    without a restart and every accepted appointment still ends normalized exactly once."""
    await cluster.start_api()
    maintenance = await cluster.start_worker("maintenance", queue="maintenance")
    env = {"TEST_ITEM_DELAY_MS": "300", "ARQ_MAX_JOBS": "3"}
    workers = [await cluster.start_worker(f"w{i}", env=env) for i in (1, 2)]
    jobs = await cluster.create_appointments(40)

    async def mid_run() -> bool:
        statuses = {r.status for r in (await cluster.jobs(jobs.values())).values()}
        return {JobStatus.SUCCEEDED, JobStatus.RUNNING, JobStatus.QUEUED} <= statuses

    await wait_for(mid_run, timeout=30, what="some jobs done, some running, some queued", interval=0.05)
    pids = {p.name: p.pid for p in cluster.processes}
    cluster.restart_redis()
    restarted_at = time.monotonic()
    fresh = await wait_for(lambda: cluster.registry().allowed_versions(), timeout=30, what="the new Redis")
    assert fresh == {"fault-a"}, "the API did not allow its version again in the empty Redis"
    waiting = [j for j, r in (await cluster.jobs(jobs.values())).items() if r.status is JobStatus.QUEUED]
    assert waiting, "no job was waiting in the queue when Redis restarted"

    async def api_ready() -> bool:
        return (await cluster.client.get("/readyz")).status_code == 200

    await wait_for(api_ready, timeout=30, what="the API to be ready again")
    for process in (maintenance, *workers):
        await cluster.wait_worker_state(process, "ok", timeout=30)
    reconnected = time.monotonic() - restarted_at
    later = await cluster.create_appointments(5, prefix="After restart")  # enqueued into the new Redis
    jobs.update(later)

    records = await cluster.wait_all_succeeded(jobs.values(), timeout=150)
    recovered = time.monotonic() - restarted_at
    print(
        f"RECOVERY redis restart -> API and {len(workers) + 1} workers ok again {reconnected:.2f}s, "
        f"all {len(jobs)} jobs done {recovered:.1f}s ({len(waiting)} re-enqueued by the reconciler)"
    )
    assert {p.name: p.pid for p in cluster.processes} == pids and all(p.alive for p in cluster.processes)
    requeued = {e["job_id"] for e in log_events(maintenance, VANISHED)}
    assert set(waiting) <= requeued, "a vanished job was not re-enqueued by the reconciler"
    assert all(records[j].attempt == 1 for j in later.values()), "jobs enqueued after the restart ran once"
    assert all(r.app_failures == 0 for r in records.values())
    assert duplicated(cluster.effects()) == {}
    for appointment_id, job_id in jobs.items():
        appointment = await cluster.repo.get_appointment(appointment_id)
        assert appointment is not None and appointment.normalization_status.value == "normalized"
        assert appointment.provenance is not None and appointment.provenance.job_id == job_id
