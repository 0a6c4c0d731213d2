"""A wrong setting stops the API, a worker or the CLI with one line naming the variable, exit status
2, never a traceback (a production template copied to `.env` used to end in 54 lines)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_TEMPLATE = {
    "ENVIRONMENT": "production",
    "REDIS_PASSWORD": "changeme",
    "API_ACCESS_TOKEN": "x" * 20,
    "APP_VERSION": "1",
}
COMMANDS = {
    "worker": [sys.executable, str(ROOT / "workers.py")],
    "cli": [sys.executable, "-m", "src.cli", "workers"],
    "api": [sys.executable, "-m", "uvicorn", "--factory", "src.api.main:app_from_env", "--port", "0"],
}


@pytest.mark.parametrize("process", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (PRODUCTION_TEMPLATE, "REDIS_PASSWORD holds a placeholder value"),
        ({"APP_TIMEZONE": "America/Sao_Paolo"}, "APP_TIMEZONE 'America/Sao_Paolo' is not an IANA"),
        ({"ARQ_MAX_JOBS": "many"}, "ARQ_MAX_JOBS: Input should be a valid integer"),
    ],
)  # fmt: skip
def test_a_wrong_setting_is_one_line_naming_it(
    tmp_path: Path, process: str, variables: dict[str, str], named: str
) -> None:
    """The placeholder of the production template, a misspelt zone, a number that is not one."""
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "APP_ENV_FILE": str(tmp_path / ".env")}
    env.pop("ENVIRONMENT", None)  # the file's, not the test session's
    result = subprocess.run(
        COMMANDS[process], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("configuration error: "), lines
    assert named in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def image_copy(tmp_path: Path) -> Path:
    """The code as the image holds it: no git checkout to take a version from."""
    copy = tmp_path / "app"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "workers.py", copy / "workers.py")
    return copy


def production_env(**variables: str) -> dict[str, str]:
    base = {
        "ENVIRONMENT": "production",
        "API_ACCESS_TOKEN": "a-real-token-of-32-characters-xx",
        "APP_VERSION": "",
    }
    return {**os.environ, "APP_ENV_FILE": "", **base, **variables}


@pytest.mark.parametrize("source_commit", ["", "unknown"])
def test_an_image_without_a_version_refuses_in_one_line(image_copy: Path, source_commit: str) -> None:
    """Built without "Include Source Commit in Build" and run without SOURCE_COMMIT (or Coolify's
    `unknown`): the worker stops with one line saying what to set, not a crash loop of tracebacks."""
    env = production_env(SOURCE_COMMIT=source_commit)
    result = subprocess.run(
        [sys.executable, "workers.py"], cwd=image_copy, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "APP_VERSION is unknown" in lines[0] and "SOURCE_COMMIT" in lines[0], lines


def test_the_version_falls_back_to_the_source_commit_at_run_time(image_copy: Path) -> None:
    """Coolify sets SOURCE_COMMIT at run time even when the build did not get it: that is the version."""
    env = production_env(SOURCE_COMMIT="3f2c1ab9d0e4")
    probe = "from src.config import get_settings; print(get_settings().app_version)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=image_copy, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout.strip()) == (0, "3f2c1ab9d0e4"), result.stderr
    baked = production_env(SOURCE_COMMIT="3f2c1ab9d0e4", APP_VERSION="v-baked")  # the build's wins
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=image_copy, env=baked, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "v-baked", result.stderr
