"""Our side of the peer comparison (`bench/compare.py`), with the same command line and JSON as the
peers' runner (bench/peers/runner.py), run with the project's own Python:

`python bench/ours_runner.py --lib ours --scenario noop|io50|latency --jobs N --concurrency C
--redis-url URL --json OUT [--samples M] [--pause-ms MS]`

- The worker is one `python -m bench.ours_worker` process (our worker as `workers.py` builds it, every
  safety on, our default poll delay, heartbeat and lease; `C` slots).
- Throughput (`noop`, `io50`): the N jobs are enqueued with `TaskService.enqueue_many` (ledger
  records first) before the worker starts; each job does the harness's `INCR bench:done`;
  jobs/s = (N - 1) / (t1 - t0) from the first job's start to the last job's end, as for every peer.
- Latency: with the worker idle, one job at a time: `TaskService.enqueue` (ledger record + Lua
  enqueue, which wakes the worker) then `TaskService.wait_for_result` (the process's one completion
  subscription, then a ledger read): the time until the caller holds the final record.
- Ledger check (`ledger_succeeded`): throughput counts the ledger's succeeded records once the workers
  have drained, latency the measured samples whose final record is succeeded; bench/compare.py fails
  the run unless it equals N (or M).
- Redis commands per job: `INFO commandstats` deltas over the enqueue phase and over the processing
  phase, less the harness's own commands (INCR, two SETs, its INFO/GET polling).
- Redis CPU per job: `INFO cpu` (`used_cpu_user` + `used_cpu_sys`, every thread of redis-server)
  deltas over the same two phases; the harness's one INCR per job and its polling are included, so
  this slightly overstates what the queue costs Redis. 1 / CPU per job = the jobs/s one Redis core
  sustains (docs/deployment.md, "One Redis").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script by bench/compare.py
    sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench import latency_trace  # noqa: E402
from bench.common import BENCH_VERSION, publish_deployment  # noqa: E402
from bench.compare import LATENCY_PAUSE_MS  # noqa: E402
from bench.ours_worker import worker_settings  # noqa: E402
from src.application.services.task_service import TaskService  # noqa: E402
from src.domain.jobs import JobEnvelope, JobStatus  # noqa: E402
from src.infrastructure.completion_feed import RedisCompletionFeed  # noqa: E402
from src.infrastructure.queue import RedisJobQueue  # noqa: E402
from src.infrastructure.redis_pool import create_redis_pool  # noqa: E402
from src.infrastructure.repository_factory import build_repository  # noqa: E402

HARNESS_COMMANDS = {"incr", "info", "get", "set", "flushall", "ping", "config|get"}
WARMUP_SAMPLES = 20


async def command_calls(redis: Redis, skip: set[str] = HARNESS_COMMANDS) -> int:
    """Total calls in `INFO commandstats`, except the harness's own commands."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.removeprefix("cmdstat_") not in skip)


async def cpu_seconds(redis: Redis) -> float:
    """Redis's CPU time so far (user + system, all its threads)."""
    stats = await redis.info("cpu")
    return float(stats["used_cpu_user"]) + float(stats["used_cpu_sys"])


def envelopes(prefix: str, count: int) -> list[JobEnvelope]:
    return [
        JobEnvelope(
            task="normalize_appointment",
            logical_key=f"bench:{prefix}:{i}",
            ids={"n": i},
            producer_version=BENCH_VERSION,
        )
        for i in range(count)
    ]


