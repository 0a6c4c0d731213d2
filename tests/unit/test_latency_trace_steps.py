"""bench.latency_trace's merge of the marks: one step per hand-over, a step taken twice kept twice."""

from __future__ import annotations

from bench.latency_trace import steps


def sample(start: int, names: list[str]) -> list[tuple[str, int]]:
    return [(name, start + 10 * i) for i, name in enumerate(names)]


def test_the_most_common_sequence_and_its_median_steps() -> None:
    lone = ["caller.start", "caller.push", "worker.claim", "caller.read", "caller.end"]
    waited = ["caller.start", "caller.push", "caller.read", "worker.claim", "caller.read", "caller.end"]
    marks = sample(0, lone) + sample(1000, lone) + sample(2000, waited) + sample(3000, lone)
    sequence, per_step, total, count = steps(marks, warmups=1)
    assert sequence == lone and count == 2  # the first sample was a warm-up
    assert list(per_step) == [
        "caller.start -> caller.push",
        "caller.push -> worker.claim",
        "worker.claim -> caller.read",
        "caller.read -> caller.end",
    ]
    assert all(v == 10 / 1000 for v in per_step.values()) and total == 40 / 1000


def test_a_step_taken_twice_is_kept_twice() -> None:
    twice = [
        "caller.start",
        "caller.read",
        "caller.read_done",
        "caller.read",
        "caller.read_done",
        "caller.end",
    ]
    sequence, per_step, _, _ = steps(sample(0, twice) + sample(1000, twice), warmups=0)
    assert len(per_step) == len(sequence) - 1
    assert "caller.read -> caller.read_done (#2)" in per_step
