"""Run one benchmark module's smoke mode as CI does: `python -m MODULE --smoke ... --json PATH`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_bench_smoke(
    module: str, figures_path: Path, *extra: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run it from the repository root; assert it exited 0 (its output in the message otherwise)."""
    completed = subprocess.run(
        [sys.executable, "-m", module, "--smoke", *extra, "--json", str(figures_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed
