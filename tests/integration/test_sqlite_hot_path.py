"""The SQLite store's hot path: point operations run on the event loop's thread and fall back to the
store's thread when another connection holds the write lock; the WAL is checkpointed in the
background, not inside a job's commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from src.domain.jobs import JobClaim, JobEnvelope, JobName, JobProgress, JobStatus, QueueName
from src.infrastructure.sqlite_repository import SQLiteRepository


def envelope(n: int) -> JobEnvelope:
    return JobEnvelope(task=JobName.NORMALIZE_APPOINTMENT, logical_key=f"normalize:h{n}", ids={"n": n})


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
        [envelope(1)], QueueName.NORMALIZATION, enqueued_at=datetime.now(UTC), progress=JobProgress()
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
            QueueName.NORMALIZATION,
            enqueued_at=datetime.now(UTC),
            progress=JobProgress(),
        )
    deadline = asyncio.get_running_loop().time() + 10 * repo.checkpointer._every_s
    while repo.checkpointer.frames_checkpointed == 0:
        assert asyncio.get_running_loop().time() < deadline, "no background checkpoint happened"
        await asyncio.sleep(0.1)
    assert repo.checkpointer.frames_checkpointed > 0
    await repo.close()


def visible(path: Path, job_id: str) -> bool:
    """What another process sees: a fresh connection's read."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None
    finally:
        conn.close()


async def test_a_lone_enqueue_pushes_before_its_insert_commits_and_a_claim_waits_for_it(
    tmp_path: Path,
) -> None:
    """The push starts while the record is not committed yet (the Redis round trip overlaps the
    insert), and another process's claim, made right then, waits for the commit and finds it."""
    path = tmp_path / "store.sqlite3"
    repo, worker = SQLiteRepository(str(path)), SQLiteRepository(str(path))
    await repo.init()
    await worker.init()
    job = envelope(10)
    seen_at_push: list[bool] = []

    async def push() -> int | None:
        seen_at_push.append(visible(path, job.job_id))
        claim = JobClaim(worker_id="w", version="v", started_at=datetime.now(UTC))
        return await worker.claim_job(job.job_id, claim)  # the handed job's claim, in "another process"

    inserted, attempt = await repo.create_queued_jobs_then_push(
        [job], QueueName.NORMALIZATION, enqueued_at=datetime.now(UTC), progress=JobProgress(), push=push
    )
    assert seen_at_push == [False]  # pushed before the commit
    assert (inserted, attempt) == (1, 1)  # and the claim found the record
    record = await repo.get_job(job.job_id)
    assert record is not None and record.status is JobStatus.RUNNING
    await worker.close()
    await repo.close()


async def test_a_lone_enqueue_cancelled_in_its_window_still_writes_its_record(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    repo = SQLiteRepository(str(path))
    await repo.init()
    job = envelope(11)
    pushed = asyncio.Event()

    async def push() -> None:
        pushed.set()

    enqueue = asyncio.ensure_future(
        repo.create_queued_jobs_then_push(
            [job], QueueName.NORMALIZATION, enqueued_at=datetime.now(UTC), progress=JobProgress(), push=push
        )
    )
    await asyncio.sleep(0)  # the enqueue holds the lock and has started the push
    enqueue.cancel()
    with pytest.raises(asyncio.CancelledError):
        await enqueue
    assert pushed.is_set()
    assert visible(path, job.job_id)  # the push went out: so did the record
    await repo.close()


async def test_a_lone_enqueue_with_the_lock_taken_writes_first_then_pushes(tmp_path: Path) -> None:
    """Another process holds the write lock: no overlap; the insert waits (store's thread), then the
    push runs with the record already committed. Two lone enqueues of one process at once: the
    second, finding the first in its window, takes that path too."""
    path = tmp_path / "store.sqlite3"
    repo = SQLiteRepository(str(path))
    await repo.init()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    seen: list[bool] = []

    def pusher(job: JobEnvelope) -> Callable[[], Awaitable[None]]:
        async def push() -> None:
            seen.append(visible(path, job.job_id))

        return push

    await repo.create_queued_jobs_then_push(
        [envelope(12)], QueueName.NORMALIZATION, enqueued_at=datetime.now(UTC), progress=JobProgress(),
        push=pusher(envelope(12)),
    )  # fmt: skip
    assert seen == [True]
    other.close()
    first, second = envelope(13), envelope(14)
    results = await asyncio.gather(
        *(
            repo.create_queued_jobs_then_push(
                [e],
                QueueName.NORMALIZATION,
                enqueued_at=datetime.now(UTC),
                progress=JobProgress(),
                push=pusher(e),
            )  # fmt: skip
            for e in (first, second)
        )
    )
    assert [inserted for inserted, _ in results] == [1, 1]
    assert seen[1:] == [False, True]  # the first overlapped; the second wrote first
    assert visible(path, first.job_id) and visible(path, second.job_id)
    await repo.close()
