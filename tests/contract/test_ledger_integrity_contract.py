"""The ledger's integrity operations, run against every adapter: lost leases and quarantine, jobs
taken without a run of ours, superseded generations, and the fleet's workers kept in the store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from src.application.ports import Repository
from src.domain.addresses import AddressSource
from src.domain.appointments import NORMALIZATION, KindResult, Provenance
from src.domain.jobs import ErrorCategory, JobEnvelope, JobOutcome, JobProgress, JobStatus
from src.domain.workers import WorkerRegistration
from tests.contract.conftest import NORMALIZED_ADDRESS, T0, make_appointment, make_job, make_result
from tests.contract.test_repository_contract import claim_by, outcome

JOB = "normalize:appt-1:1"


async def test_a_lost_lease_fences_the_run_off_and_queues_the_job_again(repo: Repository) -> None:
    """The loss is counted, the old run's writes are refused, the last holder is kept, and the job
    can be claimed again."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    assert await repo.claim_job(JOB, claim_by("worker-a")) == 1
    lost = await repo.record_lost_lease(JOB, at=T0 + timedelta(seconds=40), max_losses=3)
    assert lost is not None and not lost.quarantined
    assert (lost.status, lost.attempt, lost.lease_losses, lost.worker_id) == (
        JobStatus.QUEUED,
        2,
        1,
        "worker-a",
    )
    assert await repo.heartbeat_job(JOB, 1, at=T0 + timedelta(seconds=41)) is False
    assert await repo.finish_job(JOB, 1, outcome(JobStatus.SUCCEEDED)) is False
    queued = await repo.get_job(JOB)
    assert queued is not None and (queued.status, queued.worker_id, queued.lease_losses) == (
        JobStatus.QUEUED,
        "worker-a",
        1,
    )
    assert queued.error_message is not None and "lease" in queued.error_message

    assert await repo.claim_job(JOB, claim_by("worker-b")) == 3
    running = await repo.get_job(JOB)
    assert running is not None and (running.status, running.worker_id, running.lease_losses) == (
        JobStatus.RUNNING,
        "worker-b",
        1,
    )
    assert running.error_message is None


async def test_the_last_allowed_loss_quarantines_the_job(repo: Repository) -> None:
    """At `max_losses` the job is failed with category quarantined, naming the last holder; it cannot
    be claimed, and it is listed among the quarantined failures."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    for n, worker in enumerate(("worker-a", "worker-b")):
        assert await repo.claim_job(JOB, claim_by(worker)) is not None
        lost = await repo.record_lost_lease(JOB, at=T0 + timedelta(minutes=n + 1), max_losses=2)
        assert lost is not None
    assert lost.quarantined and (lost.status, lost.lease_losses, lost.worker_id) == (
        JobStatus.FAILED,
        2,
        "worker-b",
    )
    record = await repo.get_job(JOB)
    assert record is not None
    assert (record.status, record.error_category, record.worker_id) == (
        JobStatus.FAILED,
        ErrorCategory.QUARANTINED,
        "worker-b",
    )
    assert record.finished_at == T0 + timedelta(minutes=2)
    assert record.error_message is not None and "quarantined" in record.error_message
    assert await repo.claim_job(JOB, claim_by("worker-c")) is None
    assert await repo.record_lost_lease(JOB, at=T0, max_losses=2) is None
    quarantined = await repo.finished_since(T0, limit=10, categories=[ErrorCategory.QUARANTINED])
    assert [r.job_id for r in quarantined] == [JOB]
    assert await repo.finished_since(T0, limit=10, categories=[ErrorCategory.TIMEOUT]) == []


async def test_a_lost_lease_needs_the_job_running_at_that_attempt(repo: Repository) -> None:
    """A queued job has no lease to lose; with `attempt`, a run that moved on is left alone."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    assert await repo.record_lost_lease(JOB, at=T0, max_losses=3) is None
    assert await repo.claim_job(JOB, claim_by("worker-a")) == 1
    before = await repo.get_job(JOB)
    assert await repo.record_lost_lease(JOB, at=T0, max_losses=3, attempt=2) is None
    assert await repo.get_job(JOB) == before
    lost = await repo.record_lost_lease(JOB, at=T0, max_losses=3, attempt=1)
    assert lost is not None and lost.attempt == 2
    assert await repo.record_lost_lease("normalize:nope:1", at=T0, max_losses=3) is None


