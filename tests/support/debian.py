"""Install a Debian package a test needs when it is missing (as root), or say exactly what to run."""

from __future__ import annotations

import os
import shutil
import subprocess

_updated = False


def ensure_debian_binary(binary: str, package: str) -> str:
    """Path of `binary`, installing `package` with apt-get when missing and running as root."""
    global _updated
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"{binary} is missing: run `sudo apt-get install {package}` and retry")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
        _updated = True
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True, env=env, capture_output=True, timeout=900,
    )  # fmt: skip
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"installing {package} did not provide {binary}")
    return found
