"""A worker killed with -9 or stopped with SIGTERM while it holds jobs: nothing is lost, nothing is
done twice, and a shutdown never spends the retry budget."""

from __future__ import annotations

import signal
import time

import pytest

from src.domain.jobs import JobStatus
from tests.fault.harness import LEASE_S, Cluster, duplicated, wait_for

pytestmark = pytest.mark.fault


async def test_kill_9_with_leases_held_hands_jobs_over_without_duplicates(cluster: Cluster) -> None:
    """kill -9 of one of two workers mid-job: its leased jobs run elsewhere within about a lease, every
    job succeeds once, nothing stays running."""
    await cluster.start_api()
    env = {"TEST_ITEM_DELAY_MS": "200", "ARQ_MAX_JOBS": "5"}
    victim = await cluster.start_worker("victim", env=env)
    survivor = await cluster.start_worker("survivor", env=env)
    await cluster.start_worker("maintenance", queue="maintenance")
    jobs = await cluster.create_appointments(40)

    held = await wait_for(
        lambda: cluster.running_on(victim), timeout=30, what="the victim to hold running jobs", interval=0.02
    )
    assert held, "the victim holds no running job in the ledger before the kill"
    victim.send(signal.SIGKILL)
    killed_at = time.monotonic()
    assert victim.wait_exit(10) == -signal.SIGKILL
    stranded = await cluster.running_on(victim)  # frozen: a dead process writes nothing more
    assert stranded, "the victim died holding no job: the kill did not land mid-flight"

    first_taken: list[float] = []

    async def taken_over() -> bool:
        records = await cluster.jobs(stranded)
        moved = [r for r in records.values() if r.attempt > stranded[r.job_id]]
        if moved and not first_taken:
            first_taken.append(time.monotonic() - killed_at)
        return len(moved) == len(stranded) and all(r.worker_id == survivor.worker_id for r in moved)

    await wait_for(taken_over, timeout=10 * LEASE_S, what="the stranded jobs to run elsewhere", interval=0.05)
    recovery = time.monotonic() - killed_at
    print(
        f"RECOVERY kill -9 -> stranded jobs running elsewhere: first {first_taken[0]:.2f}s, "
        f"all {len(stranded)} {recovery:.2f}s (lease {LEASE_S}s)"
    )

    records = await cluster.wait_all_succeeded(jobs.values(), timeout=60)
    assert all(r.app_failures == 0 for r in records.values())
    assert all(records[j].worker_id == survivor.worker_id for j in stranded)
    assert await cluster.repo.list_jobs(status=JobStatus.RUNNING) == []
    effects = cluster.effects()
    assert duplicated(effects) == {}
    assert {e.item for e in effects} == set(jobs)
    for appointment_id, job_id in jobs.items():
        appointment = await cluster.repo.get_appointment(appointment_id)
        assert appointment is not None and appointment.normalization_status.value == "normalized"
        assert appointment.provenance is not None and appointment.provenance.job_id == job_id
        assert appointment.provenance.attempt == records[job_id].attempt


async def test_sigterm_under_load_drains_and_exits_zero_without_spending_tries(cluster: Cluster) -> None:
    """SIGTERM mid-load: the worker stops claiming, lets short jobs finish, interrupts the long one
    (an interruption, not a try) and exits 0 within ARQ_JOB_COMPLETION_WAIT plus a margin."""
    completion_wait = 2
    await cluster.start_api(BATCH_CHUNK_SIZE="5000")
    env = {"TEST_ITEM_DELAY_MS": "200", "ARQ_JOB_COMPLETION_WAIT": str(completion_wait)}
    draining = await cluster.start_worker("draining", env=env)
    # one long chunk job (40 pages of at least 0.2 s) claimed first by the draining worker, then short jobs
    items = 4000
    report = await cluster.import_csv(items)
    (chunk_job,) = report["job_ids"]
    await wait_for(
        lambda: cluster.running_on(draining, "normalize_batch_chunk"), timeout=30, what="the chunk to start"
    )
    other = await cluster.start_worker("other", env=env)
    jobs = await cluster.create_appointments(40)
    short_running = await wait_for(
        lambda: cluster.running_on(draining, "normalize_appointment"),
        timeout=30,
        what="short jobs running on the draining worker",
        interval=0.02,
    )

    chunk_then = await cluster.repo.get_job(chunk_job)
    assert chunk_then is not None and chunk_then.worker_id == draining.worker_id
    assert (chunk_then.progress.cursor or 0) <= items - 15 * 100, "the chunk would end within the wait"
    draining.send(signal.SIGTERM)
    termed_at = time.monotonic()
    code = draining.wait_exit(completion_wait + 15)
    exit_s = time.monotonic() - termed_at
    print(f"RECOVERY SIGTERM -> exit {exit_s:.2f}s (ARQ_JOB_COMPLETION_WAIT={completion_wait}s), code {code}")
    assert code == 0, draining.tail()
    assert exit_s < completion_wait + 8

    records = await cluster.wait_all_succeeded([*jobs.values(), chunk_job], timeout=120)
    for job_id in short_running:
        assert records[job_id].worker_id == draining.worker_id, "a short job was not let finish"
        assert records[job_id].interruptions == 0 and records[job_id].attempt == 1
    assert all(r.app_failures == 0 for r in records.values()), "a shutdown spent the retry budget"
    chunk = records[chunk_job]
    assert chunk.interruptions == 1 and chunk.worker_id == other.worker_id
    assert chunk.attempt == 2
    assert duplicated(cluster.effects()) == {}
    counts = await cluster.repo.count_batch(report["batch_id"])
    assert counts.normalized == items and counts.pending == 0
