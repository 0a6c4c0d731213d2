"""Alarms are counted per kind: a flood of one kind never hides another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from src.application.services.alarms import MAX_COUNTED, recent_alarms
from src.domain.jobs import ErrorCategory, JobClaim, JobEnvelope, JobOutcome, JobProgress, JobStatus
from src.infrastructure.sqlite_repository import SQLiteRepository


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SQLiteRepository]:
    repository = SQLiteRepository(str(tmp_path / "store.sqlite3"))
    await repository.init()
    try:
        yield repository
    finally:
        await repository.close()


async def test_a_flood_of_timeouts_does_not_hide_an_intrusion(repo: SQLiteRepository) -> None:
    """One job taken by a stranger, then more timeouts than a page of results: both alarms show, the
    intrusion with its evidence, the timeouts counted up to the cap."""
    now = datetime.now(UTC)
    taken = JobEnvelope(task="normalize_appointment", logical_key="normalize:taken")
    timeouts = [
        JobEnvelope(task="normalize_appointment", logical_key=f"normalize:slow-{n}")
        for n in range(MAX_COUNTED + 5)
    ]
    await repo.create_queued_jobs(
        [taken, *timeouts], "normalization", enqueued_at=now, progress=JobProgress()
    )
    evidence = {"foreign_result": {"format": "json", "function": "normalize_appointment"}}
    assert await repo.fail_waiting_job(
        taken.job_id, at=now, category=ErrorCategory.FOREIGN_CONSUMER, message="taken", result=evidence
    )
    later = datetime.now(UTC)
    for envelope in timeouts:
        await repo.claim_job(envelope.job_id, JobClaim(worker_id="w", version="1", started_at=later))
        failed = JobOutcome(status=JobStatus.FAILED, finished_at=later, duration_ms=1,
                            error_category=ErrorCategory.TIMEOUT, app_failure=True)  # fmt: skip
        await repo.finish_job(envelope.job_id, 1, failed)

    alarms = {a.kind: a for a in await recent_alarms(repo)}
    assert set(alarms) == {ErrorCategory.FOREIGN_CONSUMER, ErrorCategory.TIMEOUT}
    intrusion = alarms[ErrorCategory.FOREIGN_CONSUMER]
    assert (intrusion.count, intrusion.job_ids, intrusion.evidence) == (1, [taken.job_id], evidence)
    assert (
        alarms[ErrorCategory.TIMEOUT].count == MAX_COUNTED
        and len(alarms[ErrorCategory.TIMEOUT].job_ids) == 20
    )
