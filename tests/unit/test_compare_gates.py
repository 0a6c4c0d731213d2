"""bench/compare.py's gates: gate 1 also says where both sides stand against the 50 ms ceiling,
and when 1.2 x the best peer is above that ceiling (no worker could pass the gate in that run)."""

from __future__ import annotations

import pytest

from bench import compare, ours_worker


def results(ours_io: float, taskiq_io: float) -> dict[str, object]:
    return {
        "ours": {"io50": {"jobs_per_s": ours_io}, "noop": {"jobs_per_s": 5000.0}, "latency": {"p50_ms": 1.2}},
        "taskiq": {"io50": {"jobs_per_s": taskiq_io}},
        "saq": {"io50": {"jobs_per_s": 1400.0}, "latency": {"p50_ms": 1.8}},
        "arq-100": {"io50": {"jobs_per_s": 1200.0}, "noop": {"jobs_per_s": 2400.0}},
    }


def test_the_io_job_waits_as_long_as_the_ceiling_assumes() -> None:
    assert compare.IO_WAIT_S == ours_worker.IO_WAIT_S == 0.05


def test_gate_one_reports_the_ceiling_and_the_time_around_the_body() -> None:
    first = compare.gates(results(1800.0, 1400.0))[0]
    assert first["pass"] is True and first["ratio"] == pytest.approx(1800 / 1400)
    assert first["ceiling_jobs_per_s"] == 2000.0 and first["attainable"] is True
    assert first["ours_share_of_ceiling"] == pytest.approx(0.9)
    assert first["ours_ms_around_body"] == pytest.approx(100 / 1800 * 1000 - 50)
    assert first["peer_ms_around_body"] == pytest.approx(100 / 1400 * 1000 - 50)


def test_a_peer_above_five_sixths_of_the_ceiling_makes_gate_one_unattainable() -> None:
    first = compare.gates(results(1830.0, 1720.0))[0]
    assert first["pass"] is False
    assert first["needed_jobs_per_s"] == pytest.approx(2064.0) and first["attainable"] is False


def test_the_printout_says_when_no_worker_could_pass(capsys: pytest.CaptureFixture[str]) -> None:
    compare.print_gates(compare.gates(results(1830.0, 1720.0)))
    printed = capsys.readouterr().out
    assert "ceiling 2,000 jobs/s" in printed and "91.5% of it" in printed
    assert "2,064 jobs/s, above the ceiling" in printed
