"""Our worker for the peer comparison, as one process: `build_worker` exactly as `workers.py` builds
it (leased batched claims, lease-fenced finish, heartbeat, registry, version fencing, fingerprint,
wake-ups), with the benchmark's task registered under the normalize_appointment name.

`python -m bench.ours_worker --redis-url URL --workdir DIR --slots N --scenario noop|io50|latency
--jobs N`

The task goes through `JobRunner` like every real task, so each job pays the ledger's claim and
finish in SQLite. For the throughput scenarios it does the harness's one Redis command per job
(`INCR bench:done`, and `bench:t0` / `bench:t1` at the first and last job: see bench/peers/runner.py).
SIGTERM drains it as it drains `workers.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any, cast

from arq.typing import WorkerCoroutine
from arq.worker import func
from redis.asyncio import Redis

from bench import latency_trace
from bench.common import bench_settings
from src.application.services.normalization_service import RunInfo
from src.config import Settings
from src.domain.jobs import JobEnvelope
from src.logging import configure_logging
from src.worker.context import WorkerContext
from src.worker.event_loop import new_event_loop
from src.worker.job_runner import RunPolicy
from src.worker.settings import ARQ_TRY_CEILING, TASK_ENFORCES_TIMEOUT, build_worker

IO_WAIT_S = 0.05


class Harness:
    """The harness's per-job counter, on a connection of its own (as every peer's runner has)."""

    def __init__(self, redis_url: str, jobs: int) -> None:
        self.redis = Redis.from_url(redis_url)
        self.jobs = jobs

    async def count(self, started: float) -> None:
        done = int(await self.redis.incr("bench:done"))
        if done == 1:
            await self.redis.set("bench:t0", repr(started))
        if done == self.jobs:
            await self.redis.set("bench:t1", repr(time.time()))


def make_task(scenario: str, harness: Harness) -> WorkerCoroutine:
    async def body(run: RunInfo) -> dict[str, Any]:
        started = time.time()
        if scenario == "io50":
            await asyncio.sleep(IO_WAIT_S)
        if scenario != "latency":
            await harness.count(started)
        return {}

    policy = RunPolicy(timeout_s=300.0, max_tries=5)  # the defaults of ARQ_JOB_TIMEOUT and ARQ_MAX_TRIES

    async def bench_task(ctx: WorkerContext, envelope: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await ctx["runner"].run(JobEnvelope.model_validate(envelope), body, policy)
        return result

    return cast(WorkerCoroutine, bench_task)


def worker_settings(redis_url: str, workdir: Path, slots: int) -> Settings:
    """Our defaults (poll delay, heartbeat, lease), with the peers' slot count."""
    return bench_settings(redis_url, workdir, arq_max_jobs=slots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--scenario", choices=("noop", "io50", "latency"), required=True)
    parser.add_argument("--jobs", type=int, default=0)
    args = parser.parse_args(argv)
    settings = worker_settings(args.redis_url, args.workdir, args.slots)
    configure_logging(settings.log_level, settings.log_format)
    latency_trace.install("worker")  # only under bench.latency_trace (BENCH_TRACE_DIR set)
    task = func(
        make_task(args.scenario, Harness(args.redis_url, args.jobs)),
        name="normalize_appointment",
        timeout=TASK_ENFORCES_TIMEOUT,  # as our tasks are registered: the job runner enforces it
        max_tries=ARQ_TRY_CEILING,
    )
    asyncio.set_event_loop(new_event_loop(settings.worker_event_loop))  # as workers.py does
    worker = build_worker(settings, "normalization", functions=[task])
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
