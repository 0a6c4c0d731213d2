"""`CpuLoad`: the process's CPU share per window, with hysteresis (fake clocks)."""

from __future__ import annotations

from src.worker.cpu_load import CpuLoad


class Clocks:
    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 5.0

    def advance(self, wall_s: float, share: float) -> None:
        self.wall += wall_s
        self.cpu += wall_s * share


def test_saturated_above_the_line_and_relaxed_only_below_the_lower_one() -> None:
    clocks = Clocks()
    load = CpuLoad(window_s=0.02, wall=lambda: clocks.wall, cpu=lambda: clocks.cpu)
    assert load.saturated() is False  # nothing measured yet
    clocks.advance(0.05, 0.95)
    assert load.saturated() is True
    clocks.advance(0.05, 0.80)  # between the lines: stays saturated
    assert load.saturated() is True
    clocks.advance(0.05, 0.60)
    assert load.saturated() is False
    clocks.advance(0.05, 0.80)  # between the lines: stays relaxed
    assert load.saturated() is False


def test_a_window_shorter_than_the_sampling_window_keeps_the_last_answer() -> None:
    clocks = Clocks()
    load = CpuLoad(window_s=0.02, wall=lambda: clocks.wall, cpu=lambda: clocks.cpu)
    clocks.advance(0.03, 1.0)
    assert load.saturated() is True
    clocks.advance(0.005, 0.0)  # too short to judge: an idle blip does not flip it
    assert load.saturated() is True
    clocks.advance(0.02, 0.0)  # the window, idle, from the last sample: 5 + 20 ms at 0 %
    assert load.saturated() is False
