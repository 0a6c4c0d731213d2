"""`python -m src.cli` deploy commands against a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.local_redis import RedisServer

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
