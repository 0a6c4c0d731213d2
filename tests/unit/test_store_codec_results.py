"""The SQLite codec's hand-assembled JSON (the write and read paths of results) equals the models'."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from src.domain.appointments import NORMALIZATION, KindResult, NormalizationStatus
from src.infrastructure import store_codec as codec
from tests.contract.conftest import T0, make_appointment, make_provenance, make_result

BRASILIA = timezone(timedelta(hours=-3))


def test_a_normalization_s_body_is_its_kind_result() -> None:
    """The body written for a normalization result reads back as `kind_result()`, its provenance in
    UTC, its error (quotes, accents) intact; the columns are its status and fencing fields."""
    normalized = make_result("appt-1", "normalize:appt-1:1", 2)
    failed = make_result("appt-2", "normalize:appt-2:1", 1, NormalizationStatus.FAILED).model_copy(
        update={"error": 'endereço: "cidade" \u00e9 obrigat\u00f3ria \\ \n'}
    )
    failed.provenance.started_at = datetime(2026, 3, 2, 9, 30, tzinfo=BRASILIA)
    for result in (normalized, failed):
        appointment_id, status, job_id, attempt, body = codec.normalization_write(result)
        assert (appointment_id, status, job_id, attempt) == (
            result.appointment_id,
            result.status.value,
            result.provenance.job_id,
            result.provenance.attempt,
        )
        assert KindResult.model_validate_json(body) == result.kind_result()
    stored = KindResult.model_validate_json(codec.normalization_write(failed)[4])
    assert stored.provenance.started_at.utcoffset() == timedelta(0)
    assert stored.provenance.started_at == datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


def test_an_appointment_row_reads_back_whatever_its_ids_hold() -> None:
    """appointment_from_row pastes the columns into the body's JSON: ids with quotes or backslashes,
    no batch, and results by kind all come back as written."""
    results = {
        NORMALIZATION: make_result('a"1\\', "normalize:x:1", 1).kind_result(),
        "audit": KindResult(status=None, data={"n": [1, 2]}, provenance=make_provenance("audit:x:1", 1)),
    }
    for appointment in (
        make_appointment(1, id='a"1\\', batch_id=None, seq=0, results=results),
        make_appointment(2, id="appt-2", batch_id='b"\\', seq=7, created_at=T0),
    ):
        row = codec.appointment_row(appointment)
        kinds = {kind: json.loads(body) for _, kind, *_, body in codec.result_rows(appointment)}
        results_json = json.dumps(kinds) if kinds else None
        assert codec.appointment_from_row((*row, results_json)) == appointment