def start_workers(redis_url: str, workdir: Path, args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    return [start_worker(redis_url, workdir, args) for _ in range(args.workers)]


def start_worker(redis_url: str, workdir: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.ours_worker", "--redis-url", redis_url, "--workdir", str(workdir),
         "--slots", str(args.concurrency), "--scenario", args.scenario, "--jobs", str(args.jobs)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    settings = worker_settings(args.redis_url, workdir, args.concurrency)
    await publish_deployment(settings)
    redis = Redis.from_url(args.redis_url)
    pool = create_redis_pool(settings)
    repository = build_repository(settings)
    await repository.init()
    try:
        tasks = TaskService(RedisJobQueue(pool), repository=repository, producer_version=BENCH_VERSION)
        jobs = envelopes("t", args.jobs)
        before, cpu_before = await command_calls(redis), await cpu_seconds(redis)
        results = await tasks.enqueue_many(jobs)
        enqueued, cpu_enqueued = await command_calls(redis), await cpu_seconds(redis)
        if sum(r.status == "queued" for r in results) != args.jobs:
            raise RuntimeError("not every job was queued")
        workers = start_workers(args.redis_url, workdir, args)
        try:
            deadline = time.monotonic() + max(60.0, 5 * args.jobs / 200)
            while (t1 := await redis.get("bench:t1")) is None:
                if any(w.poll() is not None for w in workers):
                    raise RuntimeError("a worker exited before the last job")
                if time.monotonic() > deadline:
                    done = await redis.get("bench:done")
                    raise RuntimeError(f"timed out with {done!r} of {args.jobs} jobs done")
                await asyncio.sleep(0.05)
            t0 = float(await redis.get("bench:t0") or 0)
            processed, cpu_processed = await command_calls(redis), await cpu_seconds(redis)
        finally:
            for worker in workers:
                stop_worker(worker)
        # the workers have drained: every job must now be one succeeded ledger record
        succeeded = sum(c.count for c in await repository.count_jobs() if c.status == JobStatus.SUCCEEDED)
        return {
            "ledger_succeeded": succeeded,
            "jobs_per_s": (args.jobs - 1) / (float(t1) - t0),
            "enqueue_cmds_per_job": (enqueued - before) / args.jobs,
            "worker_cmds_per_job": (processed - enqueued) / args.jobs,
            "enqueue_redis_cpu_us_per_job": 1e6 * (cpu_enqueued - cpu_before) / args.jobs,
            "worker_redis_cpu_us_per_job": 1e6 * (cpu_processed - cpu_enqueued) / args.jobs,
            "notes": "ours: build_worker + JobRunner (SQLite ledger); poll 0.5 s, beat 5 s, lease 30 s",
        }
    finally:
        await pool.aclose(close_connection_pool=True)
        await repository.close()
        await redis.aclose()


async def latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    latency_trace.install("caller")  # only under bench.latency_trace (BENCH_TRACE_DIR set)
    settings = worker_settings(args.redis_url, workdir, args.concurrency)
    await publish_deployment(settings)
    redis = Redis.from_url(args.redis_url)
    pool = create_redis_pool(settings)
    repository = build_repository(settings)
    await repository.init()
    feed = RedisCompletionFeed(pool)
    worker = start_worker(args.redis_url, workdir, args)
    try:
        tasks = TaskService(
            RedisJobQueue(pool), repository=repository, producer_version=BENCH_VERSION, completions=feed
        )
        samples: list[float] = []
        jobs = envelopes("l", WARMUP_SAMPLES + args.samples)
        before = succeeded = 0
        for n, job in enumerate(jobs):
            if n == WARMUP_SAMPLES:
                before = await command_calls(redis)
            latency_trace.mark("caller.start")
            started = time.perf_counter()
            await tasks.enqueue(job)
            record = await tasks.wait_for_result(job.job_id, timeout=60 if n else 120)  # 1st: start-up
            samples.append((time.perf_counter() - started) * 1000)
            succeeded += n >= WARMUP_SAMPLES and record.status == JobStatus.SUCCEEDED
            latency_trace.mark("caller.end")
            # idle again (bench.compare gives every lib the same pause)
            await asyncio.sleep(args.pause_ms / 1000)
        after = await command_calls(redis)
        measured = sorted(samples[WARMUP_SAMPLES:])
        return {
            "ledger_succeeded": succeeded,
            "p50_ms": statistics.median(measured),
            "p99_ms": measured[min(len(measured) - 1, int(0.99 * len(measured)))],
            "enqueue_cmds_per_job": None,
            "worker_cmds_per_job": (after - before) / args.samples,  # both sides of a round trip
            "notes": (
                f"{WARMUP_SAMPLES} warm-ups, {args.pause_ms:g} ms pause after each; "
                "TaskService.enqueue + wait_for_result (shared completion subscription)"
            ),
        }
    finally:
        stop_worker(worker)
        await feed.close()
        await pool.aclose(close_connection_pool=True)
        await repository.close()
        await redis.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        figures = await (latency if args.scenario == "latency" else throughput)(args, Path(tmp))
    base: dict[str, Any] = {
        "lib": "ours",
        "scenario": args.scenario,
        "jobs": args.samples if args.scenario == "latency" else args.jobs,
        "concurrency": args.concurrency,
        "jobs_per_s": None,
        "p50_ms": None,
        "p99_ms": None,
    }
    return {**base, **figures}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--lib", default="ours", choices=("ours",))
    parser.add_argument("--scenario", choices=("noop", "io50", "latency"), required=True)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--pause-ms", type=float, default=LATENCY_PAUSE_MS, help="latency: idle pause after each sample"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (throughput scenarios)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    args.json.write_text(json.dumps(figures))
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
