"""The lifecycle benchmarks run end to end in smoke mode (no timing is asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_lifecycle_benchmark_smoke_prints_finite_positive_ratios(tmp_path: Path) -> None:
    """`python -m bench.lifecycle --smoke` exits 0 and reports a finite positive ratio for each benchmark."""
    figures_path = tmp_path / "figures.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.lifecycle", "--smoke", "--json", str(figures_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "No-op throughput" in completed.stdout and "Recovery after SIGKILL" in completed.stdout
    figures = json.loads(figures_path.read_text())
    assert len(figures["throughput"]) == 1 and len(figures["recovery"]) == 1
    for figure in figures["throughput"] + figures["recovery"]:
        assert math.isfinite(figure["ratio"]) and figure["ratio"] > 0, figure
