"""Our worker side by side with peer job queues: jobs/s, latency, Redis commands per job.

    .venv/bin/python -m bench.compare [--smoke] [--libs ...] [--scenarios ...] [--reps 3] \
        [--jobs 5000] [--samples 200] [--pause-ms 5] [--json PATH] [--chart PATH]
    .venv/bin/python -m bench.compare --baseline-ref COMMIT [--rounds 5] ...   # see bench/baseline.py

Every (lib, scenario, rep) runs in a FRESH redis-server on a free loopback port (never 6379) and one
worker process of that library, started by a runner script with the same command-line contract:

- peers: bench/peers/runner.py, run with the python of var/bench-peers-venv (bench/peers/venv.py
  creates it from bench/peers/requirements.txt; the peers are never importable from .venv or src/);
- ours: bench/ours_runner.py, run with this interpreter (cwd and PYTHONPATH = the repo root); when the
  file is missing, `ours` is skipped with a message.

Scenarios (what each runner measures, see bench/peers/runner.py):

- noop: N no-op jobs enqueued before the worker starts; jobs/s = (N - 1) / (t1 - t0), where t0 is the
  start of the job whose `INCR bench:done` replied 1 and t1 the end of the one that replied N.
- io50: the same with a 50 ms wait in each job (asyncio.sleep, or time.sleep for Celery and RQ).
- latency: idle worker; one job at a time, enqueue -> result visible to the caller through the
  library's natural result API, then a pause (--pause-ms, the same for every lib) so the next job
  meets an idle worker again; 20 warm-ups, then M samples -> p50 / p99 ms.
- Redis commands per job (INFO commandstats, commands run inside Lua scripts and MULTI included):
  enqueue phase and worker phase (start-up included) / N, the harness's own commands subtracted.

Medians over --reps, then three gates, computed from this run only:
ours io50 / best peer io50 >= 1.2; ours noop / arq-100 noop >= 1.0 (raw arq with the same 100 slots);
ours latency p50 <= saq p50.

Exit code: 1 when a run fails a correctness check (the runner did not see every job done, or our
ledger does not hold every job once as succeeded), or, outside --smoke, when a gate fails. --smoke
(tiny counts on a possibly loaded machine) prints the ratios with no speed verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.local_redis import start_redis_server

REPO_ROOT = Path(__file__).resolve().parents[1]
PEERS_RUNNER = REPO_ROOT / "bench" / "peers" / "runner.py"
OURS_RUNNER = REPO_ROOT / "bench" / "ours_runner.py"
CHART_SCRIPT = REPO_ROOT / "bench" / "peers" / "chart.py"

SCENARIOS = ("noop", "io50", "latency")
FIGURES = ("jobs_per_s", "p50_ms", "p99_ms", "enqueue_cmds_per_job", "worker_cmds_per_job")
PEER_PACKAGES = (
    "arq",
    "saq",
    "streaq",
    "taskiq",
    "taskiq-redis",
    "celery",
    "kombu",
    "rq",
    "redis",
    "coredis",
)


@dataclass(frozen=True)
class LibConfig:
    concurrency: int
    settings: str
    noop_jobs: int  # default counts: about 10-40 s per run at the expected rate on 2 cores
    io50_jobs: int
    samples: int


LIBS: dict[str, LibConfig] = {
    "ours": LibConfig(100, "100 slots (our defaults)", 5000, 5000, 200),
    "arq-defaults": LibConfig(10, "max_jobs 10, poll_delay 0.5 s", 2000, 600, 40),
    "arq-100": LibConfig(100, "max_jobs 100, poll_delay 0.01 s", 5000, 5000, 200),
    "saq": LibConfig(100, "concurrency 100", 5000, 5000, 200),
    "streaq": LibConfig(100, "concurrency 100", 5000, 5000, 200),
    "taskiq": LibConfig(100, "1 worker, max async tasks 100", 5000, 5000, 200),
    "celery": LibConfig(2, "prefork 2, redis backend", 5000, 1000, 200),
    "rq": LibConfig(1, "forking Worker (fork per job)", 600, 300, 100),
}
PEERS = [lib for lib in LIBS if lib != "ours"]
SMOKE_LIBS = ["arq-100", "saq", "ours"]
DEFAULT_JOBS = 5000
SMOKE_JOBS = 200
SMOKE_SAMPLES = 20
RUN_TIMEOUT_S = 900  # a guard only: each runner has its own timeout and fails loudly
# Latency: the caller pauses this long after each sample, so every sample meets an idle worker; the
# same pause for every lib (before the seventh session only our runner paused, which cost us ~25 %).
LATENCY_PAUSE_MS = 5.0
IO_WAIT_S = 0.05  # the 50 ms I/O job's sleep (bench/ours_worker.py, bench/peers/runner.py)


def job_count(lib: str, scenario: str, jobs: int | None, smoke: bool) -> int:
    """The lib's default count, scaled by --jobs / 5000 (slow defaults keep their shorter runs)."""
    if smoke:
        return jobs or SMOKE_JOBS
    base = LIBS[lib].noop_jobs if scenario == "noop" else LIBS[lib].io50_jobs
    return max(2, round(base * (jobs or DEFAULT_JOBS) / DEFAULT_JOBS))


