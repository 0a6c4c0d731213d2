"""A wrong setting stops the API, a worker or the CLI with one line naming the variable, exit status
2, never a traceback (a production template copied to `.env` used to end in 54 lines)."""

from __future__ import annotations

import os
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
