"""What the embedded store promises beyond the port: WAL, lock waits, several processes on one file."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypedDict

import pytest

from src.domain.appointments import KindResult, NormalizationStatus
from src.domain.jobs import JobClaim, JobOutcome, JobStatus
from src.errors import StoreUnavailable
from src.infrastructure import sqlite_connection, sqlite_repository
from src.infrastructure.sqlite_repository import SQLiteRepository
from src.infrastructure.store_codec import SCHEMA_VERSION
from tests.contract.conftest import T0, make_appointment, make_job, make_result

WORKERS = 4
SHARED_APPOINTMENTS = 600
OWN_APPOINTMENTS = 1500
SHARED_JOBS = 60


class Report(TypedDict):
    shared_inserted: int
    own_inserted: int
    jobs_inserted: int
    attempts: list[int]  # the attempt each claim of shared job n returned


async def test_init_sets_wal_and_writes_one_marker(tmp_path: Path) -> None:
    """The file is in WAL mode and holds one init marker whose store_id is in identity()."""
    path = tmp_path / "store.sqlite3"
    repo = SQLiteRepository(str(path))
    try:
        await repo.init()
        await repo.init()
    finally:
        await repo.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        markers = conn.execute("SELECT store_id, initialized_at FROM meta").fetchall()
    finally:
        conn.close()
    assert len(markers) == 1
    assert repo.identity() == f"sqlite:{path.resolve()}#{markers[0][0]}"


async def test_ping_maps_an_unopenable_file_to_store_unavailable(tmp_path: Path) -> None:
    """A missing directory or a file that is not a database raises StoreUnavailable, then recovers."""
    missing = SQLiteRepository(str(tmp_path / "missing" / "store.sqlite3"))
    garbage_path = tmp_path / "garbage.sqlite3"
    garbage_path.write_bytes(b"this is not a database file, just text " * 200)
    garbage = SQLiteRepository(str(garbage_path))
    try:
        with pytest.raises(StoreUnavailable):
            await missing.ping()
        with pytest.raises(StoreUnavailable):
            await garbage.ping()
        (tmp_path / "missing").mkdir()
        await missing.ping()  # the next call opens the file again
    finally:
        await missing.close()
        await garbage.close()


async def test_a_held_write_lock_is_waited_for_without_blocking_the_loop(tmp_path: Path) -> None:
    """A write waits for another connection's lock (busy timeout) while the event loop keeps running."""
    path = tmp_path / "store.sqlite3"
    repo = SQLiteRepository(str(path))
    await repo.init()
    await repo.create_jobs([make_job("normalize:appt-1")])
    blocker = sqlite3.connect(path, isolation_level=None)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        blocker.execute("BEGIN IMMEDIATE")
        claim = asyncio.create_task(
            repo.claim_job("normalize:appt-1:1", JobClaim(worker_id="w", version="1", started_at=T0))
        )
        await asyncio.sleep(0.4)
        assert not claim.done()
        blocker.execute("COMMIT")
        assert await claim == 1
        assert ticks >= 5  # the loop ran while the claim waited for the lock
    finally:
        ticker.cancel()
        blocker.close()
        await repo.close()


