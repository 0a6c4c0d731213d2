"""The API's contract for bad input and access: clear errors, nothing echoed, nothing lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.local_redis import RedisServer
from src.api.main import create_app
from src.domain.jobs import queue_key
from src.errors import StoreUnavailable
from tests.conftest import app_client, make_settings

pytestmark = pytest.mark.integration

GOOD = {
    "paciente": "Ana Pereira",
    "documento": "529.982.247-25",
    "endereco": "Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
    "data_hora": "2026-12-01T10:00:00-03:00",
}


@pytest.fixture
async def small_api(
    redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with tiny upload and row limits."""
    settings = make_settings(redis_server.url, tmp_path, max_upload_bytes=4096, max_import_rows=5)
    async with app_client(settings) as client:
        yield client


def csv_rows(n: int) -> bytes:
    lines = ["paciente,documento,endereco,data_hora"]
    lines += [f"P{i},52998224725,Rua A {i},01/12/2026 10:00" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


async def test_missing_token_is_401_and_wrong_token_is_403(api: httpx.AsyncClient) -> None:
    """Every /api/v1 endpoint needs the bearer token; the answer reveals nothing else."""
    no_token = await api.get("/api/v1/appointments/x", headers={"Authorization": ""})
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"] == "Bearer"
    assert no_token.headers["content-type"] == "application/problem+json"
    assert {k: no_token.json()[k] for k in ("type", "status", "detail", "category")} == {
        "type": "/problems/unauthorized",
        "status": 401,
        "detail": "missing bearer token",
        "category": "policy",
    }
    wrong = await api.post("/api/v1/appointments", json=GOOD, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["detail"] == "invalid token"
    assert wrong.json()["type"] == "/problems/forbidden" and "Ana" not in wrong.text


async def test_rejected_request_enqueues_nothing(api: httpx.AsyncClient, arq_pool: ArqRedis) -> None:
    """A request refused for auth or validation leaves the queue empty."""
    await api.post("/api/v1/appointments", json=GOOD, headers={"Authorization": "Bearer nope"})
    await api.post("/api/v1/appointments", json={**GOOD, "data_hora": "not a date"})
    assert await arq_pool.zcard(queue_key("normalization")) == 0


async def test_validation_errors_do_not_echo_personal_data(api: httpx.AsyncClient) -> None:
    """A 422 names the field and the problem, never the submitted value."""
    response = await api.post(
        "/api/v1/appointments", json={**GOOD, "email": "ana.pereira@@example", "data_hora": "Ana-2026"}
    )
    assert response.status_code == 422
    fields = {tuple(err["loc"]) for err in response.json()["errors"]}
    assert response.json()["detail"] == "2 invalid values: body.data_hora, body.email"
    assert ("body", "email") in fields and ("body", "data_hora") in fields
    assert "ana.pereira" not in response.text and "Ana-2026" not in response.text


async def test_request_id_is_echoed_or_created(api: httpx.AsyncClient) -> None:
    """A well-formed X-Request-ID comes back as sent; a missing or odd one is replaced by a fresh id."""
    sent = await api.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert sent.headers["x-request-id"] == "trace-123"
    odd = await api.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert odd.headers["x-request-id"] != "bad id with spaces" and len(odd.headers["x-request-id"]) == 32


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    """/healthz answers without auth; /readyz reports Redis and the store as ok."""
    assert (await api.get("/healthz", headers={"Authorization": ""})).json() == {"status": "ok"}
    ready = await api.get("/readyz", headers={"Authorization": ""})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "redis": "ok", "store": "ok"}


async def test_readiness_follows_the_store_not_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    """With Redis unreachable the API still accepts work (creates are stored and deferred): /readyz
    is 200 naming Redis unavailable, and the queue health is degraded naming it. With the store
    unreachable, /readyz is 503 and the health is down."""
    settings = make_settings("redis://127.0.0.1:1/0", tmp_path, redis_pool_timeout=1.0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"Authorization": "Bearer test-token"},
        ) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json() == {
                "status": "ready",
                "redis": "unavailable",
                "store": "ok",
            }
            created = await client.post(
                "/api/v1/appointments",
                json={
                    "paciente": "A",
                    "documento": "52998224725",
                    "endereco": "Rua A 1",
                    "data_hora": "2026-12-01T10:00",
                },
            )
            assert created.status_code == 201 and created.json()["enqueue_status"] == "deferred"
            health = (await client.get("/api/v1/queue/health")).json()
            assert health["status"] == "degraded"
            redis_check = next(c for c in health["checks"] if c["name"] == "redis")
            assert redis_check["level"] == "degraded" and "unreachable" in redis_check["message"]
            assert (await client.get("/healthz")).status_code == 200
            real = app.state.repository
            app.state.repository = UnreachableStore()  # the store goes away
            try:
                down = await client.get("/readyz")
                assert down.status_code == 503 and down.json()["store"] == "unavailable"
            finally:
                app.state.repository = real


