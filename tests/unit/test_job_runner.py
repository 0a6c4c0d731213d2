"""JobRunner against a real SQLite ledger: timeouts are failed tries, cancellations are interruptions,
a job found running lost its lease (counted, re-delivered with backoff, quarantined at the limit)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from arq import Retry

from src.application.services.normalization_service import RunInfo
from src.domain.jobs import ErrorCategory, JobClaim, JobEnvelope, JobOutcome, JobStatus, LostLease
from src.infrastructure.sqlite_repository import SQLiteRepository
from src.worker.job_runner import Body, JobFailed, JobRunner, RunPolicy, lease_loss_delay_s
from tests.contract.conftest import T0, make_job

JOB = "normalize:appt-1:1"
ENVELOPE = JobEnvelope(task="normalize_appointment", logical_key="normalize:appt-1")


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SQLiteRepository]:
    repository = SQLiteRepository(str(tmp_path / "store.sqlite3"))
    await repository.init()
    await repository.create_jobs([make_job("normalize:appt-1")])
    try:
        yield repository
    finally:
        await repository.close()


class PolicyRunner(JobRunner):
    """A JobRunner whose `run` applies one policy, as a registry entry's task does."""

    def __init__(self, repo: SQLiteRepository, policy: RunPolicy) -> None:
        super().__init__(repo, worker_id="w-b", version="1", max_lease_losses=2)
        self.policy = policy

    async def run(self, envelope: JobEnvelope, body: Body, policy: RunPolicy | None = None) -> dict[str, Any]:
        return await super().run(envelope, body, policy or self.policy)


def runner(repo: SQLiteRepository, *, timeout_s: float = 5.0, max_tries: int = 2) -> PolicyRunner:
    return PolicyRunner(repo, RunPolicy(timeout_s=timeout_s, max_tries=max_tries))


async def slow(run: RunInfo) -> dict[str, Any]:
    await asyncio.sleep(10)
    return {}


async def test_a_run_over_its_timeout_is_a_failed_try_then_a_failure(repo: SQLiteRepository) -> None:
    """First timeout: queued again (category timeout, one app failure) and a deferred Retry; the
    second, with no try left: failed."""
    with pytest.raises(Retry):
        await runner(repo, timeout_s=0.05).run(ENVELOPE, slow)
    record = await repo.get_job(JOB)
    assert record is not None
    assert (record.status, record.error_category, record.app_failures, record.interruptions) == (
        JobStatus.QUEUED,
        ErrorCategory.TIMEOUT,
        1,
        0,
    )
    with pytest.raises(JobFailed) as failed:
        await runner(repo, timeout_s=0.05).run(ENVELOPE, slow)
    assert failed.value.category is ErrorCategory.TIMEOUT
    record = await repo.get_job(JOB)
    assert record is not None and (record.status, record.app_failures) == (JobStatus.FAILED, 2)
    assert record.error_message is not None and "gave up after 2 tries" in record.error_message


async def test_the_bodys_own_timeout_error_is_not_the_jobs_timeout(repo: SQLiteRepository) -> None:
    """A TimeoutError raised by the body itself (its own deadline) is an unexpected error."""

    async def times_out_itself(run: RunInfo) -> dict[str, Any]:
        raise TimeoutError("a call of its own")

    with pytest.raises(JobFailed):
        await runner(repo).run(ENVELOPE, times_out_itself)
    record = await repo.get_job(JOB)
    assert record is not None and record.error_category is ErrorCategory.PERMANENT
    assert record.error_message == "unexpected TimeoutError"


async def test_a_cancellation_before_the_deadline_is_an_interruption(repo: SQLiteRepository) -> None:
    """A shutdown (the task cancelled) spends no try."""
    task = asyncio.create_task(runner(repo).run(ENVELOPE, slow))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = await repo.get_job(JOB)
    assert record is not None and (record.status, record.interruptions, record.app_failures) == (
        JobStatus.INTERRUPTED,
        1,
        0,
    )