def sample_count(lib: str, samples: int | None, smoke: bool) -> int:
    if smoke:
        return samples or SMOKE_SAMPLES
    base = LIBS[lib].samples
    return max(5, round(base * (samples or 200) / 200))


def runner_command(
    lib: str, peers_python: Path | None, root: Path = REPO_ROOT
) -> tuple[list[str], Path, dict[str, str]]:
    """Interpreter + runner, its cwd and environment: peers run from a temp dir with no PYTHONPATH,
    so nothing of this repo is importable next to them; ours runs the runner of the tree at `root`
    (this checkout, or an older commit's worktree for --baseline-ref) with that tree on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if lib == "ours":
        env["PYTHONPATH"] = str(root)
        return [sys.executable, str(root / OURS_RUNNER.relative_to(REPO_ROOT))], root, env
    assert peers_python is not None
    return [str(peers_python), str(PEERS_RUNNER)], Path(tempfile.gettempdir()), env


def stop_runner(runner: subprocess.Popen[str]) -> None:
    """SIGTERM first: the runner then stops its worker's process group itself (a SIGKILLed runner
    would leave the worker running)."""
    if runner.poll() is None:
        runner.terminate()
        try:
            runner.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.communicate(timeout=10)


def run_one(
    lib: str,
    scenario: str,
    jobs: int,
    samples: int,
    peers_python: Path | None,
    pause_ms: float = LATENCY_PAUSE_MS,
    root: Path = REPO_ROOT,
) -> tuple[dict[str, Any] | None, str]:
    """One runner in a fresh redis-server; returns its JSON (or None) and an error text."""
    cmd, cwd, env = runner_command(lib, peers_python, root)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        out = Path(tmp) / "result.json"
        server = start_redis_server(Path(tmp) / "redis")
        try:
            args = ["--lib", lib, "--scenario", scenario, "--jobs", str(jobs)]
            args += ["--concurrency", str(LIBS[lib].concurrency), "--redis-url", server.url]
            args += ["--json", str(out), "--samples", str(samples), "--pause-ms", str(pause_ms)]
            runner = subprocess.Popen(
                cmd + args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            try:
                output, _ = runner.communicate(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                return None, f"runner did not finish within {RUN_TIMEOUT_S} s"
            finally:
                stop_runner(runner)
        finally:
            server.stop()
        if runner.returncode != 0 or not out.exists():
            return None, f"runner exited with {runner.returncode}: {output.strip()[-2000:]}"
        result: dict[str, Any] = json.loads(out.read_text())
        return result, ""


def median_or_none(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return float(statistics.median(numbers)) if numbers else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        if run["result"] is None:
            continue
        results.setdefault(run["lib"], {}).setdefault(run["scenario"], {"reps": []})["reps"].append(
            run["result"]
        )
    for scenarios in results.values():
        for summary in scenarios.values():
            reps = summary["reps"]
            for figure in FIGURES:
                summary[figure] = median_or_none([r.get(figure) for r in reps])
            summary["jobs"] = reps[0].get("jobs")
            summary["notes"] = reps[0].get("notes", "")
    return results


def figure(results: dict[str, Any], lib: str, scenario: str, name: str) -> float | None:
    value = results.get(lib, {}).get(scenario, {}).get(name)
    return float(value) if isinstance(value, int | float) else None


def io_ceiling(ours: float | None, peer: str | None, peer_jobs_per_s: float | None) -> dict[str, Any]:
    """Where the 50 ms I/O figures stand against the ceiling of 100 slots of 50 ms (2,000 jobs/s):
    the share of it each side reached, the time per job around the 50 ms body (slots ÷ jobs/s −
    50 ms: what a worker adds), and whether 1.2 × the best peer is below the ceiling at all. When it
    is not, no worker could pass gate 1 in this run."""
    if not ours or not peer or not peer_jobs_per_s:
        return {}
    slots = LIBS["ours"].concurrency
    ceiling = slots / IO_WAIT_S
    needed = 1.2 * peer_jobs_per_s
    ours_ms = (slots / ours - IO_WAIT_S) * 1000
    peer_ms = (LIBS[peer].concurrency / peer_jobs_per_s - IO_WAIT_S) * 1000
    return {
        "ceiling_jobs_per_s": ceiling,
        "needed_jobs_per_s": needed,
        "attainable": needed <= ceiling,
        "ours_share_of_ceiling": ours / ceiling,
        "peer_share_of_ceiling": peer_jobs_per_s / ceiling,
        "ours_ms_around_body": ours_ms,
        "peer_ms_around_body": peer_ms,
    }


def gates(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's three gates, each a ratio of figures from this run."""
    out: list[dict[str, Any]] = []
    ours_io = figure(results, "ours", "io50", "jobs_per_s")
    peer_io = {p: v for p in PEERS if (v := figure(results, p, "io50", "jobs_per_s")) is not None}
    best = max(peer_io, key=lambda p: peer_io[p]) if peer_io else None
    ratio = ours_io / peer_io[best] if ours_io and best else None
    out.append(
        {
            "gate": f"50 ms I/O: ours / best peer ({best or 'none'}) >= 1.2",
            "ratio": ratio,
            "pass": None if ratio is None else ratio >= 1.2,
            **io_ceiling(ours_io, best, peer_io[best] if best else None),
        }
    )
    ours_noop = figure(results, "ours", "noop", "jobs_per_s")
    arq_noop = figure(results, "arq-100", "noop", "jobs_per_s")
    ratio = ours_noop / arq_noop if ours_noop and arq_noop else None
    out.append(
        {
            "gate": "no-op: ours / arq-100 (raw arq, same 100 slots) >= 1.0",
            "ratio": ratio,
            "pass": None if ratio is None else ratio >= 1.0,
        }
    )
    ours_p50 = figure(results, "ours", "latency", "p50_ms")
    saq_p50 = figure(results, "saq", "latency", "p50_ms")
    ratio = ours_p50 / saq_p50 if ours_p50 and saq_p50 else None
    out.append(
        {
            "gate": "latency p50: ours / saq <= 1.0",
            "ratio": ratio,
            "pass": None if ratio is None else ratio <= 1.0,
        }
    )
    return out


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(libs: list[str], results: dict[str, Any], reps: int) -> None:
    print(f"\nmedians over {reps} rep(s); cmds/job from the no-op run, enqueue + worker phase")
    header = (
        f"{'lib':<13} {'settings':<33} {'no-op jobs/s':>12} {'50 ms I/O jobs/s':>16} "
        f"{'latency p50/p99 ms':>19} {'cmds/job enq+worker':>20}"
    )
    print(header)
    print("-" * len(header))
    for lib in libs:
        enq = figure(results, lib, "noop", "enqueue_cmds_per_job")
        wrk = figure(results, lib, "noop", "worker_cmds_per_job")
        cmds = "-" if enq is None or wrk is None else f"{enq:.1f} + {wrk:.1f}"
        p50, p99 = figure(results, lib, "latency", "p50_ms"), figure(results, lib, "latency", "p99_ms")
        print(
            f"{lib:<13} {LIBS[lib].settings:<33} {fmt(figure(results, lib, 'noop', 'jobs_per_s')):>12} "
            f"{fmt(figure(results, lib, 'io50', 'jobs_per_s')):>16} "
            f"{fmt(p50, 1) + ' / ' + fmt(p99, 1):>19} {cmds:>20}"
        )