class UnreachableStore:
    """A store that no longer answers (what `/readyz` asks of it: a ping)."""

    async def ping(self) -> None:
        raise StoreUnavailable("the store is gone")


async def test_oversized_upload_is_413_before_reading(small_api: httpx.AsyncClient) -> None:
    """A body over MAX_UPLOAD_BYTES is refused with 413 and a clear message."""
    response = await small_api.post(
        "/api/v1/appointments/import", files={"file": ("big.csv", b"x" * 10_000, "text/csv")}
    )
    assert response.status_code == 413
    assert "4096 byte limit" in response.json()["detail"]


async def test_too_many_rows_is_413(small_api: httpx.AsyncClient) -> None:
    """A spreadsheet over MAX_IMPORT_ROWS is refused with 413 and nothing is stored."""
    response = await small_api.post(
        "/api/v1/appointments/import", files={"file": ("a.csv", csv_rows(6), "text/csv")}
    )
    assert response.status_code == 413
    assert response.json()["category"] == "permanent"


async def test_non_tabular_upload_is_422(small_api: httpx.AsyncClient) -> None:
    """A file that is not a spreadsheet, or lacks required columns, is 422 with the reason."""
    pdf = await small_api.post(
        "/api/v1/appointments/import", files={"file": ("a.pdf", b"%PDF-1.7 binary", "application/pdf")}
    )
    assert pdf.status_code == 422 and pdf.json()["detail"]
    missing = await small_api.post(
        "/api/v1/appointments/import", files={"file": ("a.csv", b"paciente,documento\nA,1\n", "text/csv")}
    )
    assert missing.status_code == 422
    assert "endereco" in missing.json()["detail"] and "data_hora" in missing.json()["detail"]


async def test_row_errors_are_reported_and_valid_rows_accepted(small_api: httpx.AsyncClient) -> None:
    """Rows with problems come back as row-level errors; the rest are accepted in the batch."""
    content = csv_rows(3) + b"P9,52998224725,Rua B,31/02/2026 25:00\n"
    response = await small_api.post(
        "/api/v1/appointments/import", files={"file": ("a.csv", content, "text/csv")}
    )
    assert response.status_code == 202
    report = response.json()
    assert report["accepted"] == 3 and report["rejected"] == 1
    assert report["errors"][0]["row"] == 5 and report["errors"][0]["column"] == "data_hora"
    batch = (await small_api.get(f"/api/v1/batches/{report['batch_id']}")).json()
    assert (batch["total"], batch["pending"], batch["rejected"]) == (3, 3, 1)


async def test_appointment_is_kept_when_redis_is_down(redis_server: RedisServer, tmp_path: Path) -> None:
    """Redis unreachable: the appointment is still stored (201, enqueue deferred) and its job stays queued."""
    settings = make_settings("redis://127.0.0.1:1/0", tmp_path, redis_pool_timeout=1.0)
    async with app_client(settings) as client:
        created = await client.post("/api/v1/appointments", json=GOOD)
        assert created.status_code == 201
        assert created.json()["enqueue_status"] == "deferred"
        stored = await client.get(f"/api/v1/appointments/{created.json()['appointment_id']}")
        assert stored.status_code == 200 and stored.json()["normalization_status"] == "pending"
        repository = client._transport.app.state.repository  # type: ignore[attr-defined]
        record = await repository.get_job(created.json()["job_id"])
        assert record is not None and record.status == "queued"