async def test_a_waiting_job_taken_without_a_run_of_ours_is_failed_with_its_evidence(
    repo: Repository,
) -> None:
    """fail_waiting_job fails queued or interrupted jobs only, keeping category, message and result."""
    await repo.create_jobs([make_job("normalize:appt-1"), make_job("normalize:appt-2")])
    evidence = {"foreign_result": {"format": "pickle", "function": "normalize_appointment"}}
    taken = await repo.fail_waiting_job(
        JOB,
        at=T0 + timedelta(seconds=3),
        category=ErrorCategory.FOREIGN_CONSUMER,
        message="taken by a stranger",
        result=evidence,
    )
    assert taken is True
    record = await repo.get_job(JOB)
    assert record is not None
    assert (record.status, record.error_category, record.error_message, record.result) == (
        JobStatus.FAILED,
        ErrorCategory.FOREIGN_CONSUMER,
        "taken by a stranger",
        evidence,
    )
    assert record.finished_at == T0 + timedelta(seconds=3)
    again = await repo.fail_waiting_job(JOB, at=T0, category=ErrorCategory.PERMANENT, message="x")
    assert again is False  # terminal: nothing changes

    running = "normalize:appt-2:1"
    assert await repo.claim_job(running, claim_by("worker-a")) == 1
    assert await repo.fail_waiting_job(running, at=T0, category=ErrorCategory.PERMANENT, message="x") is False
    assert await repo.finish_job(running, 1, outcome(JobStatus.INTERRUPTED, interruption=True)) is True
    assert await repo.fail_waiting_job(running, at=T0, category=ErrorCategory.PERMANENT, message="x") is True


async def test_a_later_generation_supersedes_the_earlier_ones(repo: Repository) -> None:
    """A retry's generation 2 marks the failed generation 1 as replaced (its status stays); generation 3
    ends generation 2, whose run is in flight, as superseded: it can never be claimed, heartbeaten
    or finished again, and nothing superseded is reconciled."""
    key = "normalize:appt-1"
    await repo.create_jobs([make_job(key, 1), make_job("normalize:appt-2", 1)])
    assert await repo.claim_job(f"{key}:1", claim_by("worker-a")) == 1
    failed = outcome(JobStatus.FAILED, error_category=ErrorCategory.PERMANENT, app_failure=True)
    assert await repo.finish_job(f"{key}:1", 1, failed) is True

    def generation(n: int) -> JobEnvelope:
        return JobEnvelope(task="normalize_appointment", logical_key=key, generation=n)

    async def enqueue(n: int, at: datetime) -> int:
        return await repo.create_queued_jobs(
            [generation(n)], "normalization", enqueued_at=at, progress=JobProgress()
        )

    assert await enqueue(2, T0 + timedelta(minutes=1)) == 1
    first = await repo.get_job(f"{key}:1")
    assert first is not None and (first.status, first.superseded_by) == (JobStatus.FAILED, f"{key}:2")
    assert await repo.claim_job(f"{key}:2", claim_by("worker-a")) == 1  # a run of gen 2 in flight

    at = T0 + timedelta(minutes=5)
    assert await enqueue(3, at) == 1
    second, third = await repo.get_job(f"{key}:2"), await repo.get_job(f"{key}:3")
    assert second is not None and (second.status, second.superseded_by) == (JobStatus.SUPERSEDED, f"{key}:3")
    assert second.finished_at == at
    assert third is not None and (third.status, third.superseded_by) == (JobStatus.QUEUED, None)
    assert await repo.get_job(f"{key}:1") == first  # replaced once, by generation 2
    assert await repo.heartbeat_job(f"{key}:2", 1, at=at) is False  # the run in flight is fenced off
    assert await repo.finish_job(f"{key}:2", 1, outcome(JobStatus.SUCCEEDED)) is False
    assert await repo.claim_job(f"{key}:2", claim_by("worker-b")) is None
    assert await repo.record_lost_lease(f"{key}:2", at=at, max_losses=3) is None
    other = await repo.get_job("normalize:appt-2:1")
    assert other is not None and (other.status, other.superseded_by) == (JobStatus.QUEUED, None)
    stale = await repo.find_stale_jobs(running_heartbeat_before=at, waiting_enqueued_before=at, limit=10)
    assert [r.job_id for r in stale] == ["normalize:appt-2:1"]  # nothing superseded is ever reconciled
    assert [r.job_id for r in await repo.finished_since(T0, limit=10)] == [f"{key}:1"]  # not a finish
    latest = await repo.latest_job(key)
    assert latest is not None and latest.job_id == f"{key}:3"


