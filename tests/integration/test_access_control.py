"""Named tokens with roles, in the one auth dependency, and the per-token rate limit."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.local_redis import RedisServer
from src.api.main import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

READER, WRITER, OPERATOR = "r" * 20, "w" * 20, "o" * 20
BODY = {
    "paciente": "Ana",
    "documento": "52998224725",
    "endereco": "Rua A 1",
    "data_hora": "2026-12-01T10:00:00Z",
}


@pytest.fixture
async def roles_api(
    redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        redis_server.url, tmp_path, api_access_token=None, rate_limit_per_minute=600,
        api_tokens=f"bi:reader:{READER},intake:writer:{WRITER},ops:operator:{OPERATOR}",
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_reader_reads_but_cannot_enqueue_or_cancel(
    roles_api: httpx.AsyncClient, arq_pool: ArqRedis
) -> None:
    """A reporting tool's reader token gets 200 on reads and 403 on writes; nothing is enqueued."""
    assert (await roles_api.get("/api/v1/queue/info", headers=bearer(READER))).status_code == 200
    denied = await roles_api.post("/api/v1/appointments", json=BODY, headers=bearer(READER))
    assert denied.status_code == 403 and "needs writer" in denied.json()["detail"]
    assert await arq_pool.zcard("jobs:v1:normalization") == 0
    assert (await roles_api.get("/metrics", headers=bearer(READER))).status_code == 403


async def test_writer_enqueues_but_only_operator_cancels(roles_api: httpx.AsyncClient) -> None:
    """The writer creates appointments; cancel, cleanup, versions and metrics need the operator."""
    created = await roles_api.post("/api/v1/appointments", json=BODY, headers=bearer(WRITER))
    assert created.status_code == 201
    cancel = f"/api/v1/queue/job/{created.json()['job_id']}/cancel"
    assert (await roles_api.post(cancel, headers=bearer(WRITER))).status_code == 403
    assert (await roles_api.post("/api/v1/queue/cleanup", headers=bearer(WRITER))).status_code == 403
    assert (
        await roles_api.post("/api/v1/workers/versions/x/allow", headers=bearer(WRITER))
    ).status_code == 403
    assert (await roles_api.post(cancel, headers=bearer(OPERATOR))).json()["status"] == "cancelled"
    assert (await roles_api.get("/metrics", headers=bearer(OPERATOR))).status_code == 200


async def test_health_endpoints_stay_open_and_reveal_nothing(roles_api: httpx.AsyncClient) -> None:
    """/healthz and /readyz need no token and name no host, version or store."""
    assert (await roles_api.get("/healthz")).json() == {"status": "ok"}
    ready = (await roles_api.get("/readyz")).json()
    assert ready == {"status": "ready", "redis": "ok", "store": "ok"}


async def test_rate_limit_per_token(redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis) -> None:
    """Past its per-minute budget a token gets 429 with Retry-After; another token is unaffected."""
    settings = make_settings(
        redis_server.url, tmp_path, rate_limit_per_minute=3, api_tokens=f"bi:reader:{READER}"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            codes = [
                (await client.get("/api/v1/queue/info", headers=bearer(READER))).status_code for _ in range(4)
            ]
            assert codes == [200, 200, 200, 429]
            limited = await client.get("/api/v1/queue/info", headers=bearer(READER))
            assert int(limited.headers["retry-after"]) >= 1
            assert (await client.get("/api/v1/queue/info", headers=bearer("test-token"))).status_code == 200


async def test_every_api_route_requires_a_token(roles_api: httpx.AsyncClient) -> None:
    """Each /api/v1 route and /metrics answers 401 without a token (a route that forgot its auth
    dependency fails here), whatever its method, parameters or body."""
    app = roles_api._transport.app  # type: ignore[attr-defined]
    checked = 0
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith(("/api/v1", "/metrics")):
            continue
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            response = await roles_api.request(method.upper(), concrete)
            assert response.status_code == 401, f"{method.upper()} {path} answered {response.status_code}"
            checked += 1
    assert checked >= 15