def print_gates(gate_list: list[dict[str, Any]], smoke: bool) -> None:
    print("\ngates (this run)" + (": no verdict, smoke sizes are too small to judge speed" if smoke else ":"))
    for gate in gate_list:
        if gate["pass"] is None:
            verdict = "n/a (needs ours and the peer in this run)"
        elif smoke:
            verdict = f"{gate['ratio']:.2f}"
        else:
            verdict = f"{gate['ratio']:.2f}  {'PASS' if gate['pass'] else 'FAIL'}"
        print(f"  {gate['gate']:<55} {verdict}")
        if "ceiling_jobs_per_s" in gate:
            print(
                f"    ceiling {gate['ceiling_jobs_per_s']:,.0f} jobs/s (slots x {IO_WAIT_S * 1000:.0f} ms): "
                f"ours {gate['ours_share_of_ceiling']:.1%} of it, "
                f"the peer {gate['peer_share_of_ceiling']:.1%}; "
                f"per job around the body: ours {gate['ours_ms_around_body']:.1f} ms, the peer "
                f"{gate['peer_ms_around_body']:.1f} ms"
            )
            if not gate["attainable"] and not smoke:
                print(
                    f"    1.2 x the peer is {gate['needed_jobs_per_s']:,.0f} jobs/s, above the ceiling: "
                    "no worker could pass this gate in this run"
                )


