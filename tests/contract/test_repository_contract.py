"""The `Repository` contract, run against every adapter (see `conftest.py` for the stores)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from src.application.ports import Repository
from src.domain.appointments import NORMALIZATION, Batch, BatchCounts, KindResult, NormalizationStatus
from src.domain.jobs import ErrorCategory, JobClaim, JobEnvelope, JobOutcome, JobProgress, JobStatus
from tests.contract.conftest import (
    NORMALIZED_ADDRESS,
    NORMALIZED_DOCUMENT,
    T0,
    Store,
    make_appointment,
    make_job,
    make_provenance,
    make_result,
)

JOB = "normalize:appt-1:1"


def claim_by(worker_id: str, at: datetime = T0) -> JobClaim:
    return JobClaim(worker_id=worker_id, version="1.2.3", started_at=at)


async def take_over(repo: Repository, job_id: str, worker_id: str, at: datetime = T0) -> int | None:
    """What a worker does when its claim finds the job still running (its holder lost the lease):
    record the loss, which fences the old run off, then claim the job queued again."""
    lost = await repo.record_lost_lease(job_id, at=at, max_losses=3)
    assert lost is not None and lost.status is JobStatus.QUEUED
    return await repo.claim_job(job_id, claim_by(worker_id, at))


def outcome(status: JobStatus, **changes: object) -> JobOutcome:
    values: dict[str, object] = {
        "status": status,
        "finished_at": T0 + timedelta(seconds=2),
        "duration_ms": 2000,
    }
    values.update(changes)
    return JobOutcome(**values)  # type: ignore[arg-type]


def assert_utc(value: datetime | None) -> None:
    assert value is not None and value.utcoffset() == timedelta(0)


# lifecycle


async def test_init_is_idempotent_and_identity_is_stable(store: Store, repo: Repository) -> None:
    """init() can run again and on another repository object; the store keeps one identity."""
    identity = repo.identity()
    await repo.init()
    other = store.open()
    await other.init()
    assert repo.identity() == identity == other.identity()
    assert identity.startswith(f"{store.kind}:") and "#" in identity


async def test_ping_succeeds_on_a_reachable_store(repo: Repository) -> None:
    """ping() returns quietly when the store answers."""
    await repo.ping()


async def test_two_repositories_on_one_store_see_each_others_writes(store: Store, repo: Repository) -> None:
    """Two processes' repository objects share appointments, batches and the fencing of the ledger."""
    other = store.open()
    await other.init()
    await repo.insert_appointments([make_appointment(1)])
    await repo.create_jobs([make_job("normalize:appt-1")])
    assert await other.get_appointment("appt-1") == make_appointment(1)
    assert await other.claim_job(JOB, claim_by("worker-b")) == 1
    assert await take_over(repo, JOB, "worker-a") == 3
    assert await other.finish_job(JOB, 1, outcome(JobStatus.SUCCEEDED)) is False
    record = await other.get_job(JOB)
    assert record is not None and record.worker_id == "worker-a" and record.status is JobStatus.RUNNING


# appointments


async def test_insert_appointments_is_idempotent(repo: Repository) -> None:
    """Re-inserting known ids inserts nothing, and duplicates inside one call count once."""
    assert await repo.insert_appointments([make_appointment(n) for n in (1, 2, 3)]) == 3
    assert await repo.insert_appointments([make_appointment(n) for n in (2, 3, 4)]) == 1
    assert await repo.insert_appointments([make_appointment(5), make_appointment(5)]) == 1
    assert await repo.insert_appointments([]) == 0
    assert (await repo.count_batch("batch-1")).total == 5


async def test_insert_keeps_the_first_version_of_an_appointment(repo: Repository) -> None:
    """An insert never overwrites: the stored appointment is the first one written under that id."""
    await repo.insert_appointments([make_appointment(1)])
    await repo.insert_appointments([make_appointment(1, paciente="Someone Else")])
    stored = await repo.get_appointment("appt-1")
    assert stored is not None and stored.paciente == "Paciente 1"


