"""The peers' own venv (var/bench-peers-venv): the peer job queues must never be importable from the
project's .venv or from src/, so they get a venv of their own, rebuilt when requirements.txt changes."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).resolve().with_name("requirements.txt")
VENV_DIR = REPO_ROOT / "var" / "bench-peers-venv"
STAMP_NAME = ".requirements.sha256"


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def venv_python(venv_dir: Path = VENV_DIR) -> Path:
    return venv_dir / "bin" / "python"


def ensure_peers_venv(venv_dir: Path = VENV_DIR) -> Path:
    """The python of the peers venv, created (or recreated from scratch) when missing or stale."""
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    stamp = venv_dir / STAMP_NAME
    wanted = requirements_hash()
    # A lock, so a test and a manual run starting together do not install into the same dir.
    with open(venv_dir.parent / f"{venv_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = venv_python(venv_dir)
        if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
            return python
        print(f"bench: installing peer libraries into {venv_dir} (a minute or two) ...", file=sys.stderr)
        # From scratch: a package dropped from requirements.txt must not linger.
        shutil.rmtree(venv_dir, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv_dir)], check=True)
        completed = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + ["-r", str(REQUIREMENTS)],
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"pip install -r {REQUIREMENTS} failed:\n{completed.stdout}\n{completed.stderr}"
            )
        stamp.write_text(wanted + "\n")
        return python


if __name__ == "__main__":
    print(ensure_peers_venv())
