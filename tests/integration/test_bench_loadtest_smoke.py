"""The ghost-worker load test runs end to end in smoke mode (40@17 then 100@50): every request
succeeds, no "Too many connections", Redis connections within the pools' sum (no timing asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.support.bench_smoke import run_bench_smoke

pytestmark = pytest.mark.integration


def finite_positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_loadtest_smoke_meets_the_gates(tmp_path: Path) -> None:
    figures_path = tmp_path / "loadtest.json"
    run_bench_smoke("bench.loadtest", figures_path, timeout=240)
    figures = json.loads(figures_path.read_text())

    phases = figures["phases"]
    assert [(p["requests"], p["concurrency"]) for p in phases] == [(40, 17), (100, 50)], figures
    for phase in phases:
        assert phase["successes"] == phase["requests"], phase
        assert phase["failures"] == {}, phase
        assert phase["too_many_connections"] == 0, phase
        assert finite_positive(phase["p50_ms"]) and finite_positive(phase["p99_ms"]), phase
        assert phase["p50_ms"] <= phase["p99_ms"], phase
        assert phase["connected_clients_samples"] > 0, phase
    assert figures["too_many_connections"] == 0, figures
    assert figures["sampler_errors"] == 0, figures
    bound = figures["connection_bound"]
    assert isinstance(bound, int) and bound > 0, figures
    assert 0 < figures["connected_clients_max"] <= bound, figures
    assert figures["unexpected_pool_sites"] == {}, figures  # the bound was worked out from this code
    assert figures["gates"] == {"success": True, "too_many_connections": True, "connected_clients": True}