async def test_appointment_round_trips_every_field(repo: Repository) -> None:
    """Every field, nested models included, comes back equal, with aware UTC datetimes."""
    full = make_appointment(
        1,
        telefone="+55 11 99999-0000",
        email="paciente@example.com",
        results={
            NORMALIZATION: make_result("appt-1", "normalize:appt-1:1", 2).kind_result(),
            "other_kind": KindResult(status="done", data={"n": 1}, provenance=make_provenance("o:1", 1)),
        },
    )
    failed = make_appointment(
        2,
        batch_id=None,
        seq=0,
        results={NORMALIZATION: make_result("appt-2", JOB, 1, NormalizationStatus.FAILED).kind_result()},
    )
    await repo.insert_appointments([full, failed])

    assert await repo.get_appointment("appt-1") == full
    assert await repo.get_appointment("appt-2") == failed
    stored = await repo.get_appointment("appt-1")
    assert stored is not None and stored.provenance is not None
    assert stored.documento_normalizado == NORMALIZED_DOCUMENT
    assert stored.endereco_normalizado == NORMALIZED_ADDRESS
    assert stored.normalization_status is NormalizationStatus.NORMALIZED
    for value in (stored.data_hora, stored.created_at, stored.provenance.started_at):
        assert_utc(value)
    stored_failed = await repo.get_appointment("appt-2")
    assert stored_failed is not None and stored_failed.normalization_error == "endereco: cidade is missing"


async def test_datetimes_come_back_in_utc_whatever_came_in(repo: Repository) -> None:
    """An aware datetime in another offset comes back as the same instant in UTC; a naive one is UTC."""
    brasilia = timezone(timedelta(hours=-3))
    appointment = make_appointment(
        1,
        data_hora=datetime(2026, 3, 2, 9, 0, tzinfo=brasilia),
        created_at=datetime(2026, 3, 2, 12, 0),  # naive
        results={
            NORMALIZATION: KindResult(
                status="normalized",
                provenance=make_provenance(JOB, 1).model_copy(
                    update={"started_at": datetime(2026, 3, 2, 9, 1, tzinfo=brasilia)}
                ),
            )
        },
    )
    await repo.insert_appointments([appointment])
    stored = await repo.get_appointment("appt-1")
    assert stored is not None and stored.provenance is not None
    assert stored.data_hora == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert stored.created_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert stored.provenance.started_at == datetime(2026, 3, 2, 12, 1, tzinfo=UTC)
    for value in (stored.data_hora, stored.created_at, stored.provenance.started_at):
        assert_utc(value)

    result = make_result("appt-1", JOB, 2)
    result.provenance.finished_at = datetime(2026, 3, 2, 9, 2, tzinfo=brasilia)
    await repo.save_normalizations([result], job_id=JOB, attempt=2)
    saved = await repo.get_appointment("appt-1")
    assert saved is not None and saved.provenance is not None
    assert saved.provenance.finished_at == datetime(2026, 3, 2, 12, 2, tzinfo=UTC)
    assert_utc(saved.provenance.finished_at)

    await repo.insert_batch(
        Batch(id="batch-1", filename="a.xlsx", total=1, chunk_size=1, created_at=datetime(2026, 3, 2))
    )
    batch = await repo.get_batch("batch-1")
    assert batch is not None and batch.created_at == datetime(2026, 3, 2, tzinfo=UTC)
    assert_utc(batch.created_at)


async def test_get_appointment_of_an_unknown_id_is_none(repo: Repository) -> None:
    """An unknown appointment id reads as None."""
    assert await repo.get_appointment("nope") is None


async def test_list_batch_appointments_returns_a_seq_window_in_order(repo: Repository) -> None:
    """seq_from <= seq < seq_to, in seq order, at most `limit`, only from the asked batch."""
    rows = [make_appointment(n) for n in range(10)]
    random.Random(7).shuffle(rows)
    others = [make_appointment(100 + n, batch_id="batch-2", seq=n) for n in range(5)]
    await repo.insert_appointments(rows + others)

    window = await repo.list_batch_appointments("batch-1", seq_from=2, seq_to=7, limit=100)
    assert [a.seq for a in window] == [2, 3, 4, 5, 6]
    assert {a.batch_id for a in window} == {"batch-1"}
    limited = await repo.list_batch_appointments("batch-1", seq_from=2, seq_to=7, limit=3)
    assert [a.seq for a in limited] == [2, 3, 4]
    assert await repo.list_batch_appointments("batch-1", seq_from=10, seq_to=20, limit=5) == []
    assert await repo.list_batch_appointments("batch-9", seq_from=0, seq_to=20, limit=5) == []


async def test_batch_round_trips_and_inserts_once(repo: Repository) -> None:
    """insert_batch is True once, False after; the batch reads back equal; unknown is None."""
    batch = Batch(
        id="batch-1",
        filename="agenda março.xlsx",
        total=3,
        rejected=1,
        chunk_size=500,
        request_id="req-1",
        created_at=T0,
        job_ids=["normalize_batch:batch-1:0:1", "normalize_batch:batch-1:500:1"],
    )
    assert await repo.insert_batch(batch) is True
    assert await repo.insert_batch(batch.model_copy(update={"filename": "other.xlsx"})) is False
    assert await repo.get_batch("batch-1") == batch
    assert await repo.get_batch("batch-9") is None


