"""A worker paused past its lease (SIGSTOP: a frozen VM, a debugger, a GC stall) comes back as a
zombie: its jobs were taken over meanwhile, and every late write it attempts is refused."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict

import pytest

from tests.fault.harness import LEASE_S, Cluster, duplicated, log_events, wait_for

pytestmark = pytest.mark.fault

SUPERSEDED = "run superseded by a newer attempt; stopping"


async def test_sigstopped_worker_loses_its_jobs_and_its_late_writes_are_refused(cluster: Cluster) -> None:
    """SIGSTOP for 3 leases, then SIGCONT: the other worker has taken the jobs over, the zombie's
    stale attempts write nothing, every appointment's provenance names the newest attempt."""
    await cluster.start_api()
    await cluster.start_worker("maintenance", queue="maintenance")
    env = {"TEST_ITEM_DELAY_MS": "1000", "ARQ_MAX_JOBS": "5"}
    zombie = await cluster.start_worker("zombie", env=env)
    other = await cluster.start_worker("other", env=env)
    jobs = await cluster.create_appointments(30)
    await wait_for(lambda: cluster.running_on(zombie), timeout=30, what="jobs running on the zombie")

    zombie.send(signal.SIGSTOP)
    stopped_at = time.monotonic()
    # A process stopped inside a SQLite write transaction would hold the file's write lock and stall
    # every other process (a limit of the embedded store, not what this test is about): step it out.
    for _ in range(50):
        if cluster.sqlite_write_lock_free():
            break
        zombie.send(signal.SIGCONT)
        await asyncio.sleep(0.005)
        zombie.send(signal.SIGSTOP)
    else:
        pytest.fail("the stopped worker keeps holding the SQLite write lock")
    stale = await cluster.running_on(zombie)  # job id → the attempt the zombie still believes in
    # a stale run stopped between its write and its ledger outcome legitimately keeps its write
    written_before_stop = {e.item for e in cluster.effects() if stale.get(e.job) == e.attempt}
    assert stale, "the zombie was stopped holding no job"

    async def taken_over() -> bool:
        records = await cluster.jobs(stale)
        return all(r.attempt > stale[j] and r.worker_id == other.worker_id for j, r in records.items())

    await wait_for(taken_over, timeout=10 * LEASE_S, what="the other worker to take the jobs over")
    print(f"RECOVERY SIGSTOP -> {len(stale)} jobs taken over {time.monotonic() - stopped_at:.2f}s")
    await cluster.wait_all_succeeded(stale, timeout=30)
    await asyncio.sleep(max(0.0, 3 * LEASE_S - (time.monotonic() - stopped_at)))
    before_resume = len(cluster.effects())
    zombie.send(signal.SIGCONT)

    records = await cluster.wait_all_succeeded(jobs.values(), timeout=60)

    async def zombie_gave_up() -> bool:
        refused = {e.get("job_id") for e in log_events(zombie, SUPERSEDED)}
        return set(stale) <= refused

    await wait_for(zombie_gave_up, timeout=30, what="each stale run to see it was superseded")
    await cluster.wait_worker_state(zombie, "ok")
    effects = cluster.effects()
    late = [e for e in effects[before_resume:] if stale.get(e.job) == e.attempt]
    assert late == [], "a stale attempt's write was accepted after the takeover"
    attempts_by_item: dict[str, list[int]] = defaultdict(list)
    for e in effects:
        attempts_by_item[e.item].append(e.attempt)
    assert duplicated(effects) == {}
    for appointment_id, job_id in jobs.items():
        appointment = await cluster.repo.get_appointment(appointment_id)
        assert appointment is not None and appointment.provenance is not None
        assert appointment.provenance.job_id == job_id
        assert appointment.provenance.attempt == max(attempts_by_item[appointment_id]), "stale overwrite"
        if appointment_id not in written_before_stop:
            assert appointment.provenance.attempt == records[job_id].attempt, "not the newest attempt"
    for job_id, attempt in stale.items():
        assert records[job_id].attempt > attempt and records[job_id].worker_id == other.worker_id
