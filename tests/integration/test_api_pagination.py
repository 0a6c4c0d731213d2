"""Cursor pagination on the lists and `Location` on 201 and 202, against a real redis-server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.constants import result_key_prefix

pytestmark = pytest.mark.integration

BODY = {
    "paciente": "Ana",
    "documento": "52998224725",
    "endereco": "Rua A 1",
    "data_hora": "2026-12-01T10:00Z",
}
CSV = b"paciente,documento,endereco,data_hora\nAna,52998224725,Rua A 1,01/12/2026 10:00\n"


async def pages(api: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a list, following next_cursor until it is null."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = await api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        found.append(response.json())
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


async def test_jobs_are_paged_by_cursor_without_repeats_when_new_jobs_arrive(api: httpx.AsyncClient) -> None:
    """GET /queue/jobs answers {items, next_cursor, total}; following the cursors lists every job once,
    newest first, even when jobs are created between two pages; a status filter is kept."""
    ids = [(await api.post("/api/v1/appointments", json=BODY)).json()["job_id"] for _ in range(7)]
    first = (await api.get("/api/v1/queue/jobs", params={"limit": 3})).json()
    assert set(first) == {"items", "next_cursor", "total"} and first["total"] == 7
    assert [j["job_id"] for j in first["items"]] == ids[::-1][:3]
    late = (await api.post("/api/v1/appointments", json=BODY)).json()["job_id"]  # arrives at the head
    rest = await pages(api, "/api/v1/queue/jobs", limit=3, cursor=first["next_cursor"])
    seen = [j["job_id"] for page in [first, *rest] for j in page["items"]]
    assert seen == ids[::-1] and late not in seen
    assert [len(p["items"]) for p in rest] == [3, 1] and rest[-1]["total"] == 8
    queued = await pages(api, "/api/v1/queue/jobs", status="queued", limit=5)
    assert sum(len(p["items"]) for p in queued) == 8 and queued[0]["total"] == 8
    assert (await api.get("/api/v1/queue/jobs", params={"status": "failed"})).json() == {
        "items": [], "next_cursor": None, "total": 0,
    }  # fmt: skip


async def test_a_wrong_cursor_is_a_clear_422(api: httpx.AsyncClient) -> None:
    """A cursor that does not decode, belongs to another list, or was made with another filter is a
    422 problem saying which; nothing is listed from a wrong place."""
    for _ in range(3):
        await api.post("/api/v1/appointments", json=BODY)
        await api.post("/api/v1/appointments/import", files={"file": ("a.csv", CSV, "text/csv")})
    jobs_cursor = (await api.get("/api/v1/queue/jobs", params={"limit": 1})).json()["next_cursor"]
    batches_cursor = (await api.get("/api/v1/batches", params={"limit": 1})).json()["next_cursor"]
    garbage = await api.get("/api/v1/queue/jobs", params={"cursor": "%%%not base64"})
    assert garbage.status_code == 422 and garbage.headers["content-type"] == "application/problem+json"
    assert (
        garbage.json()["type"] == "/problems/invalid-input" and "invalid cursor" in garbage.json()["detail"]
    )
    other_list = await api.get("/api/v1/queue/jobs", params={"cursor": batches_cursor})
    assert other_list.status_code == 422 and "another list (batches)" in other_list.json()["detail"]
    other_filter = await api.get("/api/v1/queue/jobs", params={"cursor": jobs_cursor, "status": "queued"})
    assert other_filter.status_code == 422 and "other filters" in other_filter.json()["detail"]


async def test_batches_queues_and_failed_are_paged(api: httpx.AsyncClient) -> None:
    """Batches (newest first), queues (by name) and failed jobs answer the same page shape."""
    batch_ids = []
    for _ in range(5):
        response = await api.post("/api/v1/appointments/import", files={"file": ("a.csv", CSV, "text/csv")})
        batch_ids.append(response.json()["batch_id"])
    batches = await pages(api, "/api/v1/batches", limit=2)
    assert [b["batch_id"] for p in batches for b in p["items"]] == batch_ids[::-1]
    assert [p["total"] for p in batches] == [5, 5, 5]
    queues = await pages(api, "/api/v1/queue/info", limit=1)
    assert [q["name"] for p in queues for q in p["items"]] == ["maintenance", "normalization"]
    failed = (await api.get("/api/v1/queue/failed")).json()
    assert failed["items"] == [] and failed["next_cursor"] is None and failed["total"] == 0
    assert "by_category" in failed


async def test_location_names_what_was_created_or_accepted(
    api: httpx.AsyncClient, arq_pool: ArqRedis
) -> None:
    """201 on a create names the appointment, 202 on an import its batch, 202 on a retry the new
    job: each Location answers 200."""
    created = await api.post("/api/v1/appointments", json=BODY)
    assert created.headers["location"] == f"/api/v1/appointments/{created.json()['appointment_id']}"
    assert (await api.get(created.headers["location"])).status_code == 200
    again = await api.post("/api/v1/appointments", json=BODY, headers={"Idempotency-Key": "k1"})
    repeat = await api.post("/api/v1/appointments", json=BODY, headers={"Idempotency-Key": "k1"})
    assert again.headers["location"] == repeat.headers["location"]
    imported = await api.post("/api/v1/appointments/import", files={"file": ("a.csv", CSV, "text/csv")})
    assert imported.headers["location"] == f"/api/v1/batches/{imported.json()['batch_id']}"
    assert (await api.get(imported.headers["location"])).json()["total"] == 1
    job_id = created.json()["job_id"]
    assert (await api.post(f"/api/v1/queue/job/{job_id}/cancel")).status_code == 200
    await arq_pool.delete(result_key_prefix + job_id)
    retried = await api.post(f"/api/v1/queue/job/{job_id}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.headers["location"] == f"/api/v1/queue/job/{retried.json()['job_id']}"
    assert (await api.get(retried.headers["location"])).json()["status"] == "queued"
