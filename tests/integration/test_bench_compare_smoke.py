"""The peer comparison (bench/compare.py) runs end to end in smoke mode (no timing is asserted).

The first run on a machine also builds var/bench-peers-venv (pip install of bench/peers/requirements.txt),
hence the long timeout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.support.bench_smoke import run_bench_smoke

pytestmark = pytest.mark.integration

LIBS = ("arq-100", "saq")


def finite_positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_compare_smoke_prints_finite_positive_figures_per_lib_and_scenario(tmp_path: Path) -> None:
    """`python -m bench.compare --smoke --libs arq-100 saq` exits 0 with every figure finite and > 0."""
    figures_path = tmp_path / "compare.json"
    run_bench_smoke("bench.compare", figures_path, "--libs", *LIBS, timeout=300)
    figures = json.loads(figures_path.read_text())
    results = figures["results"]
    for lib in LIBS:
        for scenario in ("noop", "io50"):
            summary = results[lib][scenario]
            for key in ("jobs_per_s", "enqueue_cmds_per_job", "worker_cmds_per_job"):
                assert finite_positive(summary[key]), (lib, scenario, key, summary)
        latency = results[lib]["latency"]
        for key in ("p50_ms", "p99_ms"):
            assert finite_positive(latency[key]), (lib, key, latency)
    assert len(figures["gates"]) == 3, figures["gates"]
    assert figures["correctness_problems"] == [], figures["correctness_problems"]


def test_baseline_ref_runs_both_trees_interleaved_and_removes_its_worktree(tmp_path: Path) -> None:
    """`bench.compare --smoke --baseline-ref HEAD --rounds 2` runs the commit's tree and this one in
    alternating order, gives old, new and new/old for the three figures, and leaves no worktree."""
    import subprocess

    figures_path = tmp_path / "baseline.json"
    completed = run_bench_smoke(
        "bench.compare", figures_path, "--baseline-ref", "HEAD", "--rounds", "2",
        "--jobs", "100", "--samples", "10", timeout=300,
    )  # fmt: skip
    report = json.loads(figures_path.read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert report["baseline_commit"] == head.stdout.strip()
    assert report["correctness_problems"] == []
    order = [(run["rep"], run["scenario"], run["side"]) for run in report["runs"]]
    assert order[:2] == [(1, "noop", "old"), (1, "noop", "new")] and len(order) == 12
    assert order[6:8] == [(2, "noop", "new"), (2, "noop", "old")]  # the first side alternates
    assert [f["figure"] for f in report["figures"]] == [
        "no-op jobs/s", "time per job around a 50 ms body", "lone-job latency p50",
    ]  # fmt: skip
    for entry in report["figures"]:
        assert len(entry["old_rounds"]) == len(entry["new_rounds"]) == 2, entry
        assert finite_positive(entry["old"]) and finite_positive(entry["new"]), entry
        assert math.isclose(entry["ratio"], entry["new"] / entry["old"]), entry
    assert "no verdict (smoke sizes)" in completed.stdout
    worktrees = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True, check=True)
    assert "bench-baseline-" not in worktrees.stdout


def test_baseline_ref_that_is_no_commit_fails_with_a_clear_error(tmp_path: Path) -> None:
    """An unknown --baseline-ref exits non-zero and names the ref, before any run."""
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--baseline-ref", "no-such-ref-xyz", "--smoke"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode != 0
    assert "no-such-ref-xyz" in completed.stderr


def test_our_runner_reports_redis_cpu_per_job(tmp_path: Path) -> None:
    """`bench/ours_runner.py` (docs/deployment.md, "One Redis") gives Redis's CPU per job for the
    enqueue and the worker phases, finite and positive, next to its commands per job."""
    import subprocess
    import sys

    from scripts.local_redis import start_redis_server

    server = start_redis_server(tmp_path / "redis")
    out = tmp_path / "ours.json"
    try:
        subprocess.run(
            [sys.executable, "bench/ours_runner.py", "--lib", "ours", "--scenario", "io50", "--jobs", "300",
             "--concurrency", "50", "--redis-url", server.url, "--json", str(out)],
            cwd=Path(__file__).resolve().parents[2], check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    finally:
        server.stop()
    figures = json.loads(out.read_text())
    for key in ("enqueue_redis_cpu_us_per_job", "worker_redis_cpu_us_per_job", "worker_cmds_per_job"):
        assert finite_positive(figures[key]), (key, figures)
