"""The lifecycle benchmarks: `python -m bench.lifecycle [--jobs N] [--slots N] [--smoke]`.

1. No-op throughput of one worker process, ours (all lifecycle safety on, ledger included) ÷ raw
   arq 0.28, same slots and poll delay (gate >= 0.9), once per poll delay given.
2. Recovery after SIGKILL of a worker holding a running job, ours ÷ arq's 310 s TTL (gate <= 0.1),
   with the default lease (30 s, beat 5 s) and a short one.

Everything runs on a private redis-server on a free loopback port and SQLite files in a temporary
directory; nothing touches a Redis on 6379. `--smoke` runs tiny sizes in a few seconds (CI).
`--json PATH` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import redis_server
from bench.recovery import ARQ_RECOVERY_S, RecoveryConfig, RecoveryResult, run_recovery
from bench.throughput import ThroughputConfig, ThroughputResult, profile_ours, run_throughput
from src.logging import configure_logging

THROUGHPUT_GATE = 0.9
RECOVERY_GATE = 0.1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds (CI)")
    parser.add_argument("--jobs", type=int, help="no-op jobs per throughput run (default 5000; smoke 200)")
    parser.add_argument("--slots", type=int, default=100, help="max_jobs of both workers (default 100)")
    parser.add_argument("--reps", type=int, help="throughput runs per side, median (default 5; smoke 1)")
    parser.add_argument(
        "--poll-delay",
        type=float,
        nargs="+",
        help="poll delay(s) in s, same for both sides (default 0.5 (our default) and 0.05; smoke 0.05)",
    )
    parser.add_argument("--beat", type=float, default=5.0, help="our heartbeat interval in s (default 5)")
    parser.add_argument("--lease", type=float, default=30.0, help="our job lease in s (default 30)")
    parser.add_argument(
        "--short-lease",
        type=float,
        nargs=2,
        metavar=("LEASE", "BEAT"),
        help="the short lease and beat of the recovery run (default 3 0.5; smoke 1 0.3)",
    )
    parser.add_argument(
        "--recovery-reps", type=int, help="kills per recovery configuration (default 3; smoke 1)"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also run ours with a task that skips the ledger"
    )
    parser.add_argument("--only", choices=("throughput", "recovery"), help="run one benchmark only")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of our side")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (200 if args.smoke else 5000)
    args.reps = args.reps or (1 if args.smoke else 5)
    args.poll_delay = args.poll_delay or ([0.05] if args.smoke else [0.5, 0.05])
    args.short_lease = args.short_lease or ([1.0, 0.3] if args.smoke else [3.0, 0.5])
    args.recovery_reps = args.recovery_reps or (1 if args.smoke else 3)
    return args


def throughput_table(results: list[ThroughputResult]) -> list[str]:
    lines = [
        "No-op throughput, one worker process (median jobs/s; ours ÷ arq, gate >= 0.9;",
        " CPU µs/job of the worker's process, and arq's ÷ ours: the ratio if CPU-bound)",
        f"{'slots':>5} {'poll s':>6} {'jobs':>6} {'reps':>4} {'arq jobs/s':>10} {'ours jobs/s':>11} "
        f"{'ratio':>6}  gate  {'arq µs':>6} {'ours µs':>7} {'cpu ratio':>9}  {'ours w/o ledger':>15}",
    ]
    for r in results:
        c = r.config
        ok = "pass" if r.ratio >= THROUGHPUT_GATE else "FAIL"
        bare = r.ours_no_ledger_jobs_per_s
        lines.append(
            f"{c.slots:>5} {c.poll_delay_s:>6g} {c.jobs:>6} {c.reps:>4} {r.arq_jobs_per_s:>10.0f} "
            f"{r.ours_jobs_per_s:>11.0f} {r.ratio:>6.3f}  {ok}  {r.cpu_us_per_job(r.arq):>6.0f} "
            f"{r.cpu_us_per_job(r.ours):>7.0f} {r.cpu_ratio:>9.3f}  "
            + (f"{bare:>15.0f}" if bare is not None else f"{'-':>15}")
        )
    return lines


def recovery_table(results: list[RecoveryResult]) -> list[str]:
    lines = [
        f"Recovery after SIGKILL (median s; ours ÷ arq's {ARQ_RECOVERY_S:g} s, gate <= 0.1)",
        f"{'lease s':>7} {'beat s':>6} {'poll s':>6} {'kills':>5} {'ours s':>7} {'runs s':>20} "
        f"{'arq s':>6} {'ratio':>6}  gate",
    ]
    for r in results:
        c = r.config
        ok = "pass" if r.ratio <= RECOVERY_GATE else "FAIL"
        runs = ",".join(f"{s:.2f}" for s in r.seconds)
        lines.append(
            f"{c.lease_s:>7g} {c.beat_s:>6g} {c.poll_delay_s:>6g} {c.reps:>5} {r.median_s:>7.2f} "
            f"{runs:>20} {ARQ_RECOVERY_S:>6g} {r.ratio:>6.3f}  {ok}"
        )
    return lines


def as_json(throughput: list[ThroughputResult], recovery: list[RecoveryResult]) -> dict[str, Any]:
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "throughput": [
            {
                "jobs": r.config.jobs,
                "slots": r.config.slots,
                "poll_delay_s": r.config.poll_delay_s,
                "beat_s": r.config.beat_s,
                "lease_s": r.config.lease_s,
                "reps": r.config.reps,
                "arq_samples": [asdict(s) for s in r.arq],
                "ours_samples": [asdict(s) for s in r.ours],
                "ours_no_ledger_samples": [asdict(s) for s in r.ours_no_ledger],
                "arq_jobs_per_s": r.arq_jobs_per_s,
                "ours_jobs_per_s": r.ours_jobs_per_s,
                "ratio": r.ratio,
                "arq_cpu_us_per_job": r.cpu_us_per_job(r.arq),
                "ours_cpu_us_per_job": r.cpu_us_per_job(r.ours),
                "cpu_ratio": r.cpu_ratio,
                "ours_no_ledger_jobs_per_s": r.ours_no_ledger_jobs_per_s,
            }
            for r in throughput
        ],
        "recovery": [
            {
                "lease_s": r.config.lease_s,
                "beat_s": r.config.beat_s,
                "poll_delay_s": r.config.poll_delay_s,
                "seconds": r.seconds,
                "median_s": r.median_s,
                "arq_s": ARQ_RECOVERY_S,
                "ratio": r.ratio,
            }
            for r in recovery
        ],
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    throughput: list[ThroughputResult] = []
    recovery: list[RecoveryResult] = []
    with redis_server(workdir / "redis") as server:
        if args.only in (None, "throughput"):
            for poll_delay in args.poll_delay:
                config = ThroughputConfig(
                    jobs=args.jobs,
                    slots=args.slots,
                    poll_delay_s=poll_delay,
                    beat_s=args.beat,
                    lease_s=args.lease,
                    reps=args.reps,
                    breakdown=args.breakdown,
                )
                result = await run_throughput(server.url, workdir / f"tp-{poll_delay:g}", config)
                throughput.append(result)
                print(
                    f"throughput, poll delay {poll_delay:g} s: arq {result.arq_jobs_per_s:.0f} jobs/s, "
                    f"ours {result.ours_jobs_per_s:.0f} jobs/s, ratio {result.ratio:.3f} "
                    f"(CPU-bound ratio {result.cpu_ratio:.3f})",
                    flush=True,
                )
                if args.profile:
                    print(await profile_ours(server.url, workdir / f"prof-{poll_delay:g}", config))
        if args.only in (None, "recovery"):
            leases = [(args.short_lease[0], args.short_lease[1])]
            if not args.smoke:
                leases.insert(0, (args.lease, args.beat))
            for lease_s, beat_s in leases:
                config_r = RecoveryConfig(lease_s=lease_s, beat_s=beat_s, reps=args.recovery_reps)
                result_r = await run_recovery(server.url, workdir, config_r)
                recovery.append(result_r)
                print(
                    f"recovery, lease {lease_s:g} s / beat {beat_s:g} s: {result_r.median_s:.2f} s, "
                    f"ratio {result_r.ratio:.4f}",
                    flush=True,
                )
    print()
    if throughput:
        print("\n".join(throughput_table(throughput)))
        print()
    if recovery:
        print("\n".join(recovery_table(recovery)))
    return as_json(throughput, recovery)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Same logging for both sides: the project's set-up at WARNING, so no side pays for output.
    configure_logging("WARNING", "json")
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # arq 0.28 calls redis' close()
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
    ratios = [r["ratio"] for r in figures["throughput"] + figures["recovery"]]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not all(math.isfinite(r) and r > 0 for r in ratios):
        print("a ratio is not a finite positive number", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
