"""The image's lock: requirements.lock restricted to what `[project].dependencies` needs at run time,
with the sha256 of every wheel the image may install (`pip install --require-hashes`).

`python -m tests.deploy.runtime_lock > deploy/requirements-runtime.lock` regenerates it from the
installed `.venv` (installed from requirements.lock), so dev tools and what only they need drop out;
the hashes come from PyPI's JSON API (pypi.org, the registry pip installs from): the wheels for the
supported Pythons (SUPPORTED_PYTHONS) on glibc Linux x86_64 and aarch64, and pure-Python wheels.
"""

from __future__ import annotations

import json
import sys
import tomllib
import urllib.request
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[2]
FULL_LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "deploy" / "requirements-runtime.lock"
DEV_TOOLS = ("pytest", "pytest-asyncio", "fakeredis", "ruff", "mypy")
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")  # docs/deployment.md "Python versions"
IMAGE_ARCHITECTURES = ("x86_64", "aarch64")

HEADER = """\
# The image's dependencies: requirements.lock minus the dev tools (pytest, pytest-asyncio, fakeredis,
# ruff, mypy) and what only they need. Pins are requirements.lock's. After changing that lock, run:
#   make runtime-lock    (hashes from pypi.org: the wheels for CPython 3.11-3.13, Linux x86_64/aarch64)
# tests/deploy/test_runtime_lock.py fails when this file drifts.
"""


def pin_entries(path: Path) -> list[tuple[str, list[str]]]:
    """(pin line `name==version`, its hashes) per requirement of a lock file, continuation lines
    joined; comments and blanks skipped."""
    entries: list[tuple[str, list[str]]] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.strip():
            pin, *options = logical.split()
            entries.append((pin, [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")]))
        logical = ""
    return entries


def read_pins(path: Path) -> dict[str, str]:
    """Canonical name -> the pin line (`name==version`) of a lock file."""
    return {canonicalize_name(pin.split("==", 1)[0]): pin for pin, _ in pin_entries(path)}


def image_may_install(filename: str) -> bool:
    """A wheel pip could pick in the image: CPython 3.11-3.13 (or pure Python), glibc Linux on x86_64
    or aarch64. Source archives are left out: the image installs wheels only."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    pythons = {"cp" + v.replace(".", "") for v in SUPPORTED_PYTHONS}
    for tag in tags:
        platform_ok = tag.platform == "any" or (
            tag.platform.startswith("manylinux") and tag.platform.endswith(IMAGE_ARCHITECTURES)
        )
        python_ok = tag.abi in ("none", "abi3") or tag.interpreter in pythons
        if platform_ok and python_ok and (tag.interpreter.startswith(("py3", "cp3"))):
            return True
    return False


def pypi_hashes(name: str, version: str) -> list[str]:
    """sha256 of the image's candidate wheels of one release, from PyPI's JSON API."""
    url = f"https://pypi.org/pypi/{name}/json"
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a fixed https URL
        files = json.load(response)["releases"].get(version, [])
    hashes = sorted(f"sha256:{f['digests']['sha256']}" for f in files if image_may_install(f["filename"]))
    if not hashes:
        raise SystemExit(f"{name}=={version}: no wheel for CPython {', '.join(SUPPORTED_PYTHONS)} on Linux")
    return hashes


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


def runtime_pins() -> list[str]:
    """The runtime lock's pin lines, sorted: requirements.lock's, for the runtime closure."""
    pins = read_pins(FULL_LOCK)
    names = runtime_closure(project_dependencies())
    missing = sorted(names - pins.keys())
    if missing:
        raise SystemExit(f"not pinned in requirements.lock: {', '.join(missing)}")
    return [pins[n] for n in sorted(names)]


def render(hashes: Callable[[str, str], list[str]] = pypi_hashes) -> str:
    """The runtime lock's content, each pin with its wheels' hashes."""
    blocks = []
    for pin in runtime_pins():
        name, version = pin.split("==", 1)
        blocks.append(" \\\n".join([pin, *(f"    --hash={h}" for h in hashes(name, version))]) + "\n")
    return HEADER + "".join(blocks)


if __name__ == "__main__":
    sys.stdout.write(render())