async def test_count_batch_counts_by_normalization_status(repo: Repository) -> None:
    """count_batch splits a batch's rows into normalized, failed and pending."""
    await repo.insert_appointments([make_appointment(n) for n in range(5)])
    await repo.insert_appointments([make_appointment(9, batch_id="batch-2", seq=0)])
    results = [
        make_result("appt-0", JOB, 1),
        make_result("appt-1", JOB, 1),
        make_result("appt-2", JOB, 1, NormalizationStatus.FAILED),
    ]
    assert await repo.save_normalizations(results, job_id=JOB, attempt=1) == 3

    assert await repo.count_batch("batch-1") == BatchCounts(total=5, normalized=2, failed=1, pending=2)
    assert await repo.count_batch("batch-2") == BatchCounts(total=1, normalized=0, failed=0, pending=1)
    assert await repo.count_batch("batch-9") == BatchCounts(total=0, normalized=0, failed=0, pending=0)


async def test_save_normalizations_writes_results_and_provenance(repo: Repository) -> None:
    """Saved results show on the appointment; unknown appointments are not counted as written."""
    await repo.insert_appointments([make_appointment(1), make_appointment(2)])
    results = [
        make_result("appt-1", JOB, 1),
        make_result("appt-2", JOB, 1, NormalizationStatus.FAILED),
        make_result("appt-404", JOB, 1),
    ]
    assert await repo.save_normalizations(results, job_id=JOB, attempt=1) == 2
    assert await repo.save_normalizations([], job_id=JOB, attempt=1) == 0

    normalized = await repo.get_appointment("appt-1")
    assert normalized is not None
    assert normalized.normalization_status is NormalizationStatus.NORMALIZED
    assert normalized.documento_normalizado == NORMALIZED_DOCUMENT
    assert normalized.endereco_normalizado == NORMALIZED_ADDRESS
    assert normalized.provenance == make_provenance(JOB, 1)
    assert normalized.paciente == "Paciente 1"  # the imported fields are untouched
    failed = await repo.get_appointment("appt-2")
    assert failed is not None and failed.normalization_status is NormalizationStatus.FAILED
    assert failed.normalization_error == "endereco: cidade is missing" and failed.endereco_normalizado is None


async def test_save_normalizations_skips_what_a_newer_attempt_wrote(repo: Repository) -> None:
    """A stale attempt of the same job cannot overwrite; a newer attempt or another job can."""
    await repo.insert_appointments([make_appointment(1)])
    assert (
        await repo.save_normalizations([make_result("appt-1", JOB, 2, worker_id="b")], job_id=JOB, attempt=2)
        == 1
    )
    stale = [make_result("appt-1", JOB, 1, NormalizationStatus.FAILED, worker_id="a")]
    assert await repo.save_normalizations(stale, job_id=JOB, attempt=1) == 0
    kept = await repo.get_appointment("appt-1")
    assert kept is not None and kept.provenance == make_provenance(JOB, 2, "b")
    assert kept.normalization_status is NormalizationStatus.NORMALIZED

    assert (
        await repo.save_normalizations([make_result("appt-1", JOB, 2, worker_id="b")], job_id=JOB, attempt=2)
        == 1
    )
    assert (
        await repo.save_normalizations([make_result("appt-1", JOB, 3, worker_id="c")], job_id=JOB, attempt=3)
        == 1
    )
    rerun = "normalize:appt-1:2"
    assert await repo.save_normalizations([make_result("appt-1", rerun, 1)], job_id=rerun, attempt=1) == 1
    latest = await repo.get_appointment("appt-1")
    assert latest is not None and latest.provenance == make_provenance(rerun, 1)


async def test_save_normalizations_refuses_results_of_another_run(repo: Repository) -> None:
    """Results whose provenance names another run are a bug, refused before anything is written."""
    await repo.insert_appointments([make_appointment(1)])
    with pytest.raises(ValueError):
        await repo.save_normalizations([make_result("appt-1", JOB, 1)], job_id=JOB, attempt=2)
    stored = await repo.get_appointment("appt-1")
    assert stored is not None and stored.provenance is None


# job ledger


