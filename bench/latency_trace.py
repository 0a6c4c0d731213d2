"""Where a lone job's latency goes: timestamps at the hand-over points of the caller and the worker.

`python -m bench.latency_trace [--samples 1000] [--smoke] [--json PATH]`

Runs the latency scenario of `bench/ours_runner.py` (our worker, every safety on, an idle worker,
one job at a time) against a fresh redis-server, with `BENCH_TRACE_DIR` set: both processes then
wrap a few methods (`install`) so that each records `time.perf_counter_ns()` (CLOCK_MONOTONIC, one
clock for every process on the host) as it starts and ends. The marks of both processes are merged
in time order and cut into samples (`caller.start` to `caller.end`); for the samples that went
through the most common sequence of marks, the median of each step is printed, so the steps add up
to about the p50. Wrapping costs about a microsecond a mark; the figures are for comparing steps
and commits, not for the gate (`bench.compare` measures that, untraced).
"""

from __future__ import annotations

import argparse
import atexit
import collections
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.local_redis import start_redis_server  # noqa: E402

ENV = "BENCH_TRACE_DIR"
_marks: list[tuple[str, int]] = []
_clock = time.perf_counter_ns
_tracing = False  # set by `install`: an untraced run records nothing


def mark(name: str) -> None:
    if _tracing:
        _marks.append((name, _clock()))


def _wrap(owner: Any, attribute: str, before: str, after: str) -> None:
    """Mark `before` when owner.attribute starts and `after` when it returns (or raises)."""
    original: Callable[..., Any] = getattr(owner, attribute)

    @functools.wraps(original)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        _marks.append((before, _clock()))
        try:
            return await original(*args, **kwargs)
        finally:
            _marks.append((after, _clock()))

    setattr(owner, attribute, traced)


def _wrap_sync(owner: Any, attribute: str, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, attribute)

    @functools.wraps(original)
    def traced(*args: Any, **kwargs: Any) -> Any:
        _marks.append((name, _clock()))
        return original(*args, **kwargs)

    setattr(owner, attribute, traced)


def install(role: str) -> None:
    """Wrap the hand-over points of `role` ("caller" or "worker") when `BENCH_TRACE_DIR` is set; the
    marks go to that directory when the process exits."""
    global _tracing
    directory = os.environ.get(ENV)
    if not directory:
        return
    _tracing = True
    from src.application.services.task_service import TaskService
    from src.infrastructure.completion_feed import RedisCompletionFeed
    from src.infrastructure.queue.handoff import Handoff
    from src.infrastructure.queue.lease_consumer import LeaseConsumer
    from src.infrastructure.sqlite_repository import SQLiteRepository
    from src.worker.app_worker import AppWorker

    if role == "caller":
        _wrap(SQLiteRepository, "create_queued_jobs", "caller.insert", "caller.inserted")
        _wrap(TaskService, "_push_chunk", "caller.push", "caller.pushed")
        _wrap_sync(RedisCompletionFeed, "_announced", "caller.announced")
        _wrap(SQLiteRepository, "get_job", "caller.read", "caller.read_done")
    else:
        _wrap(Handoff, "wait", "worker.wait", "worker.handed")
        _wrap(AppWorker, "_run_job", "worker.run_job", "worker.run_job_done")
        _wrap(SQLiteRepository, "claim_job", "worker.claim", "worker.claimed")
        _wrap(SQLiteRepository, "finish_job", "worker.ledger_finish", "worker.ledger_finished")
        _wrap(LeaseConsumer, "finish", "worker.finish_script", "worker.finish_script_done")

    def dump() -> None:
        Path(directory, f"{role}-{os.getpid()}.json").write_text(json.dumps(_marks))

    atexit.register(dump)


def steps(marks: list[tuple[str, int]], warmups: int) -> tuple[list[str], dict[str, float], float, int]:
    """The most common sequence of marks per sample, the median µs of each step of it, the median
    total, and how many samples took that sequence."""
    samples: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] | None = None
    for name, at in sorted(marks, key=lambda m: m[1]):
        if name == "caller.start":
            current = [(name, at)]
        elif current is not None:
            current.append((name, at))
            if name == "caller.end":
                samples.append(current)
                current = None
    samples = samples[warmups:]
    if not samples:
        raise SystemExit("no complete sample in the trace")
    sequences = collections.Counter(tuple(n for n, _ in s) for s in samples)
    common, count = sequences.most_common(1)[0]
    chosen = [s for s in samples if tuple(n for n, _ in s) == common]
    per_step: dict[str, float] = {}
    for i in range(1, len(common)):
        key = f"{common[i - 1]} -> {common[i]}"
        if key in per_step:  # a step taken twice (a read before the job ended, then one after)
            key += f" (#{sum(k.startswith(key) for k in per_step) + 1})"
        per_step[key] = statistics.median((s[i][1] - s[i - 1][1]) / 1000 for s in chosen)
    total = statistics.median((s[-1][1] - s[0][1]) / 1000 for s in chosen)
    return list(common), per_step, total, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="50 samples")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    samples = 50 if args.smoke else args.samples
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
        server = start_redis_server(Path(tmp) / "redis")
        traces = Path(tmp) / "marks"
        traces.mkdir()
        try:
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "ours_runner.py"), "--scenario", "latency",
                 "--jobs", "1", "--concurrency", "100", "--samples", str(samples),
                 "--redis-url", server.url, "--json", str(Path(tmp) / "figures.json")],
                cwd=ROOT, check=True, capture_output=True, timeout=600,
                env={**os.environ, ENV: str(traces), "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
        finally:
            server.stop()
        marks: list[tuple[str, int]] = []
        for path in traces.glob("*.json"):
            marks.extend((name, at) for name, at in json.loads(path.read_text()))
        p50 = json.loads((Path(tmp) / "figures.json").read_text())["p50_ms"]
    from bench.ours_runner import WARMUP_SAMPLES

    sequence, per_step, total, count = steps(marks, WARMUP_SAMPLES)
    print(f"{samples} samples, traced p50 {p50:.2f} ms; {count} took the most common sequence:")
    for key, micros in per_step.items():
        print(f"  {key:58} {micros:7.0f} µs")
    print(f"  {'total (median of those samples)':58} {total:7.0f} µs")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"samples": samples, "p50_ms": p50, "sequence": sequence, "steps_us": per_step,
                        "total_us": total, "samples_in_sequence": count})
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
