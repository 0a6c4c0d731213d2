"""Every route's errors are declared in OpenAPI and answered as RFC 9457 problem+json: each operation
of the schema is called without a token, with an unknown one, with a reader's, with unknown and real
ids, with each parameter out of its range, with a body too large and one invalid, and with Redis
down; every 4xx/5xx that comes back must be declared for that operation and be a problem."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.local_redis import RedisServer
from src.api.main import create_app
from src.api.problems import MEDIA_TYPE, PROBLEM_TYPES, Problem
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

READER, OPERATOR = "r" * 20, "o" * 20
BODY = {
    "paciente": "Ana",
    "documento": "52998224725",
    "endereco": "Rua A 1",
    "data_hora": "2026-12-01T10:00Z",
}
CSV = b"paciente,documento,endereco,data_hora\nAna,52998224725,Rua A 1,01/12/2026 10:00\n"
# A value out of range for each query parameter the API takes.
BAD_QUERY = {"limit": "0", "cursor": "not-a-cursor", "status": "bogus", "wait": "-1", "older_than_s": "-1"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Checker:
    """Sends requests for one operation and checks every error answer against its declaration."""

    def __init__(self, client: httpx.AsyncClient, schema: dict[str, Any]) -> None:
        self.client, self.schema = client, schema
        self.seen: Counter[int] = Counter()

    async def send(self, method: str, path: str, template: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, path, **kwargs)
        declared = self.schema["paths"][template][method.lower()]["responses"]
        status = response.status_code
        if status >= 400:
            where = f"{method} {path} answered {status}"
            assert str(status) in declared, f"{where}, not declared in OpenAPI"
            assert response.headers["content-type"] == MEDIA_TYPE, where
            body = Problem.model_validate(response.json())
            assert body.status == status and body.type.startswith("/problems/"), where
            assert body.type.removeprefix("/problems/") in PROBLEM_TYPES, where
            assert body.detail and body.category and body.request_id == response.headers["x-request-id"]
            assert body.instance == httpx.URL(path).path
            self.seen[status] += 1
        return response


@pytest.fixture
async def client(
    redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        redis_server.url, tmp_path, api_access_token=None, max_upload_bytes=4096, rate_limit_per_minute=6000,
        api_tokens=f"bi:reader:{READER},ops:operator:{OPERATOR}",
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            yield http


def request_body(operation: dict[str, Any], size: int = 0) -> dict[str, Any]:
    content = operation.get("requestBody", {}).get("content", {})
    if "multipart/form-data" in content:
        data = CSV if not size else b"x" * size
        return {"files": {"file": ("a.csv", data, "text/csv")}}
    if "application/json" in content:
        return {"json": BODY if not size else {**BODY, "endereco": "x" * size}}
    return {}


async def test_every_declared_error_is_problem_json_with_an_example(client: httpx.AsyncClient) -> None:
    """In OpenAPI, every 4xx/5xx of every operation is application/problem+json (the Problem schema)
    with an example, and every authenticated operation declares 401, 403, 429 and 503."""
    schema = client._transport.app.openapi()  # type: ignore[attr-defined]
    assert "Problem" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {int(s): r for s, r in operation["responses"].items() if int(s) >= 400}
            for status, response in errors.items():
                (media,) = response["content"]
                assert media == MEDIA_TYPE, f"{method} {path} {status}"
                assert response["content"][media]["example"]["status"] == status
            if path.startswith(("/api/v1", "/metrics")):
                assert {401, 403, 429, 503} <= set(errors), f"{method} {path}"


async def test_every_route_answers_its_errors_as_declared_problems(client: httpx.AsyncClient) -> None:
    """Each operation, called in every wrong way that applies to it, answers only declared errors,
    each a problem+json naming its type, status, detail, category, path and request id."""
    schema = client._transport.app.openapi()  # type: ignore[attr-defined]
    checker = Checker(client, schema)
    created = (await client.post("/api/v1/appointments", json=BODY, headers=bearer(OPERATOR))).json()
    file = {"file": ("a.csv", CSV, "text/csv")}
    imported = await client.post("/api/v1/appointments/import", files=file, headers=bearer(OPERATOR))
    real = {
        "appointment_id": created["appointment_id"],
        "job_id": created["job_id"],
        "batch_id": imported.json()["batch_id"],
        "queue_name": "normalization",
        "version": "test-9",
    }
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            method = method.upper()
            names = re.findall(r"\{([^}]+)\}", template)
            unknown = re.sub(r"\{[^}]+\}", "missing", template)
            known = template.format(**{n: real[n] for n in names})
            await checker.send(method, unknown, template, **request_body(operation))
            await checker.send(method, unknown, template, headers=bearer("unknown-token"))
            await checker.send(method, known, template, headers=bearer(READER), **request_body(operation))
            await checker.send(method, unknown, template, headers=bearer(OPERATOR), **request_body(operation))
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    bad = {parameter["name"]: BAD_QUERY[parameter["name"]]}
                    await checker.send(method, known, template, headers=bearer(OPERATOR), params=bad)
            if "requestBody" in operation:
                for wrong in (request_body(operation, size=5000), {"json": {"paciente": 1}}):
                    await checker.send(method, known, template, headers=bearer(OPERATOR), **wrong)
    cancel = f"/api/v1/queue/job/{real['job_id']}/cancel"
    template = "/api/v1/queue/job/{job_id}/cancel"
    codes = [
        (await checker.send("POST", cancel, template, headers=bearer(OPERATOR))).status_code for _ in "12"
    ]
    assert codes == [200, 409]
    assert {401, 403, 404, 409, 413, 422} <= set(checker.seen), checker.seen


async def test_rate_limit_and_redis_down_are_declared_problems(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With Redis unreachable every route answers (or stores and defers) and each error is a declared
    problem; past the rate limit a 429 problem carries Retry-After."""
    settings = make_settings(
        "redis://127.0.0.1:1/0", tmp_path, redis_pool_timeout=0.5, rate_limit_per_minute=60
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer("test-token")
        ) as client:
            schema = app.openapi()
            checker = Checker(client, schema)
            for template, operations in schema["paths"].items():
                for method, operation in operations.items():
                    path = re.sub(r"\{[^}]+\}", "missing", template)
                    await checker.send(method.upper(), path, template, **request_body(operation))
            assert checker.seen[503] >= 5, checker.seen
            limited = None
            for _ in range(61):
                limited = await checker.send("GET", "/healthz", "/healthz")
                limited = await checker.send("GET", "/api/v1/workers", "/api/v1/workers")
                if limited.status_code == 429:
                    break
            assert limited is not None and limited.status_code == 429
            assert int(limited.headers["retry-after"]) >= 1
            assert limited.json()["type"] == "/problems/rate-limited"


async def test_an_unexpected_error_is_a_500_problem_with_its_request_id(
    redis_server: RedisServer, tmp_path: Path, arq_pool: ArqRedis
) -> None:
    """A bug answers a 500 internal-error problem that names its request id (body and header) and
    nothing of the exception."""
    app = create_app(make_settings(redis_server.url, tmp_path))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail of a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500 and response.headers["content-type"] == MEDIA_TYPE
    assert response.headers["x-request-id"] == "trace-500" and response.json()["request_id"] == "trace-500"
    assert response.json()["type"] == "/problems/internal-error" and "secret" not in response.text
