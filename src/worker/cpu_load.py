"""Whether the worker process is short of CPU: its CPU time (every thread) over wall time, sampled
at most every `window_s`, with hysteresis so one sample near the line does not flip the answer.

The claim loop asks this before gathering freed slots (`AppWorker._slots_to_claim`): a CPU-bound
worker gains from fewer, bigger claims; one with CPU to spare gains from claiming a slot at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SATURATED_ABOVE = 0.85  # share of one core: the process runs Python code under one GIL
RELAXED_BELOW = 0.70


class CpuLoad:
    def __init__(
        self,
        *,
        window_s: float = 0.02,
        wall: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._window_s = window_s
        self._wall = wall
        self._cpu = cpu
        self._since = (wall(), cpu())
        self._saturated = False

    def saturated(self) -> bool:
        """True while the process's CPU share of the last window is above `SATURATED_ABOVE`, until it
        falls below `RELAXED_BELOW`; the answer of the last full window between samples."""
        wall, cpu = self._wall(), self._cpu()
        span = wall - self._since[0]
        if span >= self._window_s:
            share = (cpu - self._since[1]) / span
            self._saturated = share > (RELAXED_BELOW if self._saturated else SATURATED_ABOVE)
            self._since = (wall, cpu)
        return self._saturated
