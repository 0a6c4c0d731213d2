"""Idempotency-Key on imports: 100 concurrent submissions over two API processes make one batch."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.local_redis import RedisServer, free_port

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
        batches = (await client.get(two_apis[0] + "/api/v1/batches", headers=headers)).json()
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
