"""deploy/requirements-runtime.lock: the image's pins, requirements.lock minus the dev tools."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.runtime_lock import (
    DEV_TOOLS,
    FULL_LOCK,
    ROOT,
    RUNTIME_LOCK,
    project_dependencies,
    read_pins,
    render,
    runtime_closure,
)


def test_every_project_dependency_is_pinned_within_its_range() -> None:
    """Each `[project].dependencies` entry is pinned in the runtime lock at a version it accepts."""
    pins = read_pins(RUNTIME_LOCK)
    for requirement in project_dependencies():
        line = pins.get(canonicalize_name(requirement.name))
        assert line is not None, f"{requirement.name} is not pinned in {RUNTIME_LOCK.name}"
        version = line.split("==", 1)[1]
        assert requirement.specifier.contains(version), f"{line} is outside {requirement}"


def test_runtime_pins_equal_the_full_lock() -> None:
    """Every runtime pin is the very line requirements.lock has for that package."""
    full = read_pins(FULL_LOCK)
    for name, line in read_pins(RUNTIME_LOCK).items():
        assert full.get(name) == line, f"{line} differs from requirements.lock ({full.get(name)})"


def test_runtime_lock_has_no_dev_tools() -> None:
    """pytest, pytest-asyncio, fakeredis, ruff, mypy and what only they need are left out."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    dev_only = runtime_closure([Requirement(d) for d in dev]) - runtime_closure(project_dependencies())
    assert {canonicalize_name(t) for t in DEV_TOOLS} <= dev_only
    assert not dev_only & read_pins(RUNTIME_LOCK).keys()


def test_runtime_lock_is_regenerated() -> None:
    """The file equals what `python -m tests.deploy.runtime_lock` produces from requirements.lock."""
    assert RUNTIME_LOCK.read_text() == render(), (
        "deploy/requirements-runtime.lock is stale: "
        "run `.venv/bin/python -m tests.deploy.runtime_lock > deploy/requirements-runtime.lock`"
    )
