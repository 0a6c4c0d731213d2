"""`python -m src.cli` deploy commands against a real redis-server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from scripts.local_redis import RedisServer
from src.config import Settings
from tests.conftest import RunBurstWorker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def cli(redis_server: RedisServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis_server.url.replace("/0", "/5"),  # a database of its own
        "SQLITE_PATH": str(tmp_path / "cli.sqlite3"),
    }
    return subprocess.run(
        [sys.executable, "-m", "src.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_allow_and_retire_version_round_trip(redis_server: RedisServer, tmp_path: Path) -> None:
    """allow-version adds a version, versions lists it, retire-version removes it (exit 1 when absent)."""
    assert cli(redis_server, tmp_path, "allow-version", "v-a").returncode == 0
    assert cli(redis_server, tmp_path, "allow-version", "v-b").returncode == 0
    listed = cli(redis_server, tmp_path, "versions")
    assert {"v-a", "v-b"} <= set(listed.stdout.split())
    retired = cli(redis_server, tmp_path, "retire-version", "v-a")
    assert retired.returncode == 0 and "retired v-a" in retired.stdout
    assert "v-a" not in cli(redis_server, tmp_path, "versions").stdout.split()
    again = cli(redis_server, tmp_path, "retire-version", "v-a")
    assert again.returncode == 1 and "was not allowed" in again.stdout


def test_job_command_reports_unknown_ids(redis_server: RedisServer, tmp_path: Path) -> None:
    """`job ID` for an unknown id exits 1 and says so."""
    result = cli(redis_server, tmp_path, "job", "normalize:nope:1")
    assert result.returncode == 1 and "not found" in result.stderr


def cli_for(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": settings.redis_url,
        "SQLITE_PATH": settings.sqlite_path,
        "APP_VERSION": settings.app_version,
        "WORKER_HEARTBEAT_INTERVAL": str(settings.worker_heartbeat_interval),
        "JOB_LEASE_SECONDS": str(settings.job_lease_seconds),
    }
    return subprocess.run(
        [sys.executable, "-m", "src.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_queue_commands_tell_the_story_of_a_job(
    api: httpx.AsyncClient, settings: Settings, run_burst_worker: RunBurstWorker
) -> None:
    """queue-info, queue-health, cancel, retry, job (the whole story, with the request id), cleanup
    and workers, over the same services as the API."""
    body = {
        "paciente": "Ana",
        "documento": "52998224725",
        "endereco": "Rua A 1",
        "data_hora": "2026-12-01T10:00:00Z",
    }
    first = (
        await api.post("/api/v1/appointments", json=body, headers={"X-Request-ID": "trace-cli-1"})
    ).json()
    info = await asyncio.to_thread(cli_for, settings, "queue-info")
    assert info.returncode == 0 and "normalization  length=1" in info.stdout
    health = await asyncio.to_thread(cli_for, settings, "queue-health")
    assert health.returncode == 1, health.stdout  # no worker yet
    assert "queue normalization: 1 job(s) waiting and no worker consuming it" in health.stdout

    cancelled = await asyncio.to_thread(cli_for, settings, "cancel", first["job_id"])
    assert cancelled.returncode == 0 and f"{first['job_id']}: cancelled" in cancelled.stdout
    again = await asyncio.to_thread(cli_for, settings, "cancel", first["job_id"])
    assert again.returncode == 1 and "already cancelled" in again.stderr
    retried = await asyncio.to_thread(cli_for, settings, "retry", first["job_id"])
    next_id = first["job_id"].rsplit(":", 1)[0] + ":2"
    assert retried.returncode == 0 and f"→ {next_id}: queued" in retried.stdout

    await run_burst_worker()
    story = await asyncio.to_thread(cli_for, settings, "job", next_id)
    assert story.returncode == 0
    assert "request_id=trace-cli-1" in story.stdout
    assert (
        f"{first['job_id']}: cancelled" in story.stdout
        and f"{next_id}: succeeded after 1 attempt" in story.stdout
    )

    workers = await asyncio.to_thread(cli_for, settings, "workers")
    assert workers.returncode == 0 and workers.stdout.startswith("WORKER")
    cleaned = await asyncio.to_thread(cli_for, settings, "cleanup", "--older-than", "0")
    assert cleaned.returncode == 0 and "deleted 2 ledger records" in cleaned.stdout


def test_retime_naive_moves_old_single_appointments_once(redis_server: RedisServer, tmp_path: Path) -> None:
    """The documented one-off correction: a dry run reports, --apply moves an appointment created
    one by one before the cut-off from 14:30 UTC to 14:30 in APP_TIMEZONE, once; later ones and
    imported ones stay as they are."""
    from datetime import UTC, datetime

    from src.domain.appointments import Appointment
    from src.infrastructure.sqlite_repository import SQLiteRepository

    def appointment(appointment_id: str, created: datetime, batch_id: str | None = None) -> Appointment:
        return Appointment(id=appointment_id, batch_id=batch_id, paciente="P", documento="52998224725",
                           endereco="Rua A 1", data_hora=datetime(2026, 12, 10, 14, 30, tzinfo=UTC),
                           created_at=created)  # fmt: skip

    async def seed() -> None:
        repo = SQLiteRepository(str(tmp_path / "cli.sqlite3"))
        await repo.init()
        await repo.insert_appointments([
            appointment("old", datetime(2026, 12, 1, tzinfo=UTC)),
            appointment("new", datetime(2026, 12, 8, tzinfo=UTC)),
            appointment("imported", datetime(2026, 12, 1, tzinfo=UTC), batch_id="b1"),
        ])  # fmt: skip
        await repo.close()

    async def stored() -> dict[str, datetime]:
        repo = SQLiteRepository(str(tmp_path / "cli.sqlite3"))
        await repo.init()
        try:
            found = {i: await repo.get_appointment(i) for i in ("old", "new", "imported")}
            return {i: a.data_hora.astimezone(UTC) for i, a in found.items() if a is not None}
        finally:
            await repo.close()

    asyncio.run(seed())
    dry = cli(redis_server, tmp_path, "retime-naive", "--created-before", "2026-12-06T00:00:00Z")
    assert dry.returncode == 0 and "would move 1 of 2" in dry.stdout, dry.stdout + dry.stderr
    assert "old: 2026-12-10T14:30:00+00:00 -> 2026-12-10T14:30:00-03:00" in dry.stdout
    assert asyncio.run(stored())["old"] == datetime(2026, 12, 10, 14, 30, tzinfo=UTC)
    applied = cli(
        redis_server, tmp_path, "retime-naive", "--created-before", "2026-12-06T00:00:00Z", "--apply"
    )
    assert applied.returncode == 0 and "moved 1 of 2" in applied.stdout, applied.stdout
    again = cli(redis_server, tmp_path, "retime-naive", "--created-before", "2026-12-06T00:00:00Z", "--apply")
    assert "moved 0 of 1" in again.stdout, again.stdout
    assert asyncio.run(stored()) == {
        "old": datetime(2026, 12, 10, 17, 30, tzinfo=UTC),
        "new": datetime(2026, 12, 10, 14, 30, tzinfo=UTC),
        "imported": datetime(2026, 12, 10, 14, 30, tzinfo=UTC),
    }
    naive = cli(redis_server, tmp_path, "retime-naive", "--created-before", "2026-12-06T00:00:00")
    assert naive.returncode == 2 and "needs an offset" in naive.stderr
