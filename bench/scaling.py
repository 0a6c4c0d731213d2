"""Throughput with 1 and 2 worker processes on this machine (issue 7, "Scaling").

`python -m bench.scaling [--jobs 5000] [--reps 3] [--smoke] [--json PATH]`

Runs `bench/ours_runner.py` (our worker as `workers.py` builds it, every safety on, 100 slots each)
for the no-op and the 50 ms I/O scenarios with 1 and then 2 worker processes against one fresh
redis-server each time, and prints jobs/s and the ratio 2 processes ÷ 1 (the baseline, measured in
the same run). Jobs are enqueued before the workers start; the clock runs from the first job's start
to the last job's end (see bench/peers/runner.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.local_redis import start_redis_server

ROOT = Path(__file__).resolve().parent.parent


def run_once(scenario: str, jobs: int, workers: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        server = start_redis_server(Path(tmp) / "redis")
        try:
            out = Path(tmp) / "figures.json"
            subprocess.run(
                [sys.executable, str(ROOT / "bench" / "ours_runner.py"), "--scenario", scenario,
                 "--jobs", str(jobs), "--concurrency", "100", "--workers", str(workers),
                 "--redis-url", server.url, "--json", str(out)],
                cwd=ROOT, check=True, capture_output=True, timeout=600,
            )  # fmt: skip
            return float(json.loads(out.read_text())["jobs_per_s"])
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="300 jobs, 1 rep")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    jobs, reps = (300, 1) if args.smoke else (args.jobs, args.reps)
    figures: dict[str, dict[str, float]] = {}
    for scenario in ("noop", "io50"):
        by_workers = {}
        for workers in (1, 2):
            by_workers[str(workers)] = statistics.median(
                run_once(scenario, jobs, workers) for _ in range(reps)
            )
        figures[scenario] = {**by_workers, "ratio": by_workers["2"] / by_workers["1"]}
        one, two = by_workers["1"], by_workers["2"]
        print(
            f"{scenario:5}  1 process {one:7.0f} jobs/s  2 processes {two:7.0f} jobs/s"
            f"  ratio {two / one:.2f}",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"jobs": jobs, "reps": reps, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