async def test_job_record_round_trips_every_field(repo: Repository) -> None:
    """A ledger record with every field set reads back equal, with aware UTC datetimes."""
    envelope = JobEnvelope(
        task="normalize_batch_chunk",
        logical_key="normalize_batch:batch-1:500",
        generation=3,
        ids={"batch_id": "batch-1", "seq_from": 500},
        request_id="req-1",
        batch_id="batch-1",
        producer_version="1.2.3",
    )
    record = make_job(
        "normalize_batch:batch-1:500",
        3,
        task="normalize_batch_chunk",
        queue="maintenance",
        envelope=envelope,
        status=JobStatus.INTERRUPTED,
        attempt=4,
        app_failures=1,
        interruptions=2,
        worker_id="worker-a",
        version="1.2.3",
        started_at=T0 + timedelta(seconds=1),
        heartbeat_at=T0 + timedelta(seconds=2),
        finished_at=T0 + timedelta(seconds=3),
        duration_ms=2000,
        progress=JobProgress(done=5, total=10, cursor=505),
        error_category=ErrorCategory.TRANSIENT,
        error_message="store unavailable",
        result={"written": 5, "skipped": [1, 2], "nested": {"ok": True, "ratio": 0.5, "none": None}},
    )
    assert await repo.create_jobs([record]) == 1
    stored = await repo.get_job(record.job_id)
    assert stored == record
    assert stored is not None
    for value in (stored.enqueued_at, stored.started_at, stored.heartbeat_at, stored.finished_at):
        assert_utc(value)
    assert await repo.get_job("normalize:nope:1") is None


async def test_create_jobs_is_idempotent(repo: Repository) -> None:
    """Known job ids are not inserted again and a replay does not reset a record."""
    assert await repo.create_jobs([make_job("normalize:appt-1"), make_job("normalize:appt-2")]) == 2
    assert await repo.claim_job(JOB, claim_by("worker-a")) == 1
    assert await repo.create_jobs([make_job("normalize:appt-1"), make_job("normalize:appt-3")]) == 1
    assert await repo.create_jobs([]) == 0
    record = await repo.get_job(JOB)
    assert record is not None and record.status is JobStatus.RUNNING and record.attempt == 1


async def test_create_queued_jobs_equals_create_jobs_of_the_same_records(repo: Repository) -> None:
    """The bulk-enqueue path stores exactly the record `create_jobs` would, skips known ids, and
    seeds every record's progress (a successor generation resumes from it)."""
    seed = JobProgress(done=3, total=9, cursor=41)
    envelopes = [
        JobEnvelope(
            task="normalize_batch_chunk",
            logical_key=f"chunk:b1:{n}",
            generation=2,
            ids={"batch_id": "b1", "seq_from": n, "seq_to": n + 9},
            request_id="req-1",
            batch_id="b1",
            producer_version="1.2.3",
        )
        for n in range(3)
    ]
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-3)))
    assert await repo.create_queued_jobs(envelopes[:2], "normalization", enqueued_at=at, progress=seed) == 2
    assert await repo.claim_job(envelopes[0].job_id, claim_by("worker-a")) == 1
    # a replay of a known id neither inserts it again nor resets its record
    assert await repo.create_queued_jobs(envelopes, "normalization", enqueued_at=at, progress=seed) == 1
    for envelope in envelopes[1:]:
        stored = await repo.get_job(envelope.job_id)
        expected = make_job(
            envelope.logical_key,
            2,
            enqueued_at=at,
            task="normalize_batch_chunk",
            envelope=envelope,
            progress=seed,
        )
        assert stored == expected
        assert stored is not None
        assert_utc(stored.enqueued_at)
    running = await repo.get_job(envelopes[0].job_id)
    assert running is not None and running.status is JobStatus.RUNNING and running.attempt == 1


