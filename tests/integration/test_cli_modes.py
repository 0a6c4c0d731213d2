"""`python -m src.cli`: `--json` prints one JSON document for every command, and `--api` runs the same
commands through a deployed API (a uvicorn process) with no Redis or store settings at all."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.local_redis import free_port
from src.cli import parser
from src.config import Settings
from tests.conftest import RunBurstWorker
from tests.support.api_process import ApiProcess, run_api

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-token-0123456789"
BODY = {
    "paciente": "Ana",
    "documento": "52998224725",
    "endereco": "Rua A 1",
    "data_hora": "2026-12-01T10:00Z",
}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT / "clients" / "python"), "ENVIRONMENT": "test", **env}
    return subprocess.run(
        [sys.executable, "-m", "src.cli", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=90,
    )


def direct_env(settings: Settings) -> dict[str, str]:
    return {"REDIS_URL": settings.redis_url, "SQLITE_PATH": settings.sqlite_path, "APP_VERSION": "test-1"}


def remote_env(api: ApiProcess) -> dict[str, str]:
    # A REDIS_URL that could not even be parsed: the --api mode never reads the settings.
    return {"CLINIC_API_URL": api.url, "CLINIC_API_TOKEN": TOKEN, "REDIS_URL": "not a url", "SQLITE_PATH": ""}


def document(result: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document on stdout (json.loads refuses anything more or less)."""
    return json.loads(result.stdout)


@pytest.fixture
def api_process(settings: Settings, arq_pool: ArqRedis, tmp_path: Path) -> Iterator[ApiProcess]:
    env = {"API_ACCESS_TOKEN": TOKEN, "SQLITE_PATH": settings.sqlite_path, "RATE_LIMIT_PER_MINUTE": "0"}
    with run_api(settings.redis_url, tmp_path, **env) as api:
        yield api


def test_every_command_is_described_in_help_with_the_exit_codes() -> None:
    """`--help` describes each subcommand and documents exit codes 0 to 3."""
    main = parser()
    commands = main._subparsers._group_actions[0]  # type: ignore[union-attr]
    described = {action.dest: action.help for action in commands._choices_actions}
    assert set(described) == set(commands.choices) and all(described.values()), described
    text = main.format_help()
    for code in (
        "0  done",
        "1  done, and what it found",
        "2  wrong arguments",
        "3  Redis, the store or the API",
    ):
        assert code in text


async def test_json_is_one_document_for_every_command_and_the_same_through_the_api(
    settings: Settings, api_process: ApiProcess, run_burst_worker: RunBurstWorker
) -> None:
    """Each command with --json prints one JSON document (errors too) and no text; the commands the
    API can run answer the same documents through `--api` as directly."""
    with httpx.Client(base_url=api_process.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        first = http.post("/api/v1/appointments", json=BODY).json()
        second = http.post("/api/v1/appointments", json=BODY).json()
    await run_burst_worker()
    direct, remote = direct_env(settings), remote_env(api_process)

    def both(*args: str) -> tuple[Any, Any, int]:
        here, there = run_cli(direct, "--json", *args), run_cli(remote, *args, "--json")
        assert here.returncode == there.returncode, (here.stderr, there.stderr)
        return document(here), document(there), here.returncode

    here, there, code = await asyncio.to_thread(both, "versions")
    assert here == there == {"allowed_versions": ["test-1"]} and code == 0
    here, there, code = await asyncio.to_thread(both, "queue-info")
    assert [q["name"] for q in here["queues"]] == [q["name"] for q in there["queues"]]
    here, there, code = await asyncio.to_thread(both, "job", first["job_id"])
    assert here["generations"] == there["generations"] and here["job"]["status"] == "succeeded"
    assert here["job"] == there["job"]
    here, there, code = await asyncio.to_thread(both, "workers")
    assert here == there == {"workers": []} and code == 0  # the burst worker has stopped
    here, there, code = await asyncio.to_thread(both, "queue-health")
    assert here["status"] == there["status"] and code == (0 if here["status"] == "ok" else 1)
    refused = await asyncio.to_thread(run_cli, remote, "--json", "cancel", second["job_id"])
    assert refused.returncode == 1 and document(refused)["error"]["problem"]["status"] == 409
    with httpx.Client(base_url=api_process.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        third = http.post("/api/v1/appointments", json=BODY).json()
    changes = (
        ("allow-version", "v-2"),
        ("retire-version", "v-2"),
        ("cancel", third["job_id"]),
        ("retry", third["job_id"]),
    )
    for args in changes:
        result = await asyncio.to_thread(run_cli, remote, "--json", *args)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert isinstance(document(result), dict)
    again = await asyncio.to_thread(run_cli, direct, "--json", "retire-version", "v-2")
    assert again.returncode == 1 and document(again) == {
        "version": "v-2", "retired": False, "allowed_versions": ["test-1"],
    }  # fmt: skip
    for args in (
        ("cleanup", "--older-than", "0"),
        ("doctor",),
        ("retime-naive", "--created-before", "2026-01-01T00:00:00Z"),
    ):
        result = await asyncio.to_thread(run_cli, direct, "--json", *args)
        assert result.returncode in (0, 1) and isinstance(document(result), dict), result.stderr
    missing = await asyncio.to_thread(run_cli, direct, "--json", "job", "normalize:missing:1")
    assert missing.returncode == 1 and document(missing)["error"]["type"] == "NotFound"


async def test_api_mode_refusals_and_outages_have_their_exit_codes(api_process: ApiProcess) -> None:
    """Through the API: doctor is a usage error (2), an unknown job a refusal (1), a wrong token a
    refusal naming the problem type, and an API that does not answer is 3; text goes to stderr."""
    remote = remote_env(api_process)
    doctor = await asyncio.to_thread(run_cli, remote, "doctor")
    assert doctor.returncode == 2 and "not available with --api" in doctor.stderr and doctor.stdout == ""
    missing = await asyncio.to_thread(run_cli, remote, "job", "normalize:missing:1")
    assert missing.returncode == 1 and "404 Not found" in missing.stderr
    wrong = await asyncio.to_thread(run_cli, {**remote, "CLINIC_API_TOKEN": "nope"}, "--json", "workers")
    assert wrong.returncode == 1 and document(wrong)["error"]["type"] == "/problems/forbidden"
    gone = await asyncio.to_thread(run_cli, remote, "--api", f"http://127.0.0.1:{free_port()}", "versions")
    assert gone.returncode == 3 and "did not answer" in gone.stderr


def test_a_wrong_setting_with_json_is_one_error_document() -> None:
    """A configuration error under --json is an error document naming the variable, exit 2."""
    result = run_cli({"ARQ_MAX_JOBS": "many", "APP_ENV_FILE": ""}, "--json", "versions")
    assert result.returncode == 2 and result.stderr == ""
    error = document(result)["error"]
    assert error["type"] == "configuration" and "ARQ_MAX_JOBS" in error["detail"]
