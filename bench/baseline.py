"""Our worker at an older commit against this checkout, in one run: `bench.compare --baseline-ref REF`.

    .venv/bin/python -m bench.compare --baseline-ref COMMIT [--rounds 5] [--jobs 5000] [--samples 200] \
        [--scenarios noop io50 latency] [--pause-ms 5] [--json PATH] [--smoke]

The old commit is checked out with `git worktree add --detach` in a temporary directory (its `.venv` a
link to this checkout's, so both sides run the same interpreter and packages) and removed afterwards.
Each side is driven through the one command line both trees have, `bench/ours_runner.py` (see
bench/compare.py), run from its own tree with that tree on PYTHONPATH: the old side runs the old
commit's runner, worker and `src/`.

Rounds are interleaved: in every round each scenario runs once per side, the side that goes first
alternating from round to round, so a slow spell of the shared machine hits both sides alike.
Three figures, medians over the rounds:

- no-op jobs/s (higher is better);
- time per job around a 50 ms body: 100 slots / (50 ms jobs/s) - 50 ms, what the worker adds (lower
  is better);
- lone-job latency p50: enqueue to final ledger record with an idle worker (lower is better).

Each figure is "kept" when the new median is better, within 5 % of the old one, or within the rounds'
spread (the difference of the medians is no larger than the larger of the two sides' max - min over
the rounds); "worse" otherwise. The exit code is 1 when a run fails its correctness checks (every
job done, every job once succeeded in the ledger) or, outside --smoke, when a figure is worse.
--smoke (tiny sizes) prints the figures with no speed verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.compare import (
    IO_WAIT_S,
    LIBS,
    REPO_ROOT,
    SMOKE_JOBS,
    SMOKE_SAMPLES,
    correctness_problems,
    median_or_none,
    run_one,
)

TOLERANCE = 0.05
SIDES = ("old", "new")
SLOTS = LIBS["ours"].concurrency


@dataclass(frozen=True)
class Figure:
    name: str
    scenario: str
    unit: str
    higher_is_better: bool
    value: Callable[[dict[str, Any]], float | None]


def ms_around_body(result: dict[str, Any]) -> float | None:
    jobs_per_s = result.get("jobs_per_s")
    return (SLOTS / jobs_per_s - IO_WAIT_S) * 1000 if jobs_per_s else None


FIGURES = (
    Figure("no-op jobs/s", "noop", "jobs/s", True, lambda r: r.get("jobs_per_s")),
    Figure("time per job around a 50 ms body", "io50", "ms", False, ms_around_body),
    Figure("lone-job latency p50", "latency", "ms", False, lambda r: r.get("p50_ms")),
)


@contextmanager
def baseline_tree(ref: str) -> Iterator[tuple[Path, str]]:
    """The commit `ref` checked out in a temporary worktree; yields its path and full hash."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), commit)
        try:
            venv = REPO_ROOT / ".venv"
            if venv.exists():
                (tree / ".venv").symlink_to(venv.resolve(), target_is_directory=True)
            yield tree, commit
        finally:
            git("worktree", "remove", "--force", str(tree))


def git(*args: str) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout


def round_order(round_index: int) -> tuple[str, str]:
    return SIDES if round_index % 2 == 0 else (SIDES[1], SIDES[0])


def run_rounds(args: argparse.Namespace, roots: dict[str, Path]) -> list[dict[str, Any]]:
    jobs = args.jobs or (SMOKE_JOBS if args.smoke else LIBS["ours"].noop_jobs)
    samples = args.samples or (SMOKE_SAMPLES if args.smoke else LIBS["ours"].samples)
    runs: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        for figure in chosen(args):
            for side in round_order(round_index):
                started = time.monotonic()
                result, error = run_one(
                    "ours", figure.scenario, jobs, samples, None, args.pause_ms, root=roots[side]
                )
                value = figure.value(result) if result else None
                shown = f"{value:,.1f} {figure.unit}" if value is not None else f"FAILED: {error}"
                took = time.monotonic() - started
                where = f"round {round_index + 1} {side} {figure.scenario:<8}"
                print(f"  {where} {shown} ({took:.0f} s)", flush=True)
                runs.append(
                    {
                        "lib": f"ours ({side})",
                        "side": side,
                        "scenario": figure.scenario,
                        "rep": round_index + 1,
                        "result": result,
                        "error": error or None,
                        "value": value,
                    }
                )
    return runs


