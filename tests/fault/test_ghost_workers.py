"""Workers that must never take our jobs: a plain arq worker on the same Redis (the ghost-worker
incident), a worker of a code version that is not allowed, and workers wired to other data."""

from __future__ import annotations

import asyncio
import json

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from src.domain.jobs import JobStatus
from tests.fault.harness import BEAT_S, PYTHON, Cluster, wait_until

pytestmark = pytest.mark.fault


async def test_plain_arq_worker_on_the_same_redis_never_runs_our_jobs(cluster: Cluster) -> None:
    """A pickle-speaking arq worker on the default queue, with our task names, stays live (it runs a
    job put on its own queue) yet never runs one of ours; our worker does them all."""
    await cluster.start_api()
    record = cluster.root / "ghost.jsonl"
    record.touch()
    ghost = cluster.spawn(
        "ghost",
        [PYTHON, "-m", "tests.fault.ghost_arq_worker"],
        cluster.env(GHOST_RECORD_PATH=str(record)),
    )
    await wait_until(lambda: "polling arq:queue" in ghost.log_text(), timeout=60, what="the ghost to poll")
    arq_pool = await create_pool(RedisSettings.from_dsn(cluster.redis_url()))
    try:
        probe = await arq_pool.enqueue_job("normalize_appointment", "probe", _job_id="ghost-probe")
        assert probe is not None
    finally:
        await arq_pool.aclose(close_connection_pool=True)
    await wait_until(
        lambda: "ghost-probe" in record.read_text(),
        timeout=30,
        what="the ghost to run its probe",
    )

    good = await cluster.start_worker("good", TEST_ITEM_DELAY_MS="50")
    jobs = await cluster.create_appointments(20)
    report = await cluster.import_csv(300)
    records = await cluster.wait_all_succeeded([*jobs.values(), *report["job_ids"]], timeout=60)

    assert ghost.alive, ghost.tail()
    ran = [json.loads(line) for line in record.read_text().splitlines()]
    assert ran == [{"task": "normalize_appointment", "job_id": "ghost-probe"}], "the ghost ran our jobs"
    assert all(r.worker_id == good.worker_id and r.attempt == 1 for r in records.values())


async def test_worker_of_a_version_not_allowed_is_fenced(cluster: Cluster) -> None:
    """With version A allowed, a version-B worker claims nothing, shows `fenced` in the registry and
    fails `workers.py --check`; the version-A worker does every job."""
    await cluster.start_api()  # allows its own version, fault-a
    good = await cluster.start_worker("good", TEST_ITEM_DELAY_MS="50")
    fenced = await cluster.start_worker("fenced", state="fenced", APP_VERSION="fault-b")
    jobs = await cluster.create_appointments(30)
    records = await cluster.wait_all_succeeded(jobs.values(), timeout=60)

    assert all(r.worker_id == good.worker_id and r.version == "fault-a" for r in records.values())
    assert await cluster.registry().allowed_versions() == {"fault-a"}
    state = await cluster.worker_record(fenced)
    assert state is not None and state.state.value == "fenced" and state.version == "fault-b"
    assert state.counters.complete == 0 and state.current_jobs == []
    assert "fault-b" in (state.reason or "")
    check = cluster.run_check(fenced)
    assert check.returncode != 0 and "fenced" in check.stdout + check.stderr, check
    healthy = cluster.run_check(good)
    assert healthy.returncode == 0 and "healthy" in healthy.stdout, healthy


async def test_workers_on_another_store_or_redis_db_claim_nothing(cluster: Cluster) -> None:
    """A worker on another SQLite file is `mismatch`, one on Redis db 1 is `waiting`: neither claims
    a job and `workers.py --check` fails naming why; a correctly wired worker then does them all."""
    await cluster.start_api()
    other_store = await cluster.start_worker(
        "other-store", state="mismatch", SQLITE_PATH=str(cluster.root / "elsewhere.sqlite3")
    )
    other_db = await cluster.start_worker("other-db", state="waiting", db=1, REDIS_URL=cluster.redis_url(1))
    jobs = await cluster.create_appointments(10)

    await asyncio.sleep(6 * BEAT_S)  # a few beats and many polls: time enough to claim if they could
    waiting = await cluster.jobs(jobs.values())
    assert all(r.status is JobStatus.QUEUED and r.attempt == 0 for r in waiting.values())
    mismatch_check = cluster.run_check(other_store)
    assert mismatch_check.returncode != 0, mismatch_check
    assert "mismatch" in mismatch_check.stderr and "SQLITE_PATH" in mismatch_check.stderr
    waiting_check = cluster.run_check(other_db)
    assert waiting_check.returncode != 0 and "waiting" in waiting_check.stderr, waiting_check

    good = await cluster.start_worker("good")
    records = await cluster.wait_all_succeeded(jobs.values(), timeout=60)
    assert all(r.worker_id == good.worker_id and r.attempt == 1 for r in records.values())
    misplaced = await cluster.worker_record(other_store)
    assert misplaced is not None and misplaced.state.value == "mismatch"
    assert misplaced.counters.complete == 0
    unpaired = await cluster.worker_record(other_db, db=1)
    assert unpaired is not None and unpaired.state.value == "waiting"
    assert other_store.alive and other_db.alive