async def test_create_jobs_supersedes_as_create_queued_jobs_does(repo: Repository) -> None:
    """A later generation written as a whole record supersedes the earlier ones too."""
    key = "normalize:appt-1"
    await repo.create_jobs([make_job(key, 1)])
    await repo.create_jobs([make_job(key, 2, enqueued_at=T0 + timedelta(seconds=9))])
    first = await repo.get_job(f"{key}:1")
    assert first is not None and (first.status, first.superseded_by) == (JobStatus.SUPERSEDED, f"{key}:2")
    assert first.finished_at == T0 + timedelta(seconds=9)
    assert await repo.create_jobs([make_job(key, 2)]) == 0  # replayed: nothing changes
    again = await repo.get_job(f"{key}:1")
    assert again == first


async def test_known_workers_are_remembered_by_the_store(repo: Repository) -> None:
    """A registered worker is known whatever Redis forgot; registering again keeps one record."""

    def registration(worker_id: str, seen: int) -> WorkerRegistration:
        return WorkerRegistration(
            worker_id=worker_id,
            version="1.2.3",
            hostname="host-a",
            queue="jobs:v1:normalization",
            started_at=T0,
            seen_at=T0 + timedelta(hours=seen),
        )

    await repo.register_worker(registration("host-a:1:aaaaaa", 0))
    await repo.register_worker(registration("host-a:2:bbbbbb", 0))
    await repo.register_worker(registration("host-a:1:aaaaaa", 1))
    assert await repo.known_workers({"host-a:1:aaaaaa", "stranger", "1"}) == {"host-a:1:aaaaaa"}
    assert await repo.known_workers([]) == set()
    many = [f"w{n}" for n in range(1200)] + ["host-a:2:bbbbbb"]
    assert await repo.known_workers(many) == {"host-a:2:bbbbbb"}


async def test_interrupted_and_transient_outcomes_keep_the_job_claimable(repo: Repository) -> None:
    """Outcomes that mean "will run again" leave the job claimable; only then is it claimed."""
    await repo.create_jobs([make_job("normalize:appt-1")])
    assert await repo.claim_job(JOB, claim_by("worker-a")) == 1
    retry = JobOutcome(
        status=JobStatus.QUEUED,
        finished_at=T0,
        duration_ms=1,
        error_category=ErrorCategory.TIMEOUT,
        error_message="run exceeded the job timeout of 2 s",
        app_failure=True,
    )
    assert await repo.finish_job(JOB, 1, retry) is True
    record = await repo.get_job(JOB)
    assert record is not None and (record.error_category, record.app_failures) == (ErrorCategory.TIMEOUT, 1)
    assert await repo.claim_job(JOB, claim_by("worker-b")) == 2


async def test_single_appointments_are_retimed_once(repo: Repository) -> None:
    """The one-off time correction lists appointments created one by one (never a batch's), in id
    order, and moves each once: a second pass finds and changes nothing."""
    singles = [make_appointment(n, batch_id=None, id=f"single-{n}") for n in (2, 1, 3)]
    await repo.insert_appointments([*singles, make_appointment(9)])  # appt-9 belongs to batch-1
    page = await repo.single_appointments_to_retime(after_id=None, limit=2)
    assert [a.id for a in page] == ["single-1", "single-2"]
    rest = await repo.single_appointments_to_retime(after_id="single-2", limit=10)
    assert [a.id for a in rest] == ["single-3"]
    moved_to = T0 + timedelta(hours=3)
    assert await repo.retime_appointments([("single-1", moved_to), ("single-3", moved_to)]) == 2
    assert await repo.retime_appointments([("single-1", T0)]) == 0  # already moved: never twice
    moved = await repo.get_appointment("single-1")
    assert moved is not None and moved.data_hora == moved_to
    assert [a.id for a in await repo.single_appointments_to_retime(after_id=None, limit=10)] == ["single-2"]
    assert await repo.retime_appointments([]) == 0