def correctness_problems(runs: list[dict[str, Any]]) -> list[str]:
    """What every run must get right whatever the machine's load: it finished (every job done, the
    runner's own check), and where the runner counts the ledger, every job succeeded there once."""
    problems: list[str] = []
    for run in runs:
        where = f"{run['lib']} {run['scenario']} rep {run['rep']}"
        result = run["result"]
        if result is None:
            problems.append(f"{where}: {run['error']}")
        elif "ledger_succeeded" in result and result["ledger_succeeded"] != result["jobs"]:
            succeeded = f"{result['ledger_succeeded']} of {result['jobs']}"
            problems.append(f"{where}: {succeeded} jobs succeeded in the ledger")
    return problems


def peer_versions(peers_python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    completed = subprocess.run(
        [str(peers_python), "-c", code, *PEER_PACKAGES], capture_output=True, text=True, timeout=60
    )
    versions: dict[str, str] = json.loads(completed.stdout) if completed.returncode == 0 else {}
    return versions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Our worker against peer job queues, or an older commit.")
    parser.add_argument("--smoke", action="store_true", help="tiny counts, 1 rep, arq-100 + saq + ours")
    parser.add_argument("--libs", nargs="+", choices=list(LIBS), help="default: all (smoke: a subset)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--reps", type=int, help="runs per lib and scenario, median (default 3, smoke 1)")
    parser.add_argument("--jobs", type=int, help=f"scales each lib's default counts (as if {DEFAULT_JOBS})")
    parser.add_argument("--samples", type=int, help="scales the latency samples (as if 200)")
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=LATENCY_PAUSE_MS,
        help=f"latency: idle pause after each sample, the same for every lib (default {LATENCY_PAUSE_MS:g})",
    )
    parser.add_argument(
        "--baseline-ref",
        metavar="COMMIT",
        help="instead of the peers: our worker at COMMIT (a temporary git worktree) against this checkout",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="--baseline-ref: interleaved rounds, median (default 5)"
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--chart", type=Path, help="write a PNG chart here (matplotlib, peers venv)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_ref:
        from bench.baseline import main as compare_with_baseline

        return compare_with_baseline(args)
    started = time.monotonic()
    reps = args.reps or (1 if args.smoke else 3)
    libs: list[str] = list(args.libs or (SMOKE_LIBS if args.smoke else list(LIBS)))
    if "ours" in libs and not OURS_RUNNER.exists():
        print(f"bench: {OURS_RUNNER.relative_to(REPO_ROOT)} not found: skipping `ours`", flush=True)
        libs.remove("ours")
    peers_python: Path | None = None
    versions: dict[str, str] = {}
    if any(lib != "ours" for lib in libs):
        from bench.peers.venv import ensure_peers_venv

        peers_python = ensure_peers_venv()
        versions = peer_versions(peers_python)
        print("peers: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)

    runs: list[dict[str, Any]] = []
    # rep-major order, libs alternating, so a slow spell of the shared machine hits every lib alike
    for rep in range(reps):
        for scenario in args.scenarios:
            for lib in libs:
                jobs = job_count(lib, scenario, args.jobs, args.smoke)
                samples = sample_count(lib, args.samples, args.smoke)
                t = time.monotonic()
                result, error = run_one(lib, scenario, jobs, samples, peers_python, args.pause_ms)
                took = time.monotonic() - t
                size = f"{samples} samples" if scenario == "latency" else f"{jobs} jobs"
                if result is None:
                    print(f"  rep {rep + 1} {lib:<13} {scenario:<8} {size:<12} FAILED: {error}", flush=True)
                else:
                    shown = (
                        f"p50 {fmt(result['p50_ms'], 1)} ms"
                        if scenario == "latency"
                        else f"{fmt(result['jobs_per_s'])} jobs/s"
                    )
                    print(
                        f"  rep {rep + 1} {lib:<13} {scenario:<8} {size:<12} {shown} ({took:.0f} s)",
                        flush=True,
                    )
                runs.append(
                    {
                        "lib": lib,
                        "scenario": scenario,
                        "rep": rep + 1,
                        "result": result,
                        "error": error or None,
                    }
                )

    results = summarize(runs)
    gate_list = gates(results)
    print_table(libs, results, reps)
    print_gates(gate_list, args.smoke)
    elapsed = time.monotonic() - started
    problems = correctness_problems(runs)
    print(f"\n{len(runs)} runs in {elapsed:.0f} s; {len(problems)} failed a correctness check")
    for problem in problems:
        print(f"  {problem}")
    speed_failed = not args.smoke and any(gate["pass"] is False for gate in gate_list)

    figures = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {"reps": reps, "smoke": args.smoke, "libs": libs, "scenarios": args.scenarios},
        "settings": {lib: LIBS[lib].settings for lib in libs},
        "versions": versions,
        "results": {
            lib: {scenario: {k: v for k, v in s.items() if k != "reps"} for scenario, s in scenarios.items()}
            for lib, scenarios in results.items()
        },
        "gates": gate_list,
        "runs": runs,
        "correctness_problems": problems,
        "elapsed_s": elapsed,
    }
    json_path = args.json
    if args.chart and json_path is None:
        json_path = Path(tempfile.mkstemp(prefix="bench-compare-", suffix=".json")[1])
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
    if args.chart:
        if peers_python is None:
            from bench.peers.venv import ensure_peers_venv

            peers_python = ensure_peers_venv()
        assert json_path is not None
        chart = subprocess.run(
            [str(peers_python), str(CHART_SCRIPT), "--json", str(json_path), "--out", str(args.chart)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if chart.returncode != 0:
            print(f"chart failed: {chart.stderr.strip()[-2000:]}")
            return 1
        print(f"chart: {args.chart}")
    return 1 if problems or speed_failed else 0


if __name__ == "__main__":
    sys.exit(main())