async def test_claim_increments_attempt_and_marks_running(repo: Repository) -> None:
    """Each claim returns the next attempt and records who runs it and since when; a running job is
    not claimed again (its holder may still run it)."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    assert await repo.claim_job(JOB, claim_by("worker-a", T0 + timedelta(seconds=1))) == 1
    assert await repo.claim_job(JOB, claim_by("worker-b", T0 + timedelta(seconds=2))) is None
    interrupted = outcome(JobStatus.INTERRUPTED, interruption=True)
    assert await repo.finish_job(JOB, 1, interrupted) is True
    assert await repo.claim_job(JOB, claim_by("worker-b", T0 + timedelta(seconds=5))) == 2
    record = await repo.get_job(JOB)
    assert record is not None
    assert (record.status, record.attempt, record.worker_id, record.version) == (
        JobStatus.RUNNING,
        2,
        "worker-b",
        "1.2.3",
    )
    assert record.started_at == record.heartbeat_at == T0 + timedelta(seconds=5)
    assert_utc(record.started_at)


@pytest.mark.parametrize("final", [JobStatus.SUCCEEDED, JobStatus.FAILED])
async def test_claim_refuses_unknown_and_terminal_jobs(repo: Repository, final: JobStatus) -> None:
    """Claiming an unknown, finished or cancelled job returns None and changes nothing."""
    await repo.create_jobs([make_job("normalize:appt-1"), make_job("normalize:appt-2")])
    assert await repo.claim_job("normalize:nope:1", claim_by("worker-a")) is None

    assert await repo.claim_job(JOB, claim_by("worker-a")) == 1
    assert await repo.finish_job(JOB, 1, outcome(final)) is True
    assert await repo.claim_job(JOB, claim_by("worker-b")) is None
    record = await repo.get_job(JOB)
    assert record is not None and (record.status, record.attempt, record.worker_id) == (final, 1, "worker-a")

    assert await repo.cancel_job("normalize:appt-2:1", at=T0) is True
    assert await repo.claim_job("normalize:appt-2:1", claim_by("worker-b")) is None


async def test_a_zombie_run_is_fenced_off(repo: Repository) -> None:
    """After B re-claims A's job, A's heartbeat, finish and results are refused; B's are accepted."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    await repo.insert_appointments([make_appointment(1)])
    attempt_a = await repo.claim_job(JOB, claim_by("worker-a"))
    attempt_b = await take_over(repo, JOB, "worker-b", T0 + timedelta(seconds=30))
    assert (attempt_a, attempt_b) == (1, 3)
    result_b = make_result("appt-1", JOB, 3, worker_id="worker-b")
    assert await repo.save_normalizations([result_b], job_id=JOB, attempt=3) == 1
    before = await repo.get_job(JOB)

    later = T0 + timedelta(minutes=1)
    assert await repo.heartbeat_job(JOB, 1, at=later, progress=JobProgress(done=1, total=1)) is False
    assert await repo.finish_job(JOB, 1, outcome(JobStatus.FAILED, app_failure=True)) is False
    result_a = make_result("appt-1", JOB, 1, NormalizationStatus.FAILED)
    assert await repo.save_normalizations([result_a], job_id=JOB, attempt=1) == 0
    assert await repo.get_job(JOB) == before
    appointment = await repo.get_appointment("appt-1")
    assert appointment is not None and appointment.provenance == result_b.provenance

    assert await repo.heartbeat_job(JOB, 3, at=later) is True
    assert await repo.finish_job(JOB, 3, outcome(JobStatus.SUCCEEDED, result={"written": 1})) is True
    record = await repo.get_job(JOB)
    assert record is not None and (record.status, record.app_failures, record.result) == (
        JobStatus.SUCCEEDED,
        0,
        {"written": 1},
    )
    assert record.lease_losses == 1 and record.worker_id == "worker-b"


async def test_finish_records_the_outcome_and_counts_failures(repo: Repository) -> None:
    """finish_job stores the outcome and bumps app_failures / interruptions; only once per run."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    await repo.claim_job(JOB, claim_by("worker-a"))
    interrupted = outcome(JobStatus.INTERRUPTED, interruption=True, error_message="worker shut down")
    assert await repo.finish_job(JOB, 1, interrupted) is True
    assert await repo.finish_job(JOB, 1, interrupted) is False  # no longer running
    record = await repo.get_job(JOB)
    assert record is not None and (record.status, record.interruptions, record.app_failures) == (
        JobStatus.INTERRUPTED,
        1,
        0,
    )

    assert await repo.claim_job(JOB, claim_by("worker-b")) == 2
    failed = outcome(
        JobStatus.FAILED,
        app_failure=True,
        error_category=ErrorCategory.PERMANENT,
        error_message="document is not a CPF nor a CNPJ",
    )
    assert await repo.finish_job(JOB, 2, failed) is True
    record = await repo.get_job(JOB)
    assert record is not None
    assert (record.status, record.attempt, record.app_failures, record.interruptions) == (
        JobStatus.FAILED,
        2,
        1,
        1,
    )
    assert (record.error_category, record.error_message) == (ErrorCategory.PERMANENT, failed.error_message)
    assert (record.finished_at, record.duration_ms) == (failed.finished_at, 2000)
    assert_utc(record.finished_at)


async def test_a_transient_failure_is_queued_and_claimed_again(repo: Repository) -> None:
    """A QUEUED outcome means "will be retried": the job can be claimed again, finished fields cleared."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    await repo.claim_job(JOB, claim_by("worker-a"))
    retry = outcome(
        JobStatus.QUEUED, app_failure=True, error_category=ErrorCategory.TRANSIENT, error_message="llm down"
    )
    assert await repo.finish_job(JOB, 1, retry) is True
    queued = await repo.get_job(JOB)
    assert queued is not None and (queued.status, queued.error_category) == (
        JobStatus.QUEUED,
        ErrorCategory.TRANSIENT,
    )

    assert await repo.claim_job(JOB, claim_by("worker-b", T0 + timedelta(seconds=10))) == 2
    running = await repo.get_job(JOB)
    assert running is not None and running.status is JobStatus.RUNNING and running.app_failures == 1
    assert (running.finished_at, running.duration_ms, running.error_category, running.error_message) == (
        None,
        None,
        None,
        None,
    )
    assert await repo.finish_job(JOB, 2, retry) is True
    assert await repo.claim_job(JOB, claim_by("worker-c")) == 3
    assert await repo.finish_job(JOB, 3, outcome(JobStatus.SUCCEEDED, result={"written": 1})) is True
    done = await repo.get_job(JOB)
    assert done is not None and (done.status, done.app_failures, done.result) == (
        JobStatus.SUCCEEDED,
        2,
        {"written": 1},
    )
    assert await repo.claim_job(JOB, claim_by("worker-d")) is None


