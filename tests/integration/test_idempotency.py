"""Idempotency-Key on imports and creates, over two API processes: 100 concurrent imports make one
batch, 50 concurrent creates one appointment; a key reused with another payload is 422, one whose
first request still runs is 409."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.local_redis import RedisServer, free_port
from src.application.services import idempotent
from src.infrastructure.idempotency import RedisIdempotencyStore
from src.infrastructure.redis_pool import create_redis_pool
from tests.conftest import make_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "idem-token-0123456789"
CSV = (
    b"paciente,documento,endereco,data_hora\n"
    b"Ana,52998224725,Rua A 1,01/12/2026 10:00\nBia,111,Rua B 2,02/12/2026 11:00\n"
)


@pytest.fixture
def two_apis(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[str]]:
    """Two real uvicorn processes sharing Redis (its own database) and one SQLite store."""
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis_server.url.replace("/0", "/7"),
        "SQLITE_PATH": str(tmp_path / "shared.sqlite3"),
        "API_ACCESS_TOKEN": TOKEN,
        "APP_VERSION": "test-1",
        "RATE_LIMIT_PER_MINUTE": "0",
        "LOG_LEVEL": "WARNING",
    }
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "src.api.main:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for url in urls:
            while True:
                assert time.monotonic() < deadline, "API processes did not become ready"
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)


async def test_concurrent_submissions_with_one_key_create_one_batch(two_apis: list[str]) -> None:
    """100 concurrent imports with the same key, spread over two processes: one batch, one answer."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "upload-2026-12-01"}
    async with httpx.AsyncClient(timeout=60) as client:

        async def submit(i: int) -> httpx.Response:
            url = two_apis[i % 2] + "/api/v1/appointments/import"
            return await client.post(url, headers=headers, files={"file": ("a.csv", CSV, "text/csv")})

        responses = await asyncio.gather(*(submit(i) for i in range(100)))
        assert {r.status_code for r in responses} <= {202, 409}
        accepted = [r.json() for r in responses if r.status_code == 202]
        assert accepted and len({r["batch_id"] for r in accepted}) == 1
        batches = (await client.get(two_apis[0] + "/api/v1/batches", headers=headers)).json()["items"]
        assert len(batches) == 1 and batches[0]["total"] == 2
        print(f"idempotency: {len(accepted)} × 202, {100 - len(accepted)} × 409, 1 batch")


async def test_same_key_later_returns_the_same_batch_and_no_key_makes_new_ones(two_apis: list[str]) -> None:
    """A resubmission with the key returns the first batch; imports without a key are distinct."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=60) as client:
        url = two_apis[0] + "/api/v1/appointments/import"
        file = {"file": ("a.csv", CSV, "text/csv")}
        first = (await client.post(url, headers={**auth, "Idempotency-Key": "k-1"}, files=file)).json()
        other = two_apis[1] + "/api/v1/appointments/import"
        again = (await client.post(other, headers={**auth, "Idempotency-Key": "k-1"}, files=file)).json()
        assert again["batch_id"] == first["batch_id"]
        plain = [(await client.post(url, headers=auth, files=file)).json()["batch_id"] for _ in range(2)]
        assert len({first["batch_id"], *plain}) == 3
        bad = await client.post(url, headers={**auth, "Idempotency-Key": "has spaces"}, files=file)
        assert bad.status_code == 422


async def test_a_key_reused_with_another_file_is_422_and_one_still_running_is_409(
    two_apis: list[str], redis_server: RedisServer
) -> None:
    """A key names one request: another file under it is refused (422, naming the conflict), and a
    repeat while the first is still being processed is 409 with Retry-After."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-files"}
    url = two_apis[0] + "/api/v1/appointments/import"
    async with httpx.AsyncClient(timeout=60) as client:
        first = await client.post(url, headers=headers, files={"file": ("a.csv", CSV, "text/csv")})
        assert first.status_code == 202
        other = CSV.replace(b"Ana", b"Ada")
        conflict = await client.post(url, headers=headers, files={"file": ("a.csv", other, "text/csv")})
        assert conflict.status_code == 422, conflict.text
        assert "different payload" in conflict.json()["detail"]
        assert conflict.json()["field"] == "Idempotency-Key"

        pool = create_redis_pool(make_settings(redis_server.url.replace("/0", "/7"), Path("/nonexistent")))
        try:  # the first request of another key is still running (reserved, no answer yet)
            store = RedisIdempotencyStore(pool)
            scope = "api-access-token:import:k-running"
            assert (
                await store.reserve(scope, json.dumps({"fingerprint": idempotent.fingerprint(CSV)})) is None
            )
            running = await client.post(
                url,
                headers={**headers, "Idempotency-Key": "k-running"},
                files={"file": ("a.csv", CSV, "text/csv")},
            )
            assert running.status_code == 409 and running.headers["Retry-After"] == "1", running.text
            assert "still being processed" in running.json()["detail"]
        finally:
            await pool.aclose(close_connection_pool=True)


async def test_concurrent_creates_with_one_key_make_one_appointment(two_apis: list[str]) -> None:
    """50 concurrent POST /api/v1/appointments with one key over two processes: one appointment,
    the same answer (201, same ids) to every request; the key with another body is 422."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "create-1"}
    body = {"paciente": "Lia", "documento": "52998224725", "endereco": "Rua A 1, Centro, Recife - PE",
            "data_hora": "2026-12-01T10:00:00"}  # fmt: skip
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(two_apis[i % 2] + "/api/v1/appointments", headers=headers, json=body)
                for i in range(50)
            )
        )
        assert {r.status_code for r in responses} == {201}, {r.status_code: r.text for r in responses}
        answers = {(r.json()["appointment_id"], r.json()["job_id"]) for r in responses}
        assert len(answers) == 1
        jobs = (await client.get(two_apis[1] + "/api/v1/queue/jobs", headers=headers)).json()["items"]
        assert len(jobs) == 1
        other = await client.post(
            two_apis[0] + "/api/v1/appointments", headers=headers, json={**body, "paciente": "Ana"}
        )
        assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
        fresh = await client.post(
            two_apis[0] + "/api/v1/appointments",
            headers={**headers, "Idempotency-Key": "create-2"},
            json=body,
        )
        assert fresh.status_code == 201 and fresh.json()["appointment_id"] != next(iter(answers))[0]