async def test_a_lock_held_past_the_busy_timeout_is_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the lock outlasts the busy timeout, the write fails as StoreUnavailable (retryable)."""
    monkeypatch.setattr(sqlite_connection, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "store.sqlite3"
    repo = SQLiteRepository(str(path))
    await repo.init()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await repo.create_jobs([make_job("normalize:appt-1")])
        blocker.execute("ROLLBACK")
        assert await repo.create_jobs([make_job("normalize:appt-1")]) == 1
    finally:
        blocker.close()
        await repo.close()


def test_four_processes_share_one_file_without_lock_errors(tmp_path: Path) -> None:
    """4 processes insert, claim, heartbeat, finish and save at once; every write lands exactly once."""
    path = str(tmp_path / "store.sqlite3")
    start_at = time.time() + 2.0  # let every process import and open before the race starts
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        futures = [pool.submit(run_worker, path, worker, start_at) for worker in range(WORKERS)]
        reports = [future.result(timeout=120) for future in futures]

    assert sum(r["shared_inserted"] for r in reports) == SHARED_APPOINTMENTS
    assert [r["own_inserted"] for r in reports] == [OWN_APPOINTMENTS] * WORKERS
    assert sum(r["jobs_inserted"] for r in reports) == SHARED_JOBS
    last_attempts = []
    for n in range(SHARED_JOBS):
        attempts = [r["attempts"][n] for r in reports]
        assert len(set(attempts)) == WORKERS  # every claim got its own fencing token
        last_attempts.append(max(attempts))

    async def check() -> None:
        repo = SQLiteRepository(path)
        try:
            shared = await repo.count_batch("shared")
            assert (shared.total, shared.normalized) == (SHARED_APPOINTMENTS, SHARED_APPOINTMENTS)
            for worker in range(WORKERS):
                assert (await repo.count_batch(f"own-{worker}")).total == OWN_APPOINTMENTS
            record = await repo.get_job("normalize:shared-0:1")
            assert record is not None and record.attempt >= last_attempts[0]
        finally:
            await repo.close()

    asyncio.run(check())


def run_worker(path: str, worker: int, start_at: float) -> Report:
    """One "process" of the race (runs in a spawned child)."""
    return asyncio.run(_work(path, worker, start_at))


async def _work(path: str, worker: int, start_at: float) -> Report:
    repo = SQLiteRepository(path)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await repo.init()
        shared = [
            make_appointment(n, id=f"shared-{n}", batch_id="shared") for n in range(SHARED_APPOINTMENTS)
        ]
        own = [
            make_appointment(n, id=f"own-{worker}-{n}", batch_id=f"own-{worker}")
            for n in range(OWN_APPOINTMENTS)
        ]
        shared_inserted = own_inserted = 0
        for start in range(0, SHARED_APPOINTMENTS, 100):
            shared_inserted += await repo.insert_appointments(shared[start : start + 100])
            own_inserted += await repo.insert_appointments(own[start * 2 : start * 2 + 200])
        own_inserted += await repo.insert_appointments(own[SHARED_APPOINTMENTS * 2 :])
        jobs_inserted = await repo.create_jobs(
            [make_job(f"normalize:shared-{n}") for n in range(SHARED_JOBS)]
        )

        attempts: list[int] = []
        for n in range(SHARED_JOBS):
            job_id = f"normalize:shared-{n}:1"
            claim = JobClaim(worker_id=f"w{worker}", version="1", started_at=T0)
            attempt = await repo.claim_job(job_id, claim)
            while attempt is None:  # another process runs it: take it over, as after a lost lease
                await repo.record_lost_lease(job_id, at=T0, max_losses=1000)
                attempt = await repo.claim_job(job_id, claim)
            attempts.append(attempt)
            await repo.heartbeat_job(job_id, attempt, at=T0 + timedelta(seconds=1))
            results = [
                make_result(f"shared-{m}", job_id, attempt, NormalizationStatus.NORMALIZED)
                for m in range(n * 10, n * 10 + 10)
            ]
            await repo.save_normalizations(results, job_id=job_id, attempt=attempt)
            retry = JobOutcome(status=JobStatus.QUEUED, finished_at=T0, duration_ms=1)
            await repo.finish_job(job_id, attempt, retry)  # may be fenced off by another process: fine
        return {
            "shared_inserted": shared_inserted,
            "own_inserted": own_inserted,
            "jobs_inserted": jobs_inserted,
            "attempts": attempts,
        }
    finally:
        await repo.close()


def test_several_processes_initialize_a_new_file_at_once(tmp_path: Path) -> None:
    """API and workers starting together on a new file all initialize it (none fails on the lock)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "fresh.sqlite3"
    start = time.time() + 3.0  # every process imports first, then all initialize at this instant
    code = (
        "import asyncio, sys, time\n"
        "from src.infrastructure.sqlite_repository import SQLiteRepository\n"
        "async def main():\n"
        "    repo = SQLiteRepository(sys.argv[1])\n"
        "    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together\n"
        "    await repo.init()\n"
        "    print(repo.identity())\n"
        "    await repo.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path), str(start)], cwd=root, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8
    assert len(set(outputs)) == 1  # one store, one identity


V1_JOBS = """CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, logical_key TEXT NOT NULL, generation INTEGER NOT NULL,
    task TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL,
    app_failures INTEGER NOT NULL, interruptions INTEGER NOT NULL, worker_id TEXT, version TEXT,
    enqueued_at TEXT NOT NULL, started_at TEXT, heartbeat_at TEXT, finished_at TEXT,
    duration_ms INTEGER, progress TEXT NOT NULL, error_category TEXT, error_message TEXT,
    result TEXT, envelope TEXT NOT NULL)"""


async def test_a_file_of_schema_1_is_migrated_in_place(tmp_path: Path) -> None:
    """A store written by schema version 1 gains the ledger's new columns on init, its records read
    back with no lost lease and no successor, and they work as new ones do."""
    path = tmp_path / "old.sqlite3"
    job = make_job("normalize:appt-1")
    with sqlite3.connect(path) as conn:
        conn.execute(V1_JOBS)
        conn.execute(
            "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (job.job_id, job.logical_key, 1, job.task, job.queue, "queued", 0, 0, 0, None, None,
             T0.isoformat(timespec="microseconds"), None, None, None, None, job.progress.model_dump_json(),
             None, None, None, job.envelope.model_dump_json()),
        )  # fmt: skip
    conn.close()
    repo = SQLiteRepository(str(path))
    try:
        await repo.init()
        record = await repo.get_job(job.job_id)
        assert record is not None and (record.lease_losses, record.superseded_by) == (0, None)
        assert await repo.claim_job(job.job_id, JobClaim(worker_id="w", version="1", started_at=T0)) == 1
        lost = await repo.record_lost_lease(job.job_id, at=T0, max_losses=3)
        assert lost is not None and lost.lease_losses == 1
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT schema_version FROM meta").fetchone() == (SCHEMA_VERSION,)
        conn.close()
    finally:
        await repo.close()


