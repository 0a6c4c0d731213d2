"""Where a worker's time goes: py-spy samples of our worker process during a benchmark scenario.

`python -m bench.profile_hot_path [--scenario io50|noop|latency] [--jobs 20000] [--out DIR]`

Starts a fresh redis-server, enqueues the jobs (throughput scenarios; for latency, a caller sends one
job at a time as bench/ours_runner.py does), runs `bench.ours_worker` under `py-spy record` (from
the benchmark virtualenv, var/bench-peers-venv) for the whole run, and writes `DIR/SCENARIO.svg`
(flame graph), `DIR/SCENARIO.txt` (raw stacks) and prints the main thread's busiest frames: share of
busy samples, inclusive and own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis import Redis

from bench.common import publish_deployment
from bench.ours_runner import envelopes
from bench.ours_worker import worker_settings
from bench.peers.venv import ensure_peers_venv
from scripts.local_redis import start_redis_server
from src.application.services.task_service import TaskService
from src.infrastructure.completion_feed import RedisCompletionFeed
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository

ROOT = Path(__file__).resolve().parent.parent
IDLE_FRAMES = ("select (selectors.py", "_worker (concurrent/futures/thread.py", "wait (threading.py")


def summarize(raw: Path, top: int = 25) -> str:
    """The main thread's busy samples (idle waits left out), by frame: inclusive and own share."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # the main thread's stacks: not a thread's (the store's, the executor's), not an idle wait
        if any("_bootstrap (threading.py" in f for f in frames) or any(i in frames[-1] for i in IDLE_FRAMES):
            continue
        n = int(count)
        busy += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"main thread: {busy} busy samples", "", "inclusive  frame"]
    lines += [f"{100 * n / busy:8.1f}%  {f}" for f, n in inclusive.most_common(top + 8)[8:]]
    lines += ["", "own        frame"]
    lines += [f"{100 * n / busy:8.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


async def enqueue(redis_url: str, workdir: Path, jobs: int) -> None:
    settings = worker_settings(redis_url, workdir, 100)
    await publish_deployment(settings)
    pool = create_redis_pool(settings)
    repository = build_repository(settings)
    await repository.init()
    try:
        await TaskService(RedisJobQueue(pool), repository=repository).enqueue_many(envelopes("p", jobs))
    finally:
        await pool.aclose(close_connection_pool=True)
        await repository.close()


async def one_at_a_time(redis_url: str, workdir: Path, jobs: int) -> None:
    settings = worker_settings(redis_url, workdir, 100)
    pool = create_redis_pool(settings)
    repository = build_repository(settings)
    await repository.init()
    feed = RedisCompletionFeed(pool)
    try:
        tasks = TaskService(RedisJobQueue(pool), repository=repository, completions=feed)
        for job in envelopes("l", jobs):
            await tasks.enqueue(job)
            await tasks.wait_for_result(job.job_id, timeout=60)
            await asyncio.sleep(0.005)
    finally:
        await feed.close()
        await pool.aclose(close_connection_pool=True)
        await repository.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--scenario", choices=("io50", "noop", "latency"), default="io50")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "profiles")
    args = parser.parse_args(argv)
    py_spy = ensure_peers_venv().parent / "py-spy"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        server = start_redis_server(workdir / "redis")
        try:
            if args.scenario == "latency":
                asyncio.run(publish_deployment(worker_settings(server.url, workdir, 100)))
            else:
                asyncio.run(enqueue(server.url, workdir, args.jobs))
            worker_cmd = [sys.executable, "-m", "bench.ours_worker", "--redis-url", server.url,
                          "--workdir", str(workdir), "--slots", "100", "--scenario", args.scenario,
                          "--jobs", str(args.jobs)]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            worker = subprocess.Popen(worker_cmd, cwd=ROOT, env=env)
            time.sleep(2.0)  # imports and start-up are not the hot path
            outputs = {
                "raw": args.out / f"{args.scenario}.txt",
                "flamegraph": args.out / f"{args.scenario}.svg",
            }
            record = [str(py_spy), "record", "--nonblocking", "-p", str(worker.pid), "-r", "250"]
            spies = [subprocess.Popen([*record, "-f", fmt, "-o", str(path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for fmt, path in outputs.items()]  # fmt: skip
            redis = Redis.from_url(server.url)  # a plain client: polled between asyncio.run calls
            try:
                if args.scenario == "latency":
                    asyncio.run(one_at_a_time(server.url, workdir, args.jobs))
                else:
                    while redis.get("bench:t1") is None:
                        time.sleep(0.2)
            finally:
                worker.terminate()
                worker.wait(30)
                for spy in spies:
                    spy.wait(30)
        finally:
            server.stop()
    print(summarize(outputs["raw"]))
    print(f"\nflame graph: {outputs['flamegraph']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
