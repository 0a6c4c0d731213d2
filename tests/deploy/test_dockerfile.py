"""The Dockerfile: hadolint-clean, multi-stage, non-root, exec-form commands, versioned, no reload."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.runtime_lock import SUPPORTED_PYTHONS
from tests.deploy.tools import (
    COMPOSE_FILES,
    ROOT,
    dockerfile_instructions,
    exec_form,
    healthcheck_command,
    load_yaml,
    pip_tool,
)

API_COMMAND = "python -m uvicorn --factory src.api.main:app_from_env --host 0.0.0.0 --port 8000".split()


def test_hadolint_finds_nothing_at_warning_level() -> None:
    """`hadolint --failure-threshold warning Dockerfile` passes."""
    hadolint = pip_tool("hadolint")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build_from_one_pinned_python_slim_image() -> None:
    """A builder stage installs the runtime lock; the final stage copies its virtualenv. Both stages
    use the same base, pinned to a patch release (and optionally a digest) of a supported Python,
    so a rebuild does not change Python or Debian behind the team's back."""
    instructions = dockerfile_instructions()
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    base = stages[0].removesuffix(" AS builder")
    assert stages == [f"{base} AS builder", f"{base} AS runtime"]
    pinned = re.fullmatch(r"python:(3\.\d+)\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base)
    assert pinned, f"{base} is not pinned to a patch release"
    assert pinned.group(1) in SUPPORTED_PYTHONS
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    assert any(
        "-r /tmp/requirements-runtime.lock" in r and "--no-deps" in r and "pip check" in r for r in runs
    )
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies


def test_dependency_layer_comes_before_the_code() -> None:
    """The lock is copied and installed before any code, so code changes reuse the cached layer."""
    instructions = dockerfile_instructions()
    position = {i: n for n, i in enumerate(instructions)}
    lock_copy = next(i for i in instructions if i[0] == "COPY" and "requirements-runtime.lock" in i[1])
    install = next(i for i in instructions if i[0] == "RUN" and "pip install" in i[1])
    code_copies = [i for i in instructions if i[0] == "COPY" and i[1].split()[0] in ("src", "workers.py")]
    assert len(code_copies) == 2
    assert position[lock_copy] < position[install] < min(position[c] for c in code_copies)


def test_runs_as_a_non_root_user() -> None:
    """The last USER is a non-root uid."""
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_cmd_is_the_api_in_exec_form_with_a_graceful_timeout() -> None:
    """CMD is exec form: `python -m uvicorn --factory ... --port 8000 --timeout-graceful-shutdown N`."""
    [cmd] = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    command = exec_form(cmd)
    assert command[: len(API_COMMAND)] == API_COMMAND
    assert command[command.index("--timeout-graceful-shutdown") + 1].isdigit()
    assert not [i for i in dockerfile_instructions() if i[0] == "ENTRYPOINT"]


def test_healthcheck_is_exec_form_and_right_for_each_role() -> None:
    """HEALTHCHECK runs python (no curl in slim images): the role-aware check of src/healthcheck.py
    (tests/unit/test_healthcheck.py), with a timeout."""
    [arguments] = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert "--timeout=" in arguments and "--start-period=" in arguments
    assert healthcheck_command() == ["python", "-m", "src.healthcheck"]


def test_app_version_is_a_build_argument_baked_into_the_environment() -> None:
    """`ARG APP_VERSION` then `ENV APP_VERSION=${APP_VERSION}` in the final stage, after every RUN."""
    instructions = dockerfile_instructions()
    final = instructions[max(n for n, i in enumerate(instructions) if i[0] == "FROM") :]
    arg = next(n for n, i in enumerate(final) if i[0] == "ARG" and i[1].startswith("APP_VERSION"))
    env = next(n for n, i in enumerate(final) if i[0] == "ENV" and "APP_VERSION=${APP_VERSION}" in i[1])
    last_run = max(n for n, i in enumerate(final) if i[0] == "RUN")
    assert last_run < arg < env


def test_compose_files_run_the_same_api_command_and_healthcheck() -> None:
    """The compose api services use the Dockerfile's CMD and HEALTHCHECK commands verbatim."""
    [cmd] = [args for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    for path in COMPOSE_FILES:
        api = load_yaml(path)["services"]["api"]
        assert api["command"] == exec_form(cmd), path
        assert api["healthcheck"]["test"] == ["CMD", *healthcheck_command()], path


def test_no_auto_reload_anywhere() -> None:
    """No `--reload` in the Dockerfile, the compose files or the start script (the job-stall incident)."""
    paths = [ROOT / "Dockerfile", *COMPOSE_FILES, ROOT / "scripts" / "start_web_and_workers.sh"]
    for path in paths:
        text = path.read_text()
        assert "--reload" not in text and "reload=True" not in text, path


def test_nothing_secret_goes_into_the_image() -> None:
    """The image copies named paths only (never the whole context), `.env` is excluded from the build
    context, and no secret setting is given a value in the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources = line.split()[1:-1]
            assert "." not in sources and "./" not in sources, line
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv"} <= set(ignored)
    for secret in ("API_ACCESS_TOKEN", "API_TOKENS", "REDIS_PASSWORD", "OPENAI_API_KEY", "MONGODB_URL"):
        assert secret not in text, f"{secret} must come from the environment at run time, not the image"
