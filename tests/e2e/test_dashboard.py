"""The dashboard in headless Chromium, against the app served by uvicorn, a real Redis and a worker."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from fastapi import FastAPI
from playwright.async_api import Page, expect

from scripts.generate_sample import generate_rows, write_csv
from scripts.local_redis import RedisServer
from src.api.main import create_app
from src.api.routes import dashboard
from src.config import Settings
from src.domain.jobs import ErrorCategory, JobClaim, JobEnvelope, JobProgress
from src.infrastructure.repository_factory import build_repository
from src.worker.settings import build_worker
from tests import worker_hooks
from tests.conftest import make_settings, publish_deployment
from tests.e2e.dashboard_support import chromium_page, ensure_chromium, serve

pytestmark = pytest.mark.e2e

TOKEN = "test-token"
REFRESH_S = 2.0  # the page's refresh interval
UI_TIMEOUT_MS = 10 * REFRESH_S * 1000
PAGE_LOAD_TIMEOUT_MS = 120_000
ITEM_DELAY_MS = 3000  # a page of 100 items takes ~3 s: the import runs ~9 s in 3 checkpointed pages
IMPORT_ROWS = 300
HOSTILE_FILENAME = "<img src=x onerror=alert(1)>agenda.csv"
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard.png"


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """One chunk job for the whole import, and slow items so it is visibly running."""
    worker_hooks.install(monkeypatch, item_delay_ms=ITEM_DELAY_MS)
    return make_settings(redis_server.url, tmp_path, batch_chunk_size=1000)


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


def dashboard_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/dashboard" for route in app.routes):
        app.include_router(dashboard.router)  # until src/api/main.py includes it
    return app


def take_appointment(sqlite_path: str, appointment_id: str) -> dict[str, Any]:
    """Delete an appointment behind the API's back (its job will fail permanently); return its row."""
    with closing(sqlite3.connect(sqlite_path, timeout=10)) as conn, conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM appointments WHERE id = ?", (appointment_id,)).fetchone()
        conn.execute("DELETE FROM appointments WHERE id = ?", (appointment_id,))
    return dict(row)


def put_back_appointment(sqlite_path: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with closing(sqlite3.connect(sqlite_path, timeout=10)) as conn, conn:
        conn.execute(f"INSERT INTO appointments ({columns}) VALUES ({marks})", tuple(row.values()))


async def wait_for_status(client: httpx.AsyncClient, job_id: str, statuses: set[str], timeout: float) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(f"/api/v1/queue/job/{job_id}")
        status = response.json().get("status") if response.status_code == 200 else None
        if status in statuses or asyncio.get_running_loop().time() > deadline:
            return str(status)
        await asyncio.sleep(0.2)


@asynccontextmanager
async def running_workers(settings: Settings) -> AsyncIterator[None]:
    """A normal worker, and a fenced one of a retired version (claims nothing, flagged on the page)."""
    await publish_deployment(settings)
    workers = [
        build_worker(settings, "normalization", handle_signals=False),
        build_worker(settings.model_copy(update={"app_version": "old-1"}), handle_signals=False),
    ]
    runs = [asyncio.create_task(w.async_run()) for w in workers]
    try:
        yield
    finally:
        for worker in workers:
            await worker.close()
        await asyncio.gather(*runs, return_exceptions=True)


async def sign_in(page: Page, token: str) -> None:
    await expect(page.locator("#login")).to_be_visible(timeout=UI_TIMEOUT_MS)
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")


async def test_dashboard_shows_progress_and_retries_a_failed_job(
    settings: Settings, arq_pool: ArqRedis, tmp_path: Path, chromium: str
) -> None:
    """The page asks for the token, shows workers, a running import's progress, and re-runs a failure."""
    sample = tmp_path / "agenda.csv"
    write_csv(generate_rows(IMPORT_ROWS, seed=5), sample)
    async with (
        serve(dashboard_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
    ):
        created = (await client.post("/api/v1/appointments", json=APPOINTMENT)).json()
        vanished = take_appointment(settings.sqlite_path, created["appointment_id"])
        upload = await client.post(
            "/api/v1/appointments/import", files={"file": (HOSTILE_FILENAME, sample.read_bytes(), "text/csv")}
        )
        assert upload.status_code == 202, upload.text
        report = upload.json()
        assert report["accepted"] > 200 and len(report["job_ids"]) == 1, "one chunk of 3 pages"
        chunk_id = report["job_ids"][0]

        profile = tmp_path / "profile"
        async with running_workers(settings), chromium_page(profile, base_url) as (page, foreign):
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            # Chromium's first page load on a loaded 2-core machine once took over 30 s (Playwright's
            # default): a generous deadline, the page's own behaviour is what the test asserts.
            await page.goto(f"{base_url}/dashboard", timeout=PAGE_LOAD_TIMEOUT_MS)

            # A wrong token is refused, forgotten, and asked for again.
            await sign_in(page, "not-the-token")
            message = page.locator("#login-message")
            await expect(message).to_contain_text("refused (403", timeout=UI_TIMEOUT_MS)
            await expect(page.locator("#dashboard")).to_be_hidden()
            assert await page.evaluate("sessionStorage.length") == 0
            await sign_in(page, TOKEN)
            await expect(page.locator("#dashboard")).to_be_visible(timeout=UI_TIMEOUT_MS)

            # The running import: a progress bar that moves, with a heartbeat age.
            chunk_row = page.locator(f'#running tbody tr[data-key="{chunk_id}"]')
            await expect(chunk_row).to_be_visible(timeout=UI_TIMEOUT_MS)
            await page.wait_for_function(
                """(id) => {
                    const bar = document.querySelector(`#running tr[data-key="${id}"] progress`);
                    return bar && bar.value > 0 && bar.value < bar.max;
                }""",
                arg=chunk_id,
                timeout=UI_TIMEOUT_MS * 2,
            )
            await expect(chunk_row.locator("td").nth(6)).to_have_text(re.compile(r"^\d+\.\d s$"))
            await expect(chunk_row).to_contain_text("normalize_batch_chunk")

            # Workers: the fenced one of another version is highlighted, with skew flagged.
            await expect(page.locator("#workers .summary")).to_contain_text("version skew")
            await expect(page.locator("#workers tbody tr.bad")).to_contain_text("fenced")
            await expect(page.locator("#workers tbody tr:not(.bad)")).to_contain_text("test-1")
            await expect(page.locator("#queues tbody")).to_contain_text("normalization")

            failed_id = created["job_id"]
            failed_row = page.locator(f'#failures tbody tr[data-key="{failed_id}"]')
            await expect(failed_row).to_contain_text("no longer exists", timeout=UI_TIMEOUT_MS)
            await expect(page.locator("#batches tbody")).to_contain_text(HOSTILE_FILENAME)
            ARTIFACT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACT), full_page=True)

            # Cancel on a finished job shows the API's refusal; Retry runs the next generation.
            await failed_row.get_by_role("button", name="Cancel").click()
            await expect(page.locator("#notice")).to_contain_text("already failed", timeout=UI_TIMEOUT_MS)
            put_back_appointment(settings.sqlite_path, vanished)
            await failed_row.get_by_role("button", name="Retry").click()
            next_id = failed_id.removesuffix(":1") + ":2"
            await expect(page.locator("#notice")).to_contain_text(f"as {next_id}", timeout=UI_TIMEOUT_MS)
            assert await wait_for_status(client, next_id, {"succeeded", "failed"}, 30) == "succeeded"

            batch_row = page.locator(f'#batches tbody tr[data-key="{report["batch_id"]}"]')
            await expect(batch_row).to_contain_text("finished", timeout=UI_TIMEOUT_MS * 2)
            await expect(batch_row).to_contain_text("(100%)")

            # The token lasts for the tab's session; forgetting it asks again.
            await page.reload()
            await expect(page.locator("#dashboard")).to_be_visible(timeout=UI_TIMEOUT_MS)
            await page.click("#sign-out")
            await expect(page.locator("#login")).to_be_visible()
            assert await page.evaluate("sessionStorage.length") == 0

            assert await page.locator("#dashboard img").count() == 0, "a server string was parsed as HTML"
            assert errors == [] and foreign == []


