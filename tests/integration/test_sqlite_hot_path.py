"""The SQLite store's hot path: point operations run on the event loop's thread and fall back to the
store's thread when another connection holds the write lock; the WAL is checkpointed in the
background, not inside a job's commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from src.domain.jobs import JobClaim, JobEnvelope, JobProgress, JobStatus
from src.infrastructure.sqlite_repository import SQLiteRepository


def envelope(n: int) -> JobEnvelope:
    return JobEnvelope(task="normalize_appointment", logical_key=f"normalize:h{n}", ids={"n": n})


async def test_a_write_waits_for_another_connections_lock_instead_of_failing(tmp_path: Path) -> None:
    """Another process holds the write lock for a moment: the inline attempt fails fast and the
    write goes to the store's thread, which waits (busy timeout) and then succeeds."""
    path = tmp_path / "store.sqlite3"
    repo = SQLiteRepository(str(path))
    await repo.init()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the write lock, as another process's transaction holds it
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    created = await repo.create_queued_jobs(
        [envelope(1)], "normalization", enqueued_at=datetime.now(UTC), progress=JobProgress()
    )
    assert created == 1
    record = await repo.get_job("normalize:h1:1")
    assert record is not None and record.status is JobStatus.QUEUED
    claim = JobClaim(worker_id="w", version="v", started_at=datetime.now(UTC))
    assert await repo.claim_job("normalize:h1:1", claim) == 1
    other.close()
    await repo.close()


async def test_the_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """After a few thousand small commits the background checkpointer has copied the WAL into the
    database within a few of its intervals (checked with a deadline of 10 intervals)."""
    repo = SQLiteRepository(str(tmp_path / "store.sqlite3"))
    await repo.init()
    for n in range(0, 2000, 10):
        await repo.create_queued_jobs(
            [envelope(n + i) for i in range(10)],
            "normalization",
            enqueued_at=datetime.now(UTC),
            progress=JobProgress(),
        )
    deadline = asyncio.get_running_loop().time() + 10 * repo.checkpointer._every_s
    while repo.checkpointer.frames_checkpointed == 0:
        assert asyncio.get_running_loop().time() < deadline, "no background checkpoint happened"
        await asyncio.sleep(0.1)
    assert repo.checkpointer.frames_checkpointed > 0
    await repo.close()