async def test_a_run_that_ignores_its_timeout_is_still_a_timeout(repo: SQLiteRepository) -> None:
    """A body that swallows the deadline's cancellation and is then cancelled again (a shutdown)
    records a failed try (category timeout), not an interruption: it would otherwise overrun forever."""

    async def stubborn(run: RunInfo) -> dict[str, Any]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(10)  # ignores the cancellation
        return {}

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):  # the second cancellation, after the runner's deadline
            await runner(repo, timeout_s=0.05).run(ENVELOPE, stubborn)
    record = await repo.get_job(JOB)
    assert record is not None
    assert (record.status, record.error_category, record.app_failures, record.interruptions) == (
        JobStatus.QUEUED,
        ErrorCategory.TIMEOUT,
        1,
        0,
    )


async def test_a_job_found_running_lost_its_lease(repo: SQLiteRepository) -> None:
    """Claimed by a dead worker: the loss is counted and the job put back with backoff, not run; at
    the limit it is quarantined and the last holder named."""
    ran: list[int] = []

    async def body(run: RunInfo) -> dict[str, Any]:
        ran.append(run.attempt)
        return {}

    for holder, losses in (("w-dead-1", 1), ("w-dead-2", 2)):
        assert await repo.claim_job(JOB, JobClaim(worker_id=holder, version="1", started_at=T0)) is not None
        if losses == 1:
            with pytest.raises(Retry) as retry:
                await runner(repo).run(ENVELOPE, body)
            assert retry.value.defer_score == int(lease_loss_delay_s(1) * 1000)
        else:
            result = await runner(repo).run(ENVELOPE, body)
            assert result == {"quarantined": True, "lease_losses": 2, "last_worker_id": "w-dead-2"}
    assert ran == []
    record = await repo.get_job(JOB)
    assert record is not None
    assert (record.status, record.error_category, record.worker_id) == (
        JobStatus.FAILED,
        ErrorCategory.QUARANTINED,
        "w-dead-2",
    )


class SlowNotDead(SQLiteRepository):
    """The run we take for dead ends by itself ("will run again") just before the loss is recorded."""

    async def record_lost_lease(
        self, job_id: str, *, at: datetime, max_losses: int, attempt: int | None = None
    ) -> LostLease | None:
        retry = JobOutcome(status=JobStatus.QUEUED, finished_at=at, duration_ms=1, app_failure=True)
        await self.finish_job(job_id, 1, retry)
        return await super().record_lost_lease(job_id, at=at, max_losses=max_losses, attempt=attempt)


async def test_a_run_that_ends_while_we_look_is_run_not_skipped(tmp_path: Path) -> None:
    """The ledger refused the claim (running) but the run then ended as queued: this delivery runs it."""
    repo = SlowNotDead(str(tmp_path / "store.sqlite3"))
    await repo.init()
    try:
        await repo.create_jobs([make_job("normalize:appt-1")])
        assert await repo.claim_job(JOB, JobClaim(worker_id="w-slow", version="1", started_at=T0)) == 1

        async def body(run: RunInfo) -> dict[str, Any]:
            return {"attempt": run.attempt}

        assert await runner(repo).run(ENVELOPE, body) == {"attempt": 2}
        record = await repo.get_job(JOB)
        assert record is not None and (record.status, record.worker_id, record.lease_losses) == (
            JobStatus.SUCCEEDED,
            "w-b",
            0,
        )
    finally:
        await repo.close()


async def test_a_job_refused_before_it_starts_is_failed_in_the_ledger(repo: SQLiteRepository) -> None:
    """A job the worker could not even start (payload expired, function unknown) is failed, not left
    queued with its arq job gone."""
    await runner(repo).refuse(JOB, "function 'nope' not found (on worker w-b)")
    record = await repo.get_job(JOB)
    assert record is not None and (record.status, record.error_category) == (
        JobStatus.FAILED,
        ErrorCategory.PERMANENT,
    )
    assert record.error_message == "not started: function 'nope' not found (on worker w-b)"