async def test_dashboard_raises_the_alarm_for_an_intrusion_and_a_quarantine(
    settings: Settings, arq_pool: ArqRedis, tmp_path: Path, chromium: str
) -> None:
    """A job a stranger took and a quarantined job show as alarms above the panels, each naming its
    job; the failures panel names the worker that last held the quarantined one."""
    repository = build_repository(settings)
    await repository.init()
    now = datetime.now(UTC)
    taken, poison = (JobEnvelope(task="normalize_appointment", logical_key=f"normalize:{k}") for k in "ab")
    await repository.create_queued_jobs(
        [taken, poison], "normalization", enqueued_at=now, progress=JobProgress()
    )
    evidence = {"foreign_result": {"format": "pickle", "function": "<unknown>"}}
    await repository.fail_waiting_job(
        taken.job_id, at=now, category=ErrorCategory.FOREIGN_CONSUMER, message="taken", result=evidence
    )
    claim = JobClaim(worker_id="host-b:42:dead01", version="test-1", started_at=now)
    assert await repository.claim_job(poison.job_id, claim) == 1
    assert (await repository.record_lost_lease(poison.job_id, at=now, max_losses=1)) is not None
    await repository.close()
    async with (
        serve(dashboard_app(settings)) as base_url,
        chromium_page(tmp_path / "profile", base_url) as (
            page,
            foreign,
        ),
    ):
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{base_url}/dashboard", timeout=PAGE_LOAD_TIMEOUT_MS)
        await sign_in(page, TOKEN)
        alarms = page.locator("#alarms")
        await expect(alarms).to_be_visible(timeout=UI_TIMEOUT_MS)
        await expect(alarms.locator('li[data-kind="foreign_consumer"]')).to_contain_text(taken.job_id)
        await expect(alarms.locator('li[data-kind="quarantined"]')).to_contain_text(poison.job_id)
        await expect(alarms).to_contain_text("host-b:42:dead01")
        row = page.locator(f'#failures tbody tr[data-key="{poison.job_id}"]')
        await expect(row).to_contain_text("quarantined", timeout=UI_TIMEOUT_MS)
        await expect(row).to_contain_text("host-b:42:dead01")
        assert errors == [] and foreign == []


async def test_dashboard_page_is_public_static_and_same_origin(settings: Settings) -> None:
    """/dashboard and its assets need no token, carry a same-origin CSP and reference nothing external."""
    transport = httpx.ASGITransport(app=dashboard_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        for asset, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            response = await client.get(f"/dashboard/{asset}")
            assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
            assert "http://" not in response.text and "https://" not in response.text
        assert "innerHTML" not in (await client.get("/dashboard/dashboard.js")).text
        assert "http://" not in page.text and "https://" not in page.text
        assert (await client.get("/dashboard/main.py")).status_code == 404
        assert (await client.get("/dashboard/..%2Froutes%2Fdashboard.py")).status_code == 404


APPOINTMENT = {
    "paciente": "Maria da Silva",
    "documento": "52998224725",
    "endereco": "R. das Flores 123 ap 4, Centro, Sao Paulo - SP, 01310100",
    "data_hora": "2026-12-01T14:30:00-03:00",
}
