"""Tests and the demo are isolated from a developer's `.env` and environment: a production
template copied to `.env`, or a real MONGODB_URL / OPENAI_API_KEY in the shell, never reaches them
(the demo would otherwise write 1,000 fake patients into that MongoDB or send them to OpenAI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from src.config import ENV_FILE_VARIABLE, Settings, isolated_environ

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = {
    "ENVIRONMENT": "production",
    "MONGODB_URL": "mongodb://real-user:real-pass@prod-cluster.example.org/",
    "OPENAI_API_KEY": "sk-live-0123456789abcdef",
    "REDIS_PASSWORD": "changeme",
    "REDIS_URL": "redis://clinic-redis:6379/0",
}
PROBE = (
    "from src.config import get_settings; s = get_settings(); "
    "print(s.environment.value, s.mongodb_url, s.openai_api_key, s.redis_url)"
)


def test_the_test_session_holds_no_setting_of_the_developer() -> None:
    """Every process a test starts inherits this environment: no setting but the tests' own."""
    names = {name.upper() for name in Settings.model_fields}
    assert {k for k in os.environ if k.upper() in names} <= {"ENVIRONMENT"}
    assert os.environ["ENVIRONMENT"] == "test" and os.environ[ENV_FILE_VARIABLE] == ""


def test_a_process_started_as_the_tests_start_them_ignores_a_hostile_env_file(tmp_path: Path) -> None:
    """A production template and real secrets in a `.env` of the working directory: a subprocess
    started with the tests' environment (as the fault, CLI and idempotency tests start theirs)
    reads none of it."""
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in HOSTILE.items()))
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["test", "None", "None", "redis://localhost:6379/0"]


def test_the_demo_environment_drops_a_hostile_shell(tmp_path: Path) -> None:
    """What the demo starts its processes with: none of the shell's settings, and no `.env`."""
    shell = {**HOSTILE, "PATH": "/usr/bin", "HOME": "/home/dev", "LANG": "C.UTF-8"}
    clean = isolated_environ(shell)
    assert clean == {"PATH": "/usr/bin", "HOME": "/home/dev", "LANG": "C.UTF-8", ENV_FILE_VARIABLE: ""}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in HOSTILE.items()))
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={**isolated_environ({**os.environ, **HOSTILE}), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["development", "None", "None", "redis://localhost:6379/0"]
