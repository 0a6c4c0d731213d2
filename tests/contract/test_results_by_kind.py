"""Results by (appointment, job kind), each with its own provenance, against every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from src.application.ports import Repository
from src.domain.appointments import NORMALIZATION, BatchCounts, KindResult, NormalizationStatus
from tests.contract.conftest import (
    NORMALIZED_ADDRESS,
    NORMALIZED_DOCUMENT,
    T0,
    make_appointment,
    make_provenance,
    make_result,
)

NORMALIZE = "normalize:appt-1:1"
AUDIT = "audit"  # a second job kind, as a new job type would add
AUDIT_JOB = "audit:appt-1:1"


def audit_result(attempt: int, verdict: str = "ok", worker_id: str = "worker-x") -> KindResult:
    provenance = make_provenance(AUDIT_JOB, attempt, worker_id).model_copy(
        update={
            "version": "9.9.9",
            "finished_at": T0 + timedelta(seconds=attempt),
            "duration_ms": 1000 * attempt,
        }
    )
    return KindResult(status="done", data={"verdict": verdict, "score": 0.75}, provenance=provenance)


async def test_two_kinds_keep_their_own_results_and_provenance(repo: Repository) -> None:
    """The normalization and a second kind on one appointment: each reads back with its own
    provenance, and writing either leaves the other exactly as it was."""
    await repo.insert_appointments([make_appointment(1)])
    normalization = make_result("appt-1", NORMALIZE, 1)
    assert await repo.save_normalizations([normalization], job_id=NORMALIZE, attempt=1) == 1
    audit = audit_result(1)
    assert await repo.save_results(AUDIT, {"appt-1": audit}, job_id=AUDIT_JOB, attempt=1) == 1

    both = await repo.get_appointment("appt-1")
    assert both is not None and both.results == {NORMALIZATION: normalization.kind_result(), AUDIT: audit}
    assert both.provenance == normalization.provenance  # the normalization's own, as before
    assert (both.documento_normalizado, both.endereco_normalizado) == (
        NORMALIZED_DOCUMENT,
        NORMALIZED_ADDRESS,
    )
    assert both.normalization_status is NormalizationStatus.NORMALIZED

    rerun = "normalize:appt-1:2"  # a later generation of the normalization rewrites its kind only
    again = make_result("appt-1", rerun, 1, NormalizationStatus.FAILED, worker_id="worker-b")
    assert await repo.save_normalizations([again], job_id=rerun, attempt=1) == 1
    after = await repo.get_appointment("appt-1")
    assert after is not None and after.results == {NORMALIZATION: again.kind_result(), AUDIT: audit}
    assert after.normalization_status is NormalizationStatus.FAILED and after.endereco_normalizado is None

    second_audit = audit_result(2, verdict="redo")
    assert await repo.save_results(AUDIT, {"appt-1": second_audit}, job_id=AUDIT_JOB, attempt=2) == 1
    last = await repo.get_appointment("appt-1")
    assert last is not None and last.results == {NORMALIZATION: again.kind_result(), AUDIT: second_audit}


async def test_a_stale_attempt_is_fenced_per_kind(repo: Repository) -> None:
    """An older attempt of a job never overwrites a kind's result a newer attempt of it wrote; the
    fence is that kind's own provenance: the same stale attempt still writes a kind the newer one
    has not, and the normalization is fenced by the normalization's provenance alone."""
    await repo.insert_appointments([make_appointment(1)])
    assert await repo.save_results(AUDIT, {"appt-1": audit_result(3)}, job_id=AUDIT_JOB, attempt=3) == 1
    stale = audit_result(2, "stale")
    assert await repo.save_results(AUDIT, {"appt-1": stale}, job_id=AUDIT_JOB, attempt=2) == 0
    stored = await repo.get_appointment("appt-1")
    assert stored is not None and stored.results == {AUDIT: audit_result(3)}
    assert stored.provenance is None and stored.normalization_status is NormalizationStatus.PENDING

    assert await repo.save_results("review", {"appt-1": stale}, job_id=AUDIT_JOB, attempt=2) == 1
    normalization = make_result("appt-1", NORMALIZE, 2)
    assert await repo.save_normalizations([normalization], job_id=NORMALIZE, attempt=2) == 1
    older = [make_result("appt-1", NORMALIZE, 1, NormalizationStatus.FAILED)]
    assert await repo.save_normalizations(older, job_id=NORMALIZE, attempt=1) == 0
    last = await repo.get_appointment("appt-1")
    assert last is not None and last.results == {
        AUDIT: audit_result(3),
        "review": stale,
        NORMALIZATION: normalization.kind_result(),
    }


async def test_save_results_refuses_bad_input_and_skips_unknown_appointments(repo: Repository) -> None:
    """A provenance of another run, or a kind that is not an identifier, raises before anything is
    written; an unknown appointment is not counted and gains nothing."""
    await repo.insert_appointments([make_appointment(1)])
    with pytest.raises(ValueError, match="provenance"):
        await repo.save_results(AUDIT, {"appt-1": audit_result(1)}, job_id=AUDIT_JOB, attempt=2)
    with pytest.raises(ValueError, match="identifier"):
        await repo.save_results("a.b", {"appt-1": audit_result(1)}, job_id=AUDIT_JOB, attempt=1)
    written = await repo.save_results(
        AUDIT, {"appt-1": audit_result(1), "appt-404": audit_result(1)}, job_id=AUDIT_JOB, attempt=1
    )
    assert written == 1
    assert await repo.save_results(AUDIT, {}, job_id=AUDIT_JOB, attempt=1) == 0
    assert await repo.get_appointment("appt-404") is None
    stored = await repo.get_appointment("appt-1")
    assert stored is not None and stored.results == {AUDIT: audit_result(1)}


async def test_a_batch_is_counted_by_its_normalization_only(repo: Repository) -> None:
    """count_batch reads the normalization kind's statuses; another kind's results change nothing."""
    await repo.insert_appointments([make_appointment(n) for n in range(4)])
    job = "batch:batch-1:0:1"
    results = [make_result("appt-0", job, 1), make_result("appt-1", job, 1, NormalizationStatus.FAILED)]
    assert await repo.save_normalizations(results, job_id=job, attempt=1) == 2
    failed_audit = KindResult(status="failed", error="no", provenance=make_provenance("audit:b:1", 1))
    others = {f"appt-{n}": failed_audit for n in range(4)}
    assert await repo.save_results(AUDIT, others, job_id="audit:b:1", attempt=1) == 4
    assert await repo.count_batch("batch-1") == BatchCounts(total=4, normalized=1, failed=1, pending=2)


async def test_a_reinsert_never_adds_results_to_a_known_appointment(repo: Repository) -> None:
    """insert_appointments writes an appointment's results only with the appointment itself."""
    await repo.insert_appointments([make_appointment(1)])
    with_results = make_appointment(1, results={AUDIT: audit_result(1)})
    assert (
        await repo.insert_appointments([with_results, make_appointment(2, results={AUDIT: audit_result(1)})])
        == 1
    )
    first = await repo.get_appointment("appt-1")
    second = await repo.get_appointment("appt-2")
    assert first is not None and first.results == {}
    assert second is not None and second.results == {AUDIT: audit_result(1)}
