"""The bulk-enqueue, import and store benchmarks run end to end in smoke mode (no timing is asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.support.bench_smoke import run_bench_smoke

pytestmark = pytest.mark.integration


def run_smoke(module: str, figures_path: Path) -> dict[str, object]:
    run_bench_smoke(module, figures_path, timeout=180)
    figures: dict[str, object] = json.loads(figures_path.read_text())
    return figures


def finite_positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_enqueue_benchmark_smoke_prints_finite_positive_figures(tmp_path: Path) -> None:
    """`python -m bench.enqueue --smoke` exits 0 with finite positive jobs/s and ratio."""
    figures = run_smoke("bench.enqueue", tmp_path / "enqueue.json")
    for key in ("ours_jobs_per_s", "arq_jobs_per_s", "ratio"):
        assert finite_positive(figures[key]), (key, figures)


def test_import_benchmark_smoke_prints_finite_positive_figures(tmp_path: Path) -> None:
    """`python -m bench.import50k --smoke` exits 0: every row finished, finite positive figures."""
    figures = run_smoke("bench.import50k", tmp_path / "import.json")
    for key in ("end_to_end_s", "parse_s", "appointments_per_s", "ratio", "health_p99_ms"):
        assert finite_positive(figures[key]), (key, figures)
    rss = figures["worker_max_rss_mb"]
    assert isinstance(rss, list) and rss and all(finite_positive(mb) for mb in rss), figures


def test_scaling_benchmark_smoke_prints_finite_positive_figures(tmp_path: Path) -> None:
    """`python -m bench.scaling --smoke` exits 0 with jobs/s for 1 and 2 processes and their ratio."""
    figures = run_smoke("bench.scaling", tmp_path / "scaling.json")
    for scenario in ("noop", "io50"):
        by_workers = figures[scenario]
        assert isinstance(by_workers, dict)
        for key in ("1", "2", "ratio"):
            assert finite_positive(by_workers[key]), (scenario, key, figures)


def test_latency_trace_smoke_splits_a_lone_job_into_steps(tmp_path: Path) -> None:
    """`python -m bench.latency_trace --smoke` exits 0; the marks of both processes were merged into
    samples, whose most common sequence crosses from the caller to the worker and back."""
    figures = run_smoke("bench.latency_trace", tmp_path / "trace.json")
    sequence = figures["sequence"]
    assert isinstance(sequence, list)
    assert sequence[0] == "caller.start" and sequence[-1] == "caller.end"
    # (whether the caller was woken by the announcement or found the result at its first read
    # depends on the machine's timing, and so does a hand-off: neither is required here)
    for mark in ("caller.insert", "caller.push", "worker.run_job", "worker.claim", "worker.finish_script"):
        assert mark in sequence, (mark, sequence)
    assert (
        sequence.index("caller.push")
        < sequence.index("worker.claim")
        < sequence.index("worker.finish_script")
        < sequence.index("caller.end")
    )
    steps = figures["steps_us"]
    assert isinstance(steps, dict) and len(steps) == len(sequence) - 1
    assert all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in steps.values())
    assert finite_positive(figures["total_us"]) and finite_positive(figures["p50_ms"])


def test_store_benchmark_smoke_prints_finite_positive_figures(tmp_path: Path) -> None:
    """`python -m bench.store --smoke` exits 0 (every write and count it makes checked) with a finite
    positive figure for each scenario."""
    figures = run_smoke("bench.store", tmp_path / "store.json")
    this = figures["this"]
    assert isinstance(this, dict) and set(this) == {
        "insert", "save-page", "save-stale", "save-one", "get", "page", "count"
    }  # fmt: skip
    assert all(finite_positive(value) for value in this.values()), figures