async def test_heartbeat_refreshes_a_running_job(repo: Repository) -> None:
    """A heartbeat moves heartbeat_at, stores progress when given and keeps it when not."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    assert await repo.heartbeat_job(JOB, 0, at=T0) is False  # queued, not running
    await repo.claim_job(JOB, claim_by("worker-a"))
    progress = JobProgress(done=250, total=500, cursor=250)
    assert await repo.heartbeat_job(JOB, 1, at=T0 + timedelta(seconds=10), progress=progress) is True
    assert await repo.heartbeat_job(JOB, 1, at=T0 + timedelta(seconds=20)) is True
    record = await repo.get_job(JOB)
    assert record is not None and record.progress == progress
    assert record.heartbeat_at == T0 + timedelta(seconds=20)
    assert await repo.heartbeat_job("normalize:nope:1", 1, at=T0) is False


async def test_cancel_only_applies_to_non_terminal_jobs(repo: Repository) -> None:
    """Cancel marks queued or running jobs cancelled (fencing the run); terminal or unknown → False."""
    await repo.create_jobs([make_job("normalize:appt-1"), make_job("normalize:appt-2")])
    assert await repo.cancel_job(JOB, at=T0 + timedelta(seconds=1)) is True
    assert await repo.cancel_job(JOB, at=T0 + timedelta(seconds=2)) is False
    record = await repo.get_job(JOB)
    assert record is not None and record.status is JobStatus.CANCELLED
    assert record.finished_at == T0 + timedelta(seconds=1)
    assert await repo.cancel_job("normalize:nope:1", at=T0) is False

    running = "normalize:appt-2:1"
    assert await repo.claim_job(running, claim_by("worker-a")) == 1
    assert await repo.cancel_job(running, at=T0) is True
    assert await repo.heartbeat_job(running, 1, at=T0) is False
    assert await repo.finish_job(running, 1, outcome(JobStatus.SUCCEEDED)) is False
    cancelled = await repo.get_job(running)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED


async def test_latest_job_is_the_highest_generation(repo: Repository) -> None:
    """latest_job compares generations as numbers (10 > 9 > 2), per logical key."""
    key = "normalize:appt-1"
    await repo.create_jobs([make_job(key, g) for g in (2, 10, 9, 1)] + [make_job("normalize:appt-10", 11)])
    latest = await repo.latest_job(key)
    assert latest is not None and (latest.job_id, latest.generation) == ("normalize:appt-1:10", 10)
    assert await repo.latest_job("normalize:nope") is None


async def test_list_jobs_is_newest_first_filtered_and_limited(repo: Repository) -> None:
    """list_jobs orders by enqueued_at descending, filters by status, honours the limit."""
    records = [make_job(f"normalize:appt-{n}", enqueued_at=T0 + timedelta(minutes=n)) for n in range(6)]
    records.append(make_job("normalize:appt-9", enqueued_at=T0 + timedelta(hours=-1)))  # oldest
    random.Random(3).shuffle(records)
    await repo.create_jobs(records)
    for n in (1, 4):
        await repo.claim_job(f"normalize:appt-{n}:1", claim_by("worker-a"))

    everything = await repo.list_jobs()
    assert [r.logical_key for r in everything] == [f"normalize:appt-{n}" for n in (5, 4, 3, 2, 1, 0, 9)]
    newest = await repo.list_jobs(limit=2)
    assert [r.logical_key for r in newest] == ["normalize:appt-5", "normalize:appt-4"]
    running = await repo.list_jobs(status=JobStatus.RUNNING)
    assert [r.logical_key for r in running] == ["normalize:appt-4", "normalize:appt-1"]
    queued = await repo.list_jobs(status=JobStatus.QUEUED, limit=3)
    assert [r.logical_key for r in queued] == ["normalize:appt-5", "normalize:appt-3", "normalize:appt-2"]
    assert await repo.list_jobs(status=JobStatus.FAILED) == []


async def test_enqueued_at_order_holds_across_utc_offsets(repo: Repository) -> None:
    """Ordering compares instants, not the text of local times in different offsets."""
    brasilia = timezone(timedelta(hours=-3))
    early = make_job("normalize:appt-1", enqueued_at=datetime(2026, 3, 2, 11, 0, tzinfo=brasilia))  # 14:00Z
    late = make_job("normalize:appt-2", enqueued_at=datetime(2026, 3, 2, 14, 30, tzinfo=UTC))
    await repo.create_jobs([early, late])
    assert [r.logical_key for r in await repo.list_jobs()] == ["normalize:appt-2", "normalize:appt-1"]
    stored = await repo.get_job(early.job_id)
    assert stored is not None and stored.enqueued_at == early.enqueued_at
    assert_utc(stored.enqueued_at)


# lifecycle support: bulk heartbeats and the reconciler's query


async def test_heartbeat_jobs_refreshes_only_current_running_attempts(repo: Repository) -> None:
    """A bulk heartbeat touches running jobs at their current attempt and skips stale or idle ones."""
    await repo.create_jobs([make_job("normalize:a"), make_job("normalize:b"), make_job("normalize:c")])
    assert await repo.claim_job("normalize:a:1", claim_by("w1")) == 1
    assert await repo.claim_job("normalize:b:1", claim_by("w1")) == 1
    assert await take_over(repo, "normalize:b:1", "w2") == 3
    later = T0 + timedelta(seconds=30)
    matched = await repo.heartbeat_jobs(
        [("normalize:a:1", 1), ("normalize:b:1", 1), ("normalize:c:1", 1)], at=later
    )
    assert matched == 1
    a, b = await repo.get_job("normalize:a:1"), await repo.get_job("normalize:b:1")
    assert a is not None and a.heartbeat_at == later
    assert b is not None and b.heartbeat_at == T0
    assert await repo.heartbeat_jobs([], at=later) == 0


async def test_find_stale_jobs_returns_dead_runs_and_long_waiting_jobs(repo: Repository) -> None:
    """Running jobs with an old heartbeat and queued/interrupted jobs enqueued long ago are found, oldest
    first; fresh, finished and recently enqueued jobs are not."""
    old, recent = T0 - timedelta(minutes=10), T0 + timedelta(minutes=5)
    await repo.create_jobs(
        [
            make_job("normalize:dead", enqueued_at=old),
            make_job("normalize:alive", enqueued_at=old),
            make_job("normalize:waiting", enqueued_at=old - timedelta(minutes=1)),
            make_job("normalize:fresh", enqueued_at=recent),
            make_job("normalize:done", enqueued_at=old),
        ]
    )
    await repo.claim_job("normalize:dead:1", claim_by("w1", at=old))
    await repo.claim_job("normalize:alive:1", claim_by("w1", at=old))
    await repo.heartbeat_jobs([("normalize:alive:1", 1)], at=T0 + timedelta(minutes=1))
    await repo.claim_job("normalize:done:1", claim_by("w1", at=old))
    await repo.finish_job("normalize:done:1", 1, outcome(JobStatus.SUCCEEDED))
    found = await repo.find_stale_jobs(running_heartbeat_before=T0, waiting_enqueued_before=T0, limit=10)
    assert [r.job_id for r in found] == ["normalize:waiting:1", "normalize:dead:1"]
    limited = await repo.find_stale_jobs(running_heartbeat_before=T0, waiting_enqueued_before=T0, limit=1)
    assert [r.job_id for r in limited] == ["normalize:waiting:1"]


# operations support: counts, recent finishes, cleanup


async def test_count_jobs_groups_by_queue_status_and_category(repo: Repository) -> None:
    """Counts per (queue, status, category) with the oldest enqueue time of each group."""
    older = T0 - timedelta(minutes=3)
    await repo.create_jobs(
        [make_job("normalize:q1", enqueued_at=older), make_job("normalize:q2"), make_job("normalize:f1")]
    )
    await repo.claim_job("normalize:f1:1", claim_by("w1"))
    await repo.finish_job(
        "normalize:f1:1",
        1,
        outcome(JobStatus.FAILED, error_category=ErrorCategory.PERMANENT, app_failure=True),
    )
    counts = {(c.queue, c.status, c.error_category): c for c in await repo.count_jobs()}
    queued = counts[("normalization", JobStatus.QUEUED, None)]
    assert queued.count == 2 and queued.oldest_enqueued_at == older
    assert counts[("normalization", JobStatus.FAILED, ErrorCategory.PERMANENT)].count == 1


async def test_finished_since_and_delete_finished_jobs_spare_live_jobs(repo: Repository) -> None:
    """Recent finishes are listed newest first; cleanup deletes only finished records older than the
    cut-off, never queued or running ones."""
    await repo.create_jobs(
        [make_job(f"normalize:j{i}", enqueued_at=T0 - timedelta(hours=2)) for i in range(4)]
    )
    for i in (0, 1):
        await repo.claim_job(f"normalize:j{i}:1", claim_by("w1"))
        finished = outcome(JobStatus.SUCCEEDED, finished_at=T0 + timedelta(seconds=i))
        await repo.finish_job(f"normalize:j{i}:1", 1, finished)
    await repo.claim_job("normalize:j2:1", claim_by("w1"))  # running
    recent = await repo.finished_since(T0, limit=10)
    assert [r.job_id for r in recent] == ["normalize:j1:1", "normalize:j0:1"]
    deleted = await repo.delete_finished_jobs(T0 + timedelta(hours=1), limit=100)
    assert sorted(deleted) == ["normalize:j0:1", "normalize:j1:1"]
    assert await repo.get_job("normalize:j0:1") is None
    for live in ("normalize:j2:1", "normalize:j3:1"):
        assert await repo.get_job(live) is not None
    assert await repo.delete_finished_jobs(T0 + timedelta(hours=1), limit=100) == []


async def test_recent_batches_newest_first(repo: Repository) -> None:
    """recent_batches lists the newest batches first, at most `limit`."""
    for i in range(3):
        batch = Batch(
            id=f"b{i}", filename=f"{i}.csv", total=i, chunk_size=10, created_at=T0 + timedelta(minutes=i)
        )
        await repo.insert_batch(batch)
    assert [b.id for b in await repo.recent_batches(limit=2)] == ["b2", "b1"]


async def test_pages_after_a_position_list_each_job_and_batch_once_through_ties(repo: Repository) -> None:
    """list_jobs and recent_batches after a (time, id) position continue the newest-first order,
    ties broken by id, so paging by the last item's position lists each one once; count_batches
    counts them all."""
    same = T0 + timedelta(minutes=5)  # a bulk enqueue: one time for many jobs
    records = [make_job(f"normalize:appt-{n}", enqueued_at=same) for n in range(5)]
    records += [
        make_job(f"normalize:appt-{n}", enqueued_at=T0 + timedelta(minutes=n - 5)) for n in range(5, 8)
    ]
    await repo.create_jobs(records)
    await repo.claim_job("normalize:appt-2:1", claim_by("worker-a"))
    seen: list[str] = []
    before: tuple[datetime, str] | None = None
    while page := await repo.list_jobs(limit=3, before=before):
        seen += [r.job_id for r in page]
        before = (page[-1].enqueued_at, page[-1].job_id)
    expected = sorted(records, key=lambda r: (r.enqueued_at, r.job_id), reverse=True)
    assert seen == [r.job_id for r in expected]
    queued = await repo.list_jobs(status=JobStatus.QUEUED, before=(same, "normalize:appt-3:1"))
    assert [r.job_id for r in queued] == ["normalize:appt-1:1", "normalize:appt-0:1"] + [
        f"normalize:appt-{n}:1" for n in (7, 6, 5)
    ]
    for i in range(4):
        created = T0 + timedelta(minutes=i // 2)  # two batches a minute: ties by id
        await repo.insert_batch(
            Batch(id=f"b{i}", filename="a.csv", total=1, chunk_size=10, created_at=created)
        )
    first = await repo.recent_batches(limit=2)
    rest = await repo.recent_batches(limit=5, before=(first[-1].created_at, first[-1].id))
    assert [b.id for b in first + rest] == ["b3", "b2", "b1", "b0"]
    assert await repo.count_batches() == 4
