"""Input rules of the API (issue: input and data correctness): one time rule for every path, no 500
on odd text, limits per field, 413 for any oversized body, finished progress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.local_redis import RedisServer
from src.config import Settings
from tests.conftest import RunBurstWorker, app_client, make_settings

pytestmark = pytest.mark.integration

BODY = {
    "paciente": "Lia Souza",
    "documento": "529.982.247-25",
    "endereco": "Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
    "data_hora": "2026-12-10T14:30:00",
}


def csv_of(*rows: str) -> bytes:
    return ("paciente,documento,endereco,data_hora\n" + "\n".join(rows) + "\n").encode()


async def stored_times(api: httpx.AsyncClient, appointment_ids: list[str]) -> list[datetime]:
    repository = api._transport.app.state.repository  # type: ignore[attr-defined]
    times = []
    for appointment_id in appointment_ids:
        appointment = await repository.get_appointment(appointment_id)
        assert appointment is not None
        times.append(appointment.data_hora.astimezone(UTC))
    return times


async def test_a_time_without_a_zone_means_the_same_in_json_and_in_a_spreadsheet(
    api: httpx.AsyncClient,
) -> None:
    """14:30 with no zone is 14:30 in America/Sao_Paulo (17:30 UTC) whether it comes as JSON or as
    a CSV row; the API answers it with its offset; a time with an offset is kept as given."""
    created = (await api.post("/api/v1/appointments", json=BODY)).json()
    with_offset = (
        await api.post("/api/v1/appointments", json={**BODY, "data_hora": "2026-12-10T14:30:00Z"})
    ).json()
    report = (
        await api.post(
            "/api/v1/appointments/import",
            files={
                "file": ("a.csv", csv_of('Lia,52998224725,"Rua A 1, Centro",10/12/2026 14:30'), "text/csv")
            },
        )
    ).json()
    imported = f"{report['batch_id']}-000000"
    json_time, csv_time, kept = await stored_times(
        api, [created["appointment_id"], imported, with_offset["appointment_id"]]
    )
    assert json_time == csv_time == datetime(2026, 12, 10, 17, 30, tzinfo=UTC)
    assert kept == datetime(2026, 12, 10, 14, 30, tzinfo=UTC)
    shown = (await api.get(f"/api/v1/appointments/{created['appointment_id']}")).json()
    assert shown["data_hora"] == "2026-12-10T14:30:00-03:00"


async def test_app_timezone_sets_the_rule(
    redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis
) -> None:
    """With APP_TIMEZONE=UTC the same zone-less time is 14:30 UTC, and is answered in UTC."""
    settings = make_settings(redis_server.url, tmp_path, app_timezone="UTC")
    async with app_client(settings) as api:
        created = (await api.post("/api/v1/appointments", json=BODY)).json()
        (stored,) = await stored_times(api, [created["appointment_id"]])
        assert stored == datetime(2026, 12, 10, 14, 30, tzinfo=UTC)
        shown = (await api.get(f"/api/v1/appointments/{created['appointment_id']}")).json()
        assert shown["data_hora"] in ("2026-12-10T14:30:00Z", "2026-12-10T14:30:00+00:00")


def test_an_unknown_app_timezone_is_refused_naming_it() -> None:
    """A misspelt zone stops the process with one line that names the variable."""
    with pytest.raises(ValueError, match="APP_TIMEZONE 'America/Sao_Paolo' is not an IANA time zone"):
        Settings(_env_file=None, app_timezone="America/Sao_Paolo")  # type: ignore[call-arg]


@pytest.mark.parametrize("field", ["paciente", "documento", "endereco", "telefone", "email"])
async def test_a_lone_surrogate_is_422_naming_the_field_and_nothing_is_stored(
    api: httpx.AsyncClient, field: str
) -> None:
    """`"\\ud800"` in a JSON string cannot be stored as text: 422 naming the field, never 500."""
    before = await count_appointments(api)
    raw = {**BODY, field: "x"}
    text = httpx.Request("POST", "/", json=raw).content.decode().replace('"x"', '"a\\ud800b"')
    response = await api.post(
        "/api/v1/appointments", content=text.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", field]
    assert "surrogate" in error["msg"] or field == "email"
    assert await count_appointments(api) == before


async def count_appointments(api: httpx.AsyncClient) -> int:
    repository = api._transport.app.state.repository  # type: ignore[attr-defined]
    rows: Any = await repository._run(
        lambda conn: conn.execute("SELECT count(*) FROM appointments").fetchone()
    )
    return int(rows[0])


async def test_fields_over_their_limit_are_422_naming_the_field(
    redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis
) -> None:
    """A 10 MB endereco and a field over a configured limit are refused, naming the field and its
    limit; nothing is stored. In a spreadsheet, such a row is rejected and the others kept."""
    settings = make_settings(redis_server.url, tmp_path, max_paciente_chars=10)
    async with app_client(settings) as api:
        huge = await api.post("/api/v1/appointments", json={**BODY, "endereco": "R" * 10_000_000})
        assert huge.status_code == 422
        assert (huge.json()["field"], huge.json()["max_chars"]) == ("endereco", 500)
        assert "endereco is 10000000 characters long, over its limit of 500" in huge.json()["detail"]
        long_name = await api.post("/api/v1/appointments", json={**BODY, "paciente": "Maria Aparecida"})
        assert long_name.status_code == 422 and long_name.json()["field"] == "paciente"
        assert await count_appointments(api) == 0
        ok = await api.post("/api/v1/appointments", json={**BODY, "paciente": "Maria"})
        assert ok.status_code == 201
        rows = csv_of(
            "Ana,52998224725,Rua A 1,01/12/2026 10:00", "Maria Aparecida,52998224725,Rua B 2,01/12/2026 11:00"
        )
        report = (
            await api.post("/api/v1/appointments/import", files={"file": ("a.csv", rows, "text/csv")})
        ).json()
        assert (report["accepted"], report["rejected"]) == (1, 1)
        error = report["errors"][0]
        assert error["column"] == "paciente" and "over its limit of 10" in error["message"]


async def test_a_chunked_body_over_the_limit_is_413(
    redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis
) -> None:
    """A body sent without Content-Length (chunked) that grows past MAX_UPLOAD_BYTES is 413, as a
    declared one is, for a JSON create and for an upload alike; one under the limit goes through."""
    settings = make_settings(redis_server.url, tmp_path, max_upload_bytes=4096)
    async with app_client(settings) as api:

        async def chunks(head: bytes, total: int) -> AsyncIterator[bytes]:
            yield head
            sent = 0
            while sent < total:
                yield b" " * 1024
                sent += 1024

        part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\npaciente'
        for path, head, headers in (
            ("/api/v1/appointments", b'{"paciente": "', {"Content-Type": "application/json"}),
            ("/api/v1/appointments/import", part, {"Content-Type": "multipart/form-data; boundary=x"}),
        ):
            response = await api.post(path, content=chunks(head, 64 * 1024), headers=headers)
            assert response.status_code == 413, (path, response.text)
            assert "4096 byte limit" in response.json()["detail"]
        assert await count_appointments(api) == 0  # no part of a refused body was taken for a whole one
        assert (await api.get("/api/v1/batches")).json()["items"] == []

        async def small_json() -> AsyncIterator[bytes]:
            yield httpx.Request("POST", "/", json=BODY).content

        accepted = await api.post(
            "/api/v1/appointments", content=small_json(), headers={"Content-Type": "application/json"}
        )
        assert accepted.status_code == 201, accepted.text


async def test_a_finished_single_appointment_job_reports_full_progress(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """Done means 1 of 1, not 0 of 1."""
    created = (await api.post("/api/v1/appointments", json=BODY)).json()
    await run_burst_worker()
    job = (await api.get(f"/api/v1/queue/job/{created['job_id']}")).json()
    assert job["status"] == "succeeded"
    assert (job["progress"]["done"], job["progress"]["total"]) == (1, 1)