def judge(figure: Figure, old: list[float], new: list[float]) -> dict[str, Any]:
    """Medians, ratio new / old and the verdict for one figure."""
    old_median, new_median = median_or_none(old), median_or_none(new)
    if old_median is None or new_median is None:
        return {"figure": figure.name, "old": old_median, "new": new_median, "verdict": "n/a"}
    ratio = new_median / old_median
    spread = max(max(old) - min(old), max(new) - min(new))
    better = new_median > old_median if figure.higher_is_better else new_median < old_median
    within_tolerance = abs(ratio - 1) <= TOLERANCE
    within_spread = abs(new_median - old_median) <= spread
    if better:
        verdict = "better"
    elif within_tolerance:
        verdict = "within 5 %"
    elif within_spread:
        verdict = "within the rounds' spread"
    else:
        verdict = "worse"
    return {
        "figure": figure.name,
        "unit": figure.unit,
        "higher_is_better": figure.higher_is_better,
        "old": old_median,
        "new": new_median,
        "ratio": ratio,
        "spread": spread,
        "within_5_percent": within_tolerance,
        "within_spread": within_spread,
        "verdict": verdict,
        "old_rounds": old,
        "new_rounds": new,
    }


def chosen(args: argparse.Namespace) -> list[Figure]:
    """The figures of the scenarios asked for (--scenarios; all three by default)."""
    return [figure for figure in FIGURES if figure.scenario in args.scenarios]


def judge_all(runs: list[dict[str, Any]], figures: list[Figure]) -> list[dict[str, Any]]:
    def values(side: str, scenario: str) -> list[float]:
        picked = [r for r in runs if r["side"] == side and r["scenario"] == scenario]
        return [r["value"] for r in picked if r["value"] is not None]

    return [judge(f, values("old", f.scenario), values("new", f.scenario)) for f in figures]


def print_verdicts(verdicts: list[dict[str, Any]], ref: str, rounds: int, smoke: bool) -> None:
    print(f"\nold = {ref}, new = this checkout; medians over {rounds} interleaved round(s)")
    header = f"{'figure':<36} {'old':>10} {'new':>10} {'new/old':>8} {'spread':>8}  verdict"
    print(header)
    print("-" * len(header))
    for v in verdicts:
        if v["verdict"] == "n/a":
            print(f"{v['figure']:<36} {'-':>10} {'-':>10} {'-':>8} {'-':>8}  n/a (a side has no figure)")
            continue
        digits = 0 if v["unit"] == "jobs/s" else 2
        verdict = "no verdict (smoke sizes)" if smoke else v["verdict"]
        print(
            f"{v['figure']:<36} {v['old']:>10,.{digits}f} {v['new']:>10,.{digits}f} {v['ratio']:>8.3f} "
            f"{v['spread']:>8,.{digits}f}  {verdict}"
        )
    print("(ms: lower is better; spread: the larger side's max - min over the rounds)")


def main(args: argparse.Namespace) -> int:
    """Run --rounds interleaved rounds of the three scenarios, old tree and this one; print verdicts."""
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    started = time.monotonic()
    with baseline_tree(args.baseline_ref) as (old_tree, commit):
        print(f"baseline {args.baseline_ref} ({commit[:12]}) in {old_tree}", flush=True)
        runs = run_rounds(args, {"old": old_tree, "new": REPO_ROOT})
    verdicts = judge_all(runs, chosen(args))
    print_verdicts(verdicts, args.baseline_ref, args.rounds, args.smoke)
    problems = correctness_problems(runs)
    elapsed = time.monotonic() - started
    print(f"\n{len(runs)} runs in {elapsed:.0f} s; {len(problems)} failed a correctness check")
    for problem in problems:
        print(f"  {problem}")
    worse = [v["figure"] for v in verdicts if v["verdict"] == "worse"]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "baseline_ref": args.baseline_ref,
            "baseline_commit": commit,
            "new_commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip()),
            "config": {"rounds": args.rounds, "smoke": args.smoke, "cpus": os.cpu_count()},
            "figures": verdicts,
            "runs": runs,
            "correctness_problems": problems,
            "elapsed_s": elapsed,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if problems or (worse and not args.smoke) else 0
