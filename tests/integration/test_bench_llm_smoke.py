"""The LLM-mode benchmark runs end to end in smoke mode against the fake OpenAI server (no timing is
asserted): every appointment normalized by the LLM, no server above the concurrency cap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.support.bench_smoke import run_bench_smoke

pytestmark = pytest.mark.integration


def test_llm_mode_benchmark_smoke(tmp_path: Path) -> None:
    """`python -m bench.llm_mode --smoke` (jobs and import) exits 0 with correct, finite figures."""
    figures_path = tmp_path / "llm_mode.json"
    run_bench_smoke("bench.llm_mode", figures_path, timeout=240)
    runs = json.loads(figures_path.read_text())["runs"]
    assert [run["mode"] for run in runs] == ["jobs", "import"]
    for run in runs:
        count = run["appointments"]
        assert count > 0 and run["normalized"] == count and run["failed"] == 0, run
        assert run["sources"] == {"llm": count}, run  # never the rules fallback
        servers = run["servers"]
        assert len(servers) == run["workers"] == 2, run
        assert all(server["max_in_flight"] <= run["cap"] for server in servers), servers
        # every appointment cost exactly one successful call, and nothing else was asked
        assert sum(server["requests_total"] for server in servers) == count, servers
        assert all(set(server["by_status"]) <= {"200"} for server in servers), servers
        rate = run["steady_per_s"]
        assert isinstance(rate, int | float) and math.isfinite(rate) and rate > 0, run


def test_llm_client_cpu_benchmark_smoke(tmp_path: Path) -> None:
    """`python -m bench.llm_client_cpu --smoke` exits 0 with both transports measured, every call
    answered by the LLM path (the benchmark raises otherwise)."""
    figures_path = tmp_path / "llm_client_cpu.json"
    run_bench_smoke("bench.llm_client_cpu", figures_path, timeout=120)
    figures = json.loads(figures_path.read_text())
    assert set(figures["medians"]) == {"httpx", "aiohttp"}
    for medians in figures["medians"].values():
        assert all(math.isfinite(v) and v > 0 for v in medians.values()), figures
    assert figures["ratio"] > 0


def test_llm_client_cpu_compares_the_sdk_parse_helper(tmp_path: Path) -> None:
    """`--compare parse`: the SDK's `chat.completions.parse` (json_schema response_format from the
    pydantic model) gets every call answered by the fake server, as our raw request does (the
    benchmark raises if any call fell back), so the two CPU figures compare like for like."""
    figures_path = tmp_path / "llm_parse.json"
    run_bench_smoke("bench.llm_client_cpu", figures_path, "--compare", "parse", timeout=120)
    figures = json.loads(figures_path.read_text())
    assert set(figures["medians"]) == {"raw", "parse"}
    assert all(m["client_cpu_ms"] > 0 for m in figures["medians"].values()), figures
