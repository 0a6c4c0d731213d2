"""deploy/requirements-runtime.lock: the image's pins, requirements.lock minus the dev tools, each with
the hashes of its wheels (`pip install --require-hashes` in the Dockerfile)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.runtime_lock import (
    DEV_TOOLS,
    FULL_LOCK,
    ROOT,
    RUNTIME_LOCK,
    image_may_install,
    pin_entries,
    project_dependencies,
    read_pins,
    render,
    runtime_closure,
    runtime_pins,
)
from tests.deploy.tools import dockerfile_instructions


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
    """The file's pins are what `make runtime-lock` produces from requirements.lock, and the file is
    laid out as the generator lays it out (its hashes need PyPI, so they are checked below)."""
    entries = pin_entries(RUNTIME_LOCK)
    stale = "deploy/requirements-runtime.lock is stale: run `make runtime-lock`"
    assert [pin for pin, _ in entries] == runtime_pins(), stale
    recorded = dict(entries)
    assert RUNTIME_LOCK.read_text() == render(lambda name, version: recorded[f"{name}=={version}"]), stale


def test_every_pin_has_sha256_hashes() -> None:
    """pip refuses the whole file under --require-hashes when one pin lacks a hash."""
    for pin, hashes in pin_entries(RUNTIME_LOCK):
        assert hashes, f"{pin} has no --hash"
        for value in hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", value), f"{pin}: {value}"


def test_the_image_installs_with_hashes_and_wheels_only() -> None:
    """The Dockerfile installs the lock with --require-hashes and --only-binary, exactly its pins."""
    runs = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "RUN")
    install = runs[
        runs.index("pip install") : runs.index("requirements-runtime.lock", runs.index("pip install"))
    ]
    for flag in ("--require-hashes", "--only-binary=:all:", "--no-deps"):
        assert flag in install, flag


@pytest.mark.parametrize(
    ("filename", "wanted"),
    [
        ("aiohttp-3.14.5-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("aiohttp-3.14.5-cp313-cp313-manylinux_2_28_aarch64.whl", True),
        ("pydantic_core-2.41.5-cp311-cp311-musllinux_1_1_x86_64.whl", False),  # Alpine, not our image
        ("aiohttp-3.14.5-cp310-cp310-manylinux_2_17_x86_64.whl", False),
        ("aiohttp-3.14.5-cp311-cp311-win_amd64.whl", False),
        ("aiohttp-3.14.5-cp311-cp311-macosx_11_0_arm64.whl", False),
        ("cryptography-46.0.1-cp311-abi3-manylinux_2_34_x86_64.whl", True),
        ("arq-0.28.0-py3-none-any.whl", True),
        ("arq-0.28.0.tar.gz", False),  # wheels only: no compiler in the image
    ],
)
def test_the_hashes_cover_the_wheels_the_image_may_pick(filename: str, wanted: bool) -> None:
    assert image_may_install(filename) is wanted


def test_pip_accepts_the_hashes_for_this_machine(tmp_path: Path) -> None:
    """pip downloads every pin for this machine's Python and platform and checks it against the
    file's hashes (what `pip install --require-hashes` does in the image)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "--only-binary=:all:", "--dest", str(tmp_path), "-r", str(RUNTIME_LOCK)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(tmp_path.glob("*.whl"))) == len(runtime_pins())
