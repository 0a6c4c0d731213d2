"""The lifecycle benchmarks run end to end in smoke mode (no timing is asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.support.bench_smoke import run_bench_smoke

pytestmark = pytest.mark.integration


def test_lifecycle_benchmark_smoke_prints_finite_positive_ratios(tmp_path: Path) -> None:
    """`python -m bench.lifecycle --smoke` exits 0 and reports a finite positive ratio for each benchmark."""
    figures_path = tmp_path / "figures.json"
    completed = run_bench_smoke("bench.lifecycle", figures_path, timeout=180)
    assert "No-op throughput" in completed.stdout and "Recovery after SIGKILL" in completed.stdout
    figures = json.loads(figures_path.read_text())
    assert len(figures["throughput"]) == 1 and len(figures["recovery"]) == 1
    for figure in figures["throughput"] + figures["recovery"]:
        assert math.isfinite(figure["ratio"]) and figure["ratio"] > 0, figure
