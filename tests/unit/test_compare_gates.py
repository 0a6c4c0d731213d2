"""bench/compare.py's gates: gate 1 also says where both sides stand against the 50 ms ceiling,
and when 1.2 x the best peer is above that ceiling (no worker could pass the gate in that run); a
smoke run gives no speed verdict, and correctness (every job done and succeeded) fails any run.
bench/baseline.py's verdicts: better, within 5 %, within the rounds' spread, or worse."""

from __future__ import annotations

import pytest

from bench import baseline, compare, ours_worker


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
    compare.print_gates(compare.gates(results(1830.0, 1720.0)), smoke=False)
    printed = capsys.readouterr().out
    assert "ceiling 2,000 jobs/s" in printed and "91.5% of it" in printed
    assert "2,064 jobs/s, above the ceiling" in printed


def test_a_smoke_run_prints_ratios_without_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    compare.print_gates(compare.gates(results(1830.0, 1720.0)), smoke=True)
    printed = capsys.readouterr().out
    assert "no verdict" in printed and "1.06" in printed
    assert "PASS" not in printed and "FAIL" not in printed and "above the ceiling" not in printed


def run(result: dict[str, object] | None, error: str | None = None) -> dict[str, object]:
    return {"lib": "ours", "scenario": "noop", "rep": 1, "result": result, "error": error}


def test_correctness_fails_a_failed_run_and_a_ledger_short_of_the_jobs() -> None:
    problems = compare.correctness_problems(
        [
            run({"jobs": 200, "ledger_succeeded": 200}),
            run({"jobs": 200}),  # a peer, or an older runner: no ledger to count
            run({"jobs": 200, "ledger_succeeded": 199}),
            run(None, "runner exited with 1: timed out"),
        ]
    )
    assert problems == [
        "ours noop rep 1: 199 of 200 jobs succeeded in the ledger",
        "ours noop rep 1: runner exited with 1: timed out",
    ]


@pytest.mark.parametrize(
    ("index", "old", "new", "verdict"),
    [
        (0, [1000.0, 1010.0], [1100.0, 1120.0], "better"),  # jobs/s: higher is better
        (0, [1000.0, 1002.0], [960.0, 962.0], "within 5 %"),
        (0, [1000.0, 1200.0], [930.0, 950.0], "within the rounds' spread"),
        (0, [1000.0, 1010.0], [900.0, 905.0], "worse"),
        (2, [1.0, 1.1], [1.3, 1.35], "worse"),  # p50 ms: lower is better
        (2, [1.3, 1.35], [1.0, 1.1], "better"),
    ],
)
def test_baseline_verdicts(index: int, old: list[float], new: list[float], verdict: str) -> None:
    judged = baseline.judge(baseline.FIGURES[index], old, new)
    assert judged["verdict"] == verdict, judged
    assert judged["ratio"] == pytest.approx(judged["new"] / judged["old"])


def test_time_around_the_body_is_what_a_worker_adds_to_100_slots_of_50_ms() -> None:
    assert baseline.ms_around_body({"jobs_per_s": 1600.0}) == pytest.approx(100 / 1600 * 1000 - 50)