async def test_rules_fallback_addresses_are_listed_in_pages(repo: Repository) -> None:
    """Only appointments whose stored address is the rules' fallback are listed, with their reason,
    in id order after the last page; an address the LLM wrote later leaves the list."""
    appointments = [make_appointment(n, id=f"appt-{n}") for n in (1, 2, 3, 4)]
    await repo.insert_appointments(appointments)
    fallback = NORMALIZED_ADDRESS.model_copy(
        update={"source": AddressSource.RULES_FALLBACK, "fallback_reason": "breaker_open"}
    )
    results = [
        make_result(a.id, "batch:batch-1:0:1", 1).model_copy(
            update={"endereco_normalizado": fallback if a.id != "appt-2" else NORMALIZED_ADDRESS}
        )
        for a in appointments
    ]
    assert await repo.save_normalizations(results, job_id="batch:batch-1:0:1", attempt=1) == 4
    page = await repo.rules_fallback_appointments(after_id=None, limit=2)
    assert [a.id for a in page] == ["appt-1", "appt-3"]
    assert page[0].endereco_normalizado is not None
    assert page[0].endereco_normalizado.fallback_reason == "breaker_open"
    assert [a.id for a in await repo.rules_fallback_appointments(after_id="appt-3", limit=10)] == ["appt-4"]

    upgraded = [make_result("appt-3", "normalize:appt-3:1", 1)]  # the LLM's answer replaces it
    assert await repo.save_normalizations(upgraded, job_id="normalize:appt-3:1", attempt=1) == 1
    listed = await repo.rules_fallback_appointments(after_id=None, limit=10)
    assert [a.id for a in listed] == ["appt-1", "appt-4"]


async def test_a_fallback_address_is_settled_once_with_its_own_provenance(repo: Repository) -> None:
    """The re-normalization's write: the LLM's address replaces a fallback, with the kind's result
    and provenance next to the normalization's own; an address that is no longer a fallback is never
    overwritten; a kept fallback records the result, which takes it off the kind's list."""
    appointments = [make_appointment(n, id=f"appt-{n}") for n in (1, 2, 3)]
    await repo.insert_appointments(appointments)
    fallback = NORMALIZED_ADDRESS.model_copy(
        update={"source": AddressSource.RULES_FALLBACK, "fallback_reason": "server_error"}
    )
    results = [make_result(a.id, "batch:batch-1:0:1", 1).model_copy(update={"endereco_normalizado": fallback})
               for a in appointments]  # fmt: skip
    assert await repo.save_normalizations(results, job_id="batch:batch-1:0:1", attempt=1) == 3
    kind = "renormalize_addresses"
    provenance = Provenance(
        job_id="cron:renormalize:1", attempt=1, worker_id="w-r", version="v2",
        started_at=T0, finished_at=T0 + timedelta(seconds=1), duration_ms=1000,
    )  # fmt: skip
    by_llm = NORMALIZED_ADDRESS.model_copy(update={"source": AddressSource.LLM, "bairro": "Centro Novo"})
    replaced = KindResult(data={"outcome": "replaced"}, provenance=provenance)
    assert await repo.settle_fallback_address("appt-1", kind, replaced, by_llm)
    assert not await repo.settle_fallback_address("appt-1", kind, replaced, by_llm)  # no longer a fallback
    kept = KindResult(data={"outcome": "kept (invented_cep)"}, provenance=provenance)
    assert await repo.settle_fallback_address("appt-2", kind, kept, None)

    first = await repo.get_appointment("appt-1")
    assert first is not None and first.endereco_normalizado is not None
    assert (first.endereco_normalizado.source, first.endereco_normalizado.bairro) == (
        AddressSource.LLM,
        "Centro Novo",
    )
    assert first.results.keys() == {NORMALIZATION, kind} and first.results[kind] == replaced
    assert (
        first.provenance is not None and first.provenance.job_id == "batch:batch-1:0:1"
    )  # the normalization's
    assert first.documento_normalizado == results[0].documento_normalizado
    second = await repo.get_appointment("appt-2")
    assert second is not None and second.endereco_normalizado == fallback and second.results[kind] == kept
    assert second.results[NORMALIZATION] == results[1].kind_result()  # untouched by the kept answer
    everyone = await repo.rules_fallback_appointments(after_id=None, limit=10)
    assert [a.id for a in everyone] == ["appt-2", "appt-3"]
    todo = await repo.rules_fallback_appointments(after_id=None, limit=10, without_result=kind)
    assert [a.id for a in todo] == ["appt-3"]
    with pytest.raises(ValueError, match="identifier"):
        await repo.settle_fallback_address("appt-3", "a.b", kept, None)
