"""Bulk enqueue: `TaskService.enqueue_many` (ledger included) against a loop of arq's `enqueue_job`.

`python -m bench.enqueue [--jobs 50000] [--smoke]`

- ours: N envelopes as `AppointmentService` builds them for single appointments, written to the
  ledger of a real `SQLiteRepository` in a temporary directory (`init()` first, not timed) and
  enqueued with the idempotent Lua script, a thousand jobs per call. The envelopes are built before
  the clock starts, as arq's function name and kwargs are.
- arq: `arq.connections.create_pool` with default settings on the same redis-server, a loop of
  `ArqRedis.enqueue_job` for the same N jobs on another queue (arq's default pickle serializer,
  one WATCH/MULTI transaction per job).

Redis is flushed before each side. Prints jobs/s of both and the ratio ours ÷ arq (the gate is ≥ 10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from arq.connections import RedisSettings, create_pool

from bench.common import BENCH_VERSION, bench_settings, redis_server
from src.application.services.task_service import TaskService
from src.domain.appointments import new_appointment_id
from src.domain.jobs import JobEnvelope
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.sqlite_repository import SQLiteRepository

ARQ_QUEUE = "bench:arq:enqueue"
GATE_RATIO = 10.0


@dataclass(frozen=True)
class EnqueueFigures:
    jobs: int
    ours_s: float
    arq_s: float

    @property
    def ours_jobs_per_s(self) -> float:
        return self.jobs / self.ours_s

    @property
    def arq_jobs_per_s(self) -> float:
        return self.jobs / self.arq_s

    @property
    def ratio(self) -> float:
        return self.ours_jobs_per_s / self.arq_jobs_per_s


def appointment_ids(n: int) -> list[str]:
    return [new_appointment_id() for _ in range(n)]  # as AppointmentService.create makes them


async def time_ours(redis_url: str, workdir: Path, ids: list[str]) -> float:
    settings = bench_settings(redis_url, workdir)
    repository = SQLiteRepository(str(workdir / "ledger.sqlite3"))
    await repository.init()
    pool = create_redis_pool(settings)
    try:
        await pool.flushdb()
        tasks = TaskService(RedisJobQueue(pool), repository=repository, producer_version=BENCH_VERSION)
        # The envelopes are the input, as the function name and kwargs are arq's: not timed.
        envelopes = [
            JobEnvelope(
                task="normalize_appointment",
                logical_key=f"normalize:{appointment_id}",
                ids={"appointment_id": appointment_id},
                request_id=None,
                producer_version=BENCH_VERSION,
            )
            for appointment_id in ids
        ]
        started = time.perf_counter()
        results = await tasks.enqueue_many(envelopes)
        elapsed = time.perf_counter() - started
        queued = sum(1 for r in results if r.status == "queued")
        if queued != len(ids):
            raise RuntimeError(f"ours queued {queued} of {len(ids)} jobs")
        return elapsed
    finally:
        await pool.aclose(close_connection_pool=True)
        await repository.close()


async def time_arq(port: int, ids: list[str]) -> float:
    pool = await create_pool(RedisSettings(host="127.0.0.1", port=port))
    try:
        await pool.flushdb()
        started = time.perf_counter()
        for appointment_id in ids:
            job = await pool.enqueue_job(
                "normalize_appointment", appointment_id=appointment_id, _queue_name=ARQ_QUEUE
            )
            if job is None:
                raise RuntimeError("arq refused a job")
        elapsed = time.perf_counter() - started
        queued = int(await pool.zcard(ARQ_QUEUE))
        if queued != len(ids):
            raise RuntimeError(f"arq queued {queued} of {len(ids)} jobs")
        return elapsed
    finally:
        await pool.aclose()


async def run(jobs: int) -> EnqueueFigures:
    with tempfile.TemporaryDirectory(prefix="bench-enqueue-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir / "redis") as server:
            arq_s = await time_arq(server.port, appointment_ids(jobs))
            ours_s = await time_ours(server.url, workdir, appointment_ids(jobs))
    return EnqueueFigures(jobs=jobs, ours_s=ours_s, arq_s=arq_s)


def report(figures: EnqueueFigures) -> str:
    verdict = "pass" if figures.ratio >= GATE_RATIO else "FAIL"
    return "\n".join(
        [
            f"Bulk enqueue of {figures.jobs} jobs",
            f"  arq enqueue_job loop:        {figures.arq_s:8.2f} s  {figures.arq_jobs_per_s:10.0f} jobs/s",
            f"  ours enqueue_many (+ledger): {figures.ours_s:8.2f} s  {figures.ours_jobs_per_s:10.0f} jobs/s",
            f"  ratio ours / arq:            {figures.ratio:8.2f}x  (gate >= {GATE_RATIO:.0f}x: {verdict})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--smoke", action="store_true", help="500 jobs, a few seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    jobs = 500 if args.smoke else args.jobs
    figures = asyncio.run(run(jobs))
    print(report(figures), flush=True)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    **asdict(figures),
                    "ratio": figures.ratio,
                    "ours_jobs_per_s": figures.ours_jobs_per_s,
                    "arq_jobs_per_s": figures.arq_jobs_per_s,
                }
            )  # fmt: skip
        )
    return 0 if math.isfinite(figures.ratio) else 1


if __name__ == "__main__":
    raise SystemExit(main())