async def test_a_fenced_run_writes_nothing_even_after_its_last_check(tmp_path: Path) -> None:
    """The appointment write itself asks the ledger: a run whose lease was lost, whose generation was
    superseded or whose job was cancelled after its last check writes nothing; the current run does."""
    repo = SQLiteRepository(str(tmp_path / "store.sqlite3"))
    try:
        await repo.init()
        await repo.insert_appointments([make_appointment(1)])
        job = "normalize:appt-1:1"
        await repo.create_jobs([make_job("normalize:appt-1")])
        assert await repo.claim_job(job, JobClaim(worker_id="a", version="1", started_at=T0)) == 1
        await repo.record_lost_lease(job, at=T0, max_losses=3)  # worker a froze: fenced off
        assert await repo.save_normalizations([make_result("appt-1", job, 1)], job_id=job, attempt=1) == 0
        assert await repo.claim_job(job, JobClaim(worker_id="b", version="1", started_at=T0)) == 3
        assert await repo.save_normalizations([make_result("appt-1", job, 3)], job_id=job, attempt=3) == 1

        await repo.create_jobs([make_job("normalize:appt-1", 2)])  # superseded while b runs
        late = [make_result("appt-1", job, 3, NormalizationStatus.FAILED)]
        assert await repo.save_normalizations(late, job_id=job, attempt=3) == 0
        stored = await repo.get_appointment("appt-1")
        assert stored is not None and stored.normalization_status is NormalizationStatus.NORMALIZED
    finally:
        await repo.close()


async def test_the_ledger_fences_any_kind_s_result(tmp_path: Path) -> None:
    """The ledger check is part of every kind's write: a run whose lease was lost writes no result of
    its kind, even where that kind has none yet; the current run's result is written."""
    repo = SQLiteRepository(str(tmp_path / "store.sqlite3"))
    try:
        await repo.init()
        await repo.insert_appointments([make_appointment(1)])
        job = "audit:appt-1:1"
        await repo.create_jobs([make_job("audit:appt-1")])
        assert await repo.claim_job(job, JobClaim(worker_id="a", version="1", started_at=T0)) == 1
        await repo.record_lost_lease(job, at=T0, max_losses=3)

        def audit(attempt: int) -> KindResult:
            return KindResult(status="done", provenance=make_result("appt-1", job, attempt).provenance)

        assert await repo.save_results("audit", {"appt-1": audit(1)}, job_id=job, attempt=1) == 0
        assert await repo.claim_job(job, JobClaim(worker_id="b", version="1", started_at=T0)) == 3
        assert await repo.save_results("audit", {"appt-1": audit(3)}, job_id=job, attempt=3) == 1
        stored = await repo.get_appointment("appt-1")
        assert stored is not None and stored.results == {"audit": audit(3)}
    finally:
        await repo.close()


@pytest.mark.parametrize(
    ("statement", "args", "indexes"),
    [
        (  # a batch's progress: both halves covered by an index, no table read
            sqlite_repository._COUNT_BATCH, ("b",),
            ["COVERING INDEX appointments_batch_seq", "COVERING INDEX appointment_results_batch_status"],
        ),
        (  # the re-normalization's pages: only the fallback addresses' partial index is walked
            sqlite_repository._RULES_FALLBACK_PAGE, ("", "renormalize_addresses", 10),
            ["INDEX appointment_results_rules_fallback"],
        ),
    ],
)  # fmt: skip
async def test_status_and_fallback_queries_stay_on_their_indexes(
    tmp_path: Path, statement: str, args: tuple[object, ...], indexes: list[str]
) -> None:
    """SQLite's plan for counting a batch by status and for the fallback pages uses the indexes
    made for them, and never scans a table."""
    path = tmp_path / "store.sqlite3"
    repo = SQLiteRepository(str(path))
    await repo.init()
    await repo.close()
    conn = sqlite3.connect(path)
    try:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", args))
    finally:
        conn.close()
    assert all(index in plan for index in indexes), plan
    assert "SCAN" not in plan, plan
