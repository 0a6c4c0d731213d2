"""The typed client (clients/python) against the real API: the sync client over HTTP to a uvicorn
process, the async one in process (ASGI), both with a real redis-server and real burst workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from clinic_client import (
    AsyncClient,
    Client,
    Forbidden,
    InvalidInput,
    JobWaitTimeout,
    NotFound,
    RateLimited,
    RetryPolicy,
    Unavailable,
)

from src.api.main import create_app
from src.config import Settings
from tests.conftest import RunBurstWorker, make_settings
from tests.support.api_process import ApiProcess, run_api

pytestmark = pytest.mark.integration

BODY = {
    "paciente": "Ana",
    "documento": "52998224725",
    "endereco": "Rua A 1",
    "data_hora": "2026-12-01T10:00Z",
}
CSV = b"paciente,documento,endereco,data_hora\nAna,52998224725,Rua A 1,01/12/2026 10:00\nBia,1,Rua B,x\n"


class CountingTransport(httpx.HTTPTransport):
    """The real HTTP transport, counting what is sent (to see retries)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


class AsyncCounting(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.sent = inner, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture
def api_process(settings: Settings, arq_pool: ArqRedis, tmp_path: Path) -> Iterator[ApiProcess]:
    """uvicorn sharing the test's Redis and SQLite store (so the burst workers run its jobs)."""
    env = {
        "API_ACCESS_TOKEN": "test-token",
        "SQLITE_PATH": settings.sqlite_path,
        "RATE_LIMIT_PER_MINUTE": "60",
    }
    with run_api(settings.redis_url, tmp_path, **env) as api:
        yield api


@pytest.fixture
async def asgi_client(settings: Settings, arq_pool: ArqRedis) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with AsyncClient("http://t", "test-token", transport=httpx.ASGITransport(app=app)) as client:
            yield client


async def test_sync_client_creates_imports_pages_and_waits(
    api_process: ApiProcess, run_burst_worker: RunBurstWorker
) -> None:
    """Over HTTP: typed answers for a create, an import (row errors included) and the pages of the
    job list; after a worker ran, wait_for_job returns the succeeded job with its result."""
    with Client(api_process.url, token="test-token") as api:
        created = api.create_appointment(BODY)
        report = api.import_file(CSV, filename="a.csv")
        assert (report.accepted, report.rejected, report.errors[0].row) == (1, 1, 3)
        for _ in range(3):
            api.create_appointment(BODY)
        jobs = list(api.iter_jobs(limit=2))
        assert len(jobs) == 5 and len({j.job_id for j in jobs}) == 5
        assert api.list_jobs(limit=2).total == 5
        await run_burst_worker()
        job = api.wait_for_job(created.job_id, timeout_s=30)
        assert job.status == "succeeded" and job.finished and job.result is not None
        assert api.get_appointment(created.appointment_id).normalization_status == "normalized"
        assert api.get_batch(report.batch_id).finished is True
        assert [b.batch_id for b in api.iter_batches()] == [report.batch_id]


async def test_sync_client_raises_typed_problems(api_process: ApiProcess) -> None:
    """Errors come back as exceptions carrying the problem: type, status, request id."""
    with Client(api_process.url, token="test-token") as api:
        with pytest.raises(NotFound) as missing:
            api.get_job("normalize:missing:1")
        assert missing.value.type == "/problems/not-found" and missing.value.request_id
        with pytest.raises(InvalidInput) as invalid:
            api.list_jobs(cursor="not-a-cursor")
        assert "invalid cursor" in invalid.value.problem.detail
    with Client(api_process.url, token="wrong-token") as api, pytest.raises(Forbidden) as refused:
        api.queue_info()
    assert refused.value.status == 403 and refused.value.problem.category == "policy"


async def test_sync_client_retries_a_429_after_retry_after(api_process: ApiProcess) -> None:
    """Past the rate limit (60 a minute, one back a second) the call waits out Retry-After and is
    sent again, succeeding; with retries off the 429 is raised as RateLimited."""
    transport = CountingTransport()
    with Client(api_process.url, token="test-token", transport=transport) as api:
        for _ in range(5):  # a token can come back between the spending and the call: spend again
            while True:  # spend the token's budget
                response = httpx.get(
                    f"{api_process.url}/api/v1/queue/info", headers={"Authorization": "Bearer test-token"}
                )
                if response.status_code == 429:
                    break
            transport.statuses.clear()
            started = time.monotonic()
            assert api.queue_info().total == 2
            if transport.statuses[0] == 429:
                break
        assert transport.statuses[0] == 429 and transport.statuses[-1] == 200, transport.statuses
        assert time.monotonic() - started >= 0.5  # it waited for the budget (Retry-After: 1)
    with Client(api_process.url, token="test-token", retry=RetryPolicy(attempts=1)) as api:
        with pytest.raises(RateLimited) as limited:
            while True:
                api.queue_info()
        assert limited.value.type == "/problems/rate-limited"


async def test_async_client_waits_for_a_job_by_long_polling(
    asgi_client: AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """wait_for_job answers once a worker finishes the job, while it waits; a short wait on a job
    nobody runs raises JobWaitTimeout with its last status."""
    created = await asgi_client.create_appointment(BODY, idempotency_key="one-create")
    again = await asgi_client.create_appointment(BODY, idempotency_key="one-create")
    assert again.appointment_id == created.appointment_id
    with pytest.raises(JobWaitTimeout) as timed_out:
        await asgi_client.wait_for_job(created.job_id, timeout_s=0.3)
    assert timed_out.value.job.status == "queued"
    waiting = asyncio.create_task(asgi_client.wait_for_job(created.job_id, timeout_s=60))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await run_burst_worker()
    job = await asyncio.wait_for(waiting, 60)
    assert job.status == "succeeded" and job.job_id == created.job_id
    assert [j.job_id async for j in asgi_client.iter_jobs(status="succeeded")] == [created.job_id]


async def test_async_client_follows_a_retried_job_to_its_new_generation(
    asgi_client: AsyncClient, run_burst_worker: RunBurstWorker, arq_pool: ArqRedis
) -> None:
    """A cancelled job retried becomes superseded: waiting on its first id follows it to the new
    generation and returns that one's outcome."""
    created = await asgi_client.create_appointment(BODY)
    cancelled = await asgi_client.cancel_job(created.job_id)
    assert cancelled.status == "cancelled"
    retried = await asgi_client.retry_job(created.job_id)
    await run_burst_worker()
    job = await asgi_client.wait_for_job(created.job_id, timeout_s=30)
    assert job.job_id == retried.job_id and job.status == "succeeded"


async def test_async_client_retries_503_then_raises_unavailable(settings: Settings, tmp_path: Path) -> None:
    """With Redis unreachable the queue lengths are 503: sent `attempts` times, then Unavailable."""
    down = make_settings("redis://127.0.0.1:1/0", tmp_path, redis_pool_timeout=0.5)
    app = create_app(down)
    async with app.router.lifespan_context(app):
        transport = AsyncCounting(httpx.ASGITransport(app=app))
        policy = RetryPolicy(attempts=3, backoff_s=0.01)
        async with AsyncClient("http://t", "test-token", transport=transport, retry=policy) as api:
            with pytest.raises(Unavailable) as unavailable:
                await api.queue_info()
    assert transport.sent == 3 and unavailable.value.problem.category == "transient"
