"""The image's lock: requirements.lock restricted to what `[project].dependencies` needs at run time.

`python -m tests.deploy.runtime_lock > deploy/requirements-runtime.lock` regenerates it from the
installed `.venv` (installed from requirements.lock), so dev tools and what only they need drop out.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
FULL_LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "deploy" / "requirements-runtime.lock"
DEV_TOOLS = ("pytest", "pytest-asyncio", "fakeredis", "ruff", "mypy")

HEADER = """\
# The image's dependencies: requirements.lock minus the dev tools (pytest, pytest-asyncio, fakeredis,
# ruff, mypy) and what only they need. Pins are requirements.lock's. After changing that lock, run:
#   .venv/bin/python -m tests.deploy.runtime_lock > deploy/requirements-runtime.lock
# tests/deploy/test_runtime_lock.py fails when this file drifts.
"""


def read_pins(path: Path) -> dict[str, str]:
    """Canonical name -> the pin line (`name==version`) of a lock file; comments and blanks skipped."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            pins[canonicalize_name(line.split("==", 1)[0])] = line
    return pins


def project_dependencies(root: Path = ROOT) -> list[Requirement]:
    data = tomllib.loads((root / "pyproject.toml").read_text())
    return [Requirement(d) for d in data["project"]["dependencies"]]


def runtime_closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of the requirements and everything they need (extras and markers honoured),
    read from the installed distributions' metadata."""
    extras_seen: dict[str, set[str]] = {}
    stack = list(requirements)
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        known = extras_seen.get(name)
        if known is not None and set(req.extras) <= known:
            continue
        extras = (known or set()) | set(req.extras)
        extras_seen[name] = extras
        environments = [{"extra": e} for e in sorted(extras)] or [{"extra": ""}]
        for spec in metadata.distribution(req.name).requires or []:
            dep = Requirement(spec)
            if dep.marker is None or any(dep.marker.evaluate(env) for env in environments):
                stack.append(dep)
    return set(extras_seen)


def render() -> str:
    """The runtime lock's expected content."""
    pins = read_pins(FULL_LOCK)
    names = runtime_closure(project_dependencies())
    missing = sorted(names - pins.keys())
    if missing:
        raise SystemExit(f"not pinned in requirements.lock: {', '.join(missing)}")
    return HEADER + "".join(f"{pins[n]}\n" for n in sorted(names))


if __name__ == "__main__":
    sys.stdout.write(render())
