"""End to end: API → TaskService → real Redis → burst worker → store → API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.generate_sample import generate_rows, write_xlsx
from src.application.services.spreadsheet_parser import parse_spreadsheet
from tests.conftest import RunBurstWorker

pytestmark = pytest.mark.e2e

VALID_CPF = "529.982.247-25"


def appointment_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "paciente": "Maria da Silva",
        "documento": "52998224725",
        "endereco": "R. das Flores 123 ap 4, Centro, Sao Paulo - SP, 01310100",
        "data_hora": "2026-12-01T14:30:00-03:00",
    }
    body.update(overrides)
    return body


async def test_created_appointment_is_normalized_by_the_worker(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """POST /appointments → 201 with ids; after a worker run the appointment carries both normalizations."""
    created = await api.post(
        "/api/v1/appointments", json=appointment_body(), headers={"X-Request-ID": "req-e2e-1"}
    )
    assert created.status_code == 201, created.text
    data = created.json()
    assert data["job_id"] == f"normalize:{data['appointment_id']}:1"
    assert data["enqueue_status"] == "queued"

    queued = (await api.get(f"/api/v1/queue/job/{data['job_id']}")).json()
    assert queued["status"] == "queued" and queued["in_queue"] is True
    assert queued["request_id"] == "req-e2e-1"

    worker = await run_burst_worker()
    assert worker.jobs_complete == 1 and worker.jobs_failed == 0

    appt = (await api.get(f"/api/v1/appointments/{data['appointment_id']}")).json()
    assert appt["normalization_status"] == "normalized"
    assert appt["documento_normalizado"]["formatted"] == VALID_CPF
    assert appt["documento_normalizado"]["valid"] is True
    address = appt["endereco_normalizado"]
    assert address["cep"] == "01310-100" and address["uf"] == "SP" and address["source"] == "rules"
    assert appt["provenance"]["job_id"] == data["job_id"]
    assert appt["provenance"]["worker_id"] == worker.worker_id
    assert appt["provenance"]["version"] == "test-1"
    # the same normalization, as its kind's entry of `results` (the fields above are views of it)
    assert appt["results"] == {
        "normalization": {
            "status": "normalized",
            "data": {"documento_normalizado": appt["documento_normalizado"], "endereco_normalizado": address},
            "error": None,
            "provenance": appt["provenance"],
        }
    }

    job = (await api.get(f"/api/v1/queue/job/{data['job_id']}")).json()
    assert job["status"] == "succeeded" and job["attempt"] == 1
    assert job["worker_id"] == worker.worker_id and job["version"] == "test-1"
    assert job["duration_ms"] is not None and job["in_queue"] is False


async def test_duplicate_enqueue_reports_already_queued(
    api: httpx.AsyncClient, request: pytest.FixtureRequest
) -> None:
    """Enqueueing the same logical job twice reports `already_queued`, not an error."""
    created = (await api.post("/api/v1/appointments", json=appointment_body())).json()
    service = api._transport.app.state.appointments  # type: ignore[attr-defined]
    again = await service.enqueue_normalization(created["appointment_id"], request_id=None)
    assert again.status == "already_queued" and again.job_id == created["job_id"]


async def test_invalid_document_is_stored_invalid_with_reason(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """A repeated-digit CPF does not crash the job: it is stored as invalid with a reason."""
    created = (
        await api.post("/api/v1/appointments", json=appointment_body(documento="111.111.111-11"))
    ).json()
    worker = await run_burst_worker()
    assert worker.jobs_failed == 0
    appt = (await api.get(f"/api/v1/appointments/{created['appointment_id']}")).json()
    assert appt["normalization_status"] == "normalized"
    assert appt["documento_normalizado"]["valid"] is False
    assert appt["documento_normalizado"]["reason"]
    assert "111" not in appt["documento_normalizado"]["reason"]


async def test_import_spreadsheet_is_normalized_in_chunks(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker, tmp_path: Path
) -> None:
    """An .xlsx import → 202 with batch id and row errors; the worker drains every chunk; batch shows done."""
    sheet = tmp_path / "agenda.xlsx"
    write_xlsx(generate_rows(120, seed=7), sheet)
    response = await api.post(
        "/api/v1/appointments/import",
        files={
            "file": (
                "agenda.xlsx",
                sheet.read_bytes(),
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
        },
    )
    assert response.status_code == 202, response.text
    report = response.json()
    expected = parse_spreadsheet(sheet.read_bytes(), "agenda.xlsx", max_rows=1000)
    assert (report["accepted"], report["rejected"]) == (len(expected.rows), expected.rejected)
    assert report["accepted"] > 100 and len(report["job_ids"]) == -(-report["accepted"] // 50)
    for error in report["errors"]:
        assert error["row"] >= 2 and error["message"]

    before = (await api.get(f"/api/v1/batches/{report['batch_id']}")).json()
    assert before["total"] == report["accepted"] and before["pending"] == report["accepted"]

    await run_burst_worker()
    after = (await api.get(f"/api/v1/batches/{report['batch_id']}")).json()
    assert after["done"] == report["accepted"]
    assert after["pending"] == 0 and after["failed"] == 0 and after["finished"] is True
    for job_id in report["job_ids"]:
        job = (await api.get(f"/api/v1/queue/job/{job_id}")).json()
        assert job["status"] == "succeeded"
        assert job["progress"]["done"] == job["progress"]["total"]


async def test_unknown_ids_answer_404(api: httpx.AsyncClient) -> None:
    """Unknown appointment, batch and job ids are 404 with a message."""
    for path in ("/api/v1/appointments/nope", "/api/v1/batches/nope", "/api/v1/queue/job/normalize:nope:1"):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]
