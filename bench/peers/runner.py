"""One peer job queue, one scenario, one worker process: the figures bench/compare.py puts side by side.

Run with the PEERS venv's python (bench/peers/venv.py); imports only the stdlib, redis-py and the peer
libraries, never `src` or `bench.*`:

    PYTHON runner.py --lib LIB --scenario {noop,io50,latency} --jobs N --concurrency C \
        --redis-url URL --json OUT [--samples M] [--pause-ms MS]

LIB: arq-defaults, arq-100, saq, streaq, taskiq, celery, rq. The worker is the library's own CLI, started
as ONE separate process (its own session, so Celery's prefork children and RQ's work horses are
stopped with it), importing this very file copied into a temp dir as `bench_peer_jobs` (the job
functions and the worker objects are built lazily from BENCH_* environment variables).

What is measured:

- noop / io50: the N jobs are enqueued with the worker NOT running (bulk or pipelined where the
  library allows), then the worker starts. Each job body (after `sleep(0.05)` for io50: asyncio for
  the async libraries, time.sleep for Celery and RQ) sends ONE harness command, `INCR bench:done`, on
  a client its process keeps; reply 1 stores `bench:t0` (time.time() at that job's start), reply N
  stores `bench:t1`. jobs_per_s = (N - 1) / (t1 - t0): start-up and enqueue are excluded.
- latency: the worker is idle; one job (returns its argument, no harness command) is enqueued and the
  caller waits with the library's natural result API until the result is visible to it, then pauses
  --pause-ms (5 ms: the worker idles before the next job; compare.py passes every lib the same); 20
  warm-ups, then M sequential samples -> p50 / p99 ms (the JSON's "jobs" is then M).
- Redis commands per job from `INFO commandstats` (sum of calls): enqueue phase (before/after the
  enqueue, producer closed) and worker phase (worker start -> t1 seen, start-up included), each / N.
  The harness's own commands are subtracted: the snapshot INFOs, the runner's GET polls of bench:t1,
  the N INCRs and the two SETs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

JOBS_MODULE = "bench_peer_jobs"
WARMUPS = 20
ENQUEUE_CHUNK = 500
POLL_S = 0.05
RQ_POLL_S = 0.005
LIBS = ("arq-defaults", "arq-100", "saq", "streaq", "taskiq", "celery", "rq")
# Rough no-op jobs/s, only to size the timeout (max(60 s, 5 x expected)).
RATE_GUESS = {"arq-defaults": 150.0, "rq": 10.0, "celery": 300.0}


# ---------------------------------------------------------------- job side (runs in the worker)


def _env(name: str) -> str:
    return os.environ[name]


_sync_client: redis.Redis | None = None
_async_client: Any = None


def _harness_sync() -> redis.Redis:
    """One client per process (Celery prefork child, RQ work horse), made lazily; lib_name=None so
    connecting sends no CLIENT SETINFO that would be counted against the library."""
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(_env("BENCH_REDIS_URL"), lib_name=None, lib_version=None)
    return _sync_client


def _harness_async() -> Any:
    global _async_client
    if _async_client is None:
        import redis.asyncio as aioredis

        _async_client = aioredis.Redis.from_url(_env("BENCH_REDIS_URL"), lib_name=None, lib_version=None)
    return _async_client


def _after_incr(client_reply: int, started: float) -> tuple[str, float] | None:
    if client_reply == 1:
        return "bench:t0", started
    if client_reply == int(_env("BENCH_JOBS")):
        return "bench:t1", time.time()
    return None


async def _async_body(io: bool) -> None:
    started = time.time()
    if io:
        await asyncio.sleep(0.05)
    client = _harness_async()
    mark = _after_incr(await client.incr("bench:done"), started)
    if mark:
        await client.set(*mark)


def _sync_body(io: bool) -> None:
    started = time.time()
    if io:
        time.sleep(0.05)
    client = _harness_sync()
    mark = _after_incr(client.incr("bench:done"), started)
    if mark:
        client.set(*mark)


# arq and SAQ pass a context first; streaq and taskiq do not.
async def arq_noop(ctx: dict[str, Any]) -> None:
    await _async_body(False)


async def arq_io50(ctx: dict[str, Any]) -> None:
    await _async_body(True)


async def arq_echo(ctx: dict[str, Any], x: int) -> int:
    return x


async def saq_noop(ctx: dict[str, Any]) -> None:
    await _async_body(False)


async def saq_io50(ctx: dict[str, Any]) -> None:
    await _async_body(True)


async def saq_echo(ctx: dict[str, Any], *, x: int) -> int:
    return x


async def a_noop() -> None:
    await _async_body(False)


async def a_io50() -> None:
    await _async_body(True)


async def a_echo(x: int) -> int:
    return x


def s_noop() -> None:
    _sync_body(False)


def s_io50() -> None:
    _sync_body(True)


def s_echo(x: int) -> int:
    return x


def _quiet_logging() -> None:
    # WARNING everywhere, as bench/lifecycle.py does for arq and ours: no side pays for per-job lines.
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("arq", "saq", "streaq", "taskiq", "rq", "celery"):
        logging.getLogger(name).setLevel(logging.WARNING)


ARQ_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


def _build_arq_settings() -> type:
    from arq.connections import RedisSettings

    delay = 0.5 if _env("BENCH_LIB") == "arq-defaults" else 0.01  # 0.5 s is arq's default

    class ArqSettings:
        functions = [arq_noop, arq_io50, arq_echo]
        redis_settings = RedisSettings.from_dsn(_env("BENCH_REDIS_URL"))
        max_jobs = int(_env("BENCH_CONCURRENCY"))
        poll_delay = delay

    return ArqSettings


def _build_saq_settings() -> dict[str, Any]:
    from saq import Queue

    return {
        "queue": Queue.from_url(_env("BENCH_REDIS_URL")),
        "functions": [saq_noop, saq_io50, saq_echo],
        "concurrency": int(_env("BENCH_CONCURRENCY")),
    }


def _build_streaq_worker() -> Any:
    from contextlib import asynccontextmanager

    from streaq import Worker

    @asynccontextmanager
    async def lifespan() -> Any:
        _quiet_logging()  # the CLI configured INFO logging just before this runs
        yield None

    worker = Worker(
        redis_url=_env("BENCH_REDIS_URL"), concurrency=int(_env("BENCH_CONCURRENCY")), lifespan=lifespan
    )
    worker.task(name="noop")(a_noop)
    worker.task(name="io50")(a_io50)
    worker.task(name="echo")(a_echo)
    return worker


def _build_taskiq_broker() -> Any:
    from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

    url = _env("BENCH_REDIS_URL")
    broker = RedisStreamBroker(url=url).with_result_backend(RedisAsyncResultBackend(redis_url=url))
    broker.register_task(a_noop, task_name="bench.noop")
    broker.register_task(a_io50, task_name="bench.io50")
    broker.register_task(a_echo, task_name="bench.echo")
    return broker


def _build_celery_app() -> Any:
    from celery import Celery

    url = _env("BENCH_REDIS_URL")
    app = Celery("bench", broker=url, backend=url)
    app.task(name="bench.noop")(s_noop)
    app.task(name="bench.io50")(s_io50)
    app.task(name="bench.echo")(s_echo)
    return app


_BUILDERS: dict[str, Callable[[], Any]] = {
    "ArqSettings": _build_arq_settings,
    "SAQ_SETTINGS": _build_saq_settings,
    "streaq_worker": _build_streaq_worker,
    "taskiq_broker": _build_taskiq_broker,
    "celery_app": _build_celery_app,
}
_BUILT: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """Worker objects built on first access (PEP 562), so importing this module for one library never
    imports the others (RQ re-imports it in every work horse)."""
    if name in _BUILDERS:
        if name not in _BUILT:
            _BUILT[name] = _BUILDERS[name]()
        return _BUILT[name]
    raise AttributeError(name)


# ---------------------------------------------------------------- caller side


def worker_command(lib: str, concurrency: int) -> list[str]:
    py = sys.executable
    mod = JOBS_MODULE
    if lib.startswith("arq"):
        return [py, "-m", "arq", f"{mod}.ArqSettings", "--custom-log-dict", f"{mod}.ARQ_LOG_CONFIG"]
    if lib == "saq":
        return [py, "-m", "saq", f"{mod}.SAQ_SETTINGS"]  # saq logs at ERROR unless -v
    if lib == "streaq":
        return [py, "-m", "streaq", "run", f"{mod}:streaq_worker"]
    if lib == "taskiq":
        return [py, "-m", "taskiq", "worker", f"{mod}:taskiq_broker", "--workers", "1"] + [
            "--max-async-tasks",
            str(concurrency),
            "--log-level",
            "WARNING",
        ]
    if lib == "celery":
        return [py, "-m", "celery", "-A", f"{mod}:celery_app", "worker", "--pool", "prefork"] + [
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--hostname",
            f"bench-{uuid.uuid4().hex[:6]}@%h",
        ]
    if lib == "rq":
        # the standard forking Worker: one work horse per job
        return [py, "-m", "rq.cli", "worker", "--url", os.environ["BENCH_REDIS_URL"]] + [
            "--worker-class",
            "rq.Worker",
            "--logging_level",
            "WARNING",
            "bench",
        ]
    raise ValueError(lib)


class WorkerProcess:
    """The library's worker CLI in its own session; stop() ends the whole process group."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.log_path = cwd / "worker.log"
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            # children (prefork pool, work horses) may outlive the parent: end the group anyway
            self._signal(signal.SIGKILL)
            if self.proc.poll() is None:
                self.proc.wait(10)
        finally:
            self._log.close()

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def command_calls(client: redis.Redis) -> int:
    """Total calls over every command since the server started (the INFO replying is not yet in)."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_"))


# -- enqueue N jobs (worker not running); each returns after closing its producer


async def _enqueue_arq(n: int, fn: str) -> None:
    from arq.connections import RedisSettings, create_pool

    pool = await create_pool(RedisSettings.from_dsn(_env("BENCH_REDIS_URL")))
    try:
        # arq has no bulk enqueue: concurrent enqueue_job calls in chunks
        for start in range(0, n, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, n - start)
            await asyncio.gather(*(pool.enqueue_job(f"arq_{fn}") for _ in range(count)))
    finally:
        await pool.aclose()


async def _enqueue_saq(n: int, fn: str) -> None:
    from saq import Queue

    queue = Queue.from_url(_env("BENCH_REDIS_URL"))
    await queue.connect()
    try:
        for start in range(0, n, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, n - start)
            await asyncio.gather(*(queue.enqueue(f"saq_{fn}") for _ in range(count)))
    finally:
        await queue.disconnect()


async def _enqueue_streaq(n: int, fn: str) -> None:
    worker = _build_streaq_worker()
    task = worker.registry[fn]
    async with worker:
        for start in range(0, n, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, n - start)
            await worker.enqueue_many([task.enqueue() for _ in range(count)])  # one pipeline


async def _enqueue_taskiq(n: int, fn: str) -> None:
    broker = _build_taskiq_broker()
    task = broker.find_task(f"bench.{fn}")
    await broker.startup()
    try:
        for start in range(0, n, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, n - start)
            await asyncio.gather(*(task.kiq() for _ in range(count)))
    finally:
        await broker.shutdown()


def _enqueue_celery(n: int, fn: str) -> None:
    app = _build_celery_app()
    task = app.tasks[f"bench.{fn}"]
    try:
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                task.apply_async(producer=producer)
    finally:
        app.close()


def _enqueue_rq(n: int, fn: str) -> None:
    from rq import Queue

    conn = redis.Redis.from_url(_env("BENCH_REDIS_URL"))
    try:
        queue = Queue("bench", connection=conn)
        for start in range(0, n, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, n - start)
            with conn.pipeline() as pipe:
                datas = [Queue.prepare_data(f"{JOBS_MODULE}.s_{fn}") for _ in range(count)]
                queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
    finally:
        conn.close()


def enqueue(lib: str, n: int, fn: str) -> None:
    if lib.startswith("arq"):
        asyncio.run(_enqueue_arq(n, fn))
    elif lib == "saq":
        asyncio.run(_enqueue_saq(n, fn))
    elif lib == "streaq":
        asyncio.run(_enqueue_streaq(n, fn))
    elif lib == "taskiq":
        asyncio.run(_enqueue_taskiq(n, fn))
    elif lib == "celery":
        _enqueue_celery(n, fn)
    elif lib == "rq":
        _enqueue_rq(n, fn)
    else:
        raise ValueError(lib)


# -- latency: each returns the M sample durations in seconds


Check = Callable[[], None]


# A sample whose job ended without its result is retried, a few times per run, and reported: SAQ's
# periodic sweep aborts a job caught between its dequeue and its start (status still "queued" on the
# active list), a race of the library's own, seen about once in a thousand samples here.
MAX_RETRIED_SAMPLES = 3
RETRIED_SAMPLES: list[str] = []


def _accept(result: Any) -> bool:
    """True for the expected result; False for one to retry; raises past `MAX_RETRIED_SAMPLES`."""
    if result == 1:
        return True
    if len(RETRIED_SAMPLES) >= MAX_RETRIED_SAMPLES:
        raise RuntimeError(f"unexpected result {result!r} (after retrying {RETRIED_SAMPLES})")
    RETRIED_SAMPLES.append(repr(result))
    return False


async def _timed_async(
    call: Callable[[], Any], warmups: int, samples: int, check: Check, pause_s: float
) -> list[float]:
    # the first warm-up also waits for the worker's start-up, hence the long timeout inside `call`
    durations: list[float] = []
    done = 0
    while done < warmups + samples:
        check()
        t = time.perf_counter()
        result = await call()
        dt = time.perf_counter() - t
        if not _accept(result):
            continue
        if done >= warmups:
            durations.append(dt)
        done += 1
        await asyncio.sleep(pause_s)  # the worker idles between samples (the same pause for every lib)
    return durations


def _timed_sync(
    call: Callable[[], Any], warmups: int, samples: int, check: Check, pause_s: float
) -> list[float]:
    durations: list[float] = []
    done = 0
    while done < warmups + samples:
        check()
        t = time.perf_counter()
        result = call()
        dt = time.perf_counter() - t
        if not _accept(result):
            continue
        if done >= warmups:
            durations.append(dt)
        done += 1
        time.sleep(pause_s)  # the worker idles between samples (the same pause for every lib)
    return durations


async def _latency_arq(
    lib: str, warmups: int, samples: int, check: Check, timeout: float, pause_s: float
) -> list[float]:
    from arq.connections import RedisSettings, create_pool

    pool = await create_pool(RedisSettings.from_dsn(_env("BENCH_REDIS_URL")))
    # arq-defaults waits with Job.result()'s default poll (0.5 s); arq-100 polls every 10 ms
    poll = {} if lib == "arq-defaults" else {"poll_delay": 0.01}

    async def call() -> Any:
        job = await pool.enqueue_job("arq_echo", 1)
        assert job is not None
        return await job.result(timeout=timeout, **poll)

    try:
        return await _timed_async(call, warmups, samples, check, pause_s)
    finally:
        await pool.aclose()


async def _latency_saq(
    warmups: int, samples: int, check: Check, timeout: float, pause_s: float
) -> list[float]:
    from saq import Queue
    from saq.job import TERMINAL_STATUSES, Status

    queue = Queue.from_url(_env("BENCH_REDIS_URL"))
    await queue.connect()

    def finished(_key: str, status: Status) -> bool:
        return status in TERMINAL_STATUSES

    async def call() -> Any:
        # SAQ's pub/sub wait, listening BEFORE the enqueue: Job.refresh(until_complete=...) reads the
        # job first and listens after, and lost a notification once in ~400 waits (a 60 s timeout).
        # (0.26's Queue.apply polls every 0.5 s by default instead.)
        key = uuid.uuid4().hex
        waiter = asyncio.create_task(queue.listen([key], finished, timeout=timeout))
        await asyncio.sleep(0)  # the waiter registers on the shared subscription, then blocks
        job = await queue.enqueue("saq_echo", key=key, x=1)
        assert job is not None
        await waiter
        await job.refresh()
        return job.result

    # Keeps SAQ's one pattern subscription open between samples, as in a long-lived caller:
    # otherwise each wait re-subscribes, asynchronously, and can miss a job that finished meanwhile.
    keepalive = asyncio.create_task(queue.listen(["bench-keepalive"], lambda *_: False, timeout=None))
    await asyncio.sleep(0.2)
    try:
        return await _timed_async(call, warmups, samples, check, pause_s)
    finally:
        keepalive.cancel()
        await asyncio.gather(keepalive, return_exceptions=True)
        await queue.disconnect()


async def _latency_streaq(
    warmups: int, samples: int, check: Check, timeout: float, pause_s: float
) -> list[float]:
    worker = _build_streaq_worker()
    echo = worker.registry["echo"]

    async def call() -> Any:
        task = await echo.enqueue(1)
        result = await task.result(timeout=int(math.ceil(timeout)))  # pub/sub
        return result.result

    async with worker:
        return await _timed_async(call, warmups, samples, check, pause_s)


async def _latency_taskiq(
    warmups: int, samples: int, check: Check, timeout: float, pause_s: float
) -> list[float]:
    broker = _build_taskiq_broker()
    echo = broker.find_task("bench.echo")
    await broker.startup()

    async def call() -> Any:
        task = await echo.kiq(1)
        result = await task.wait_result(check_interval=0.005, timeout=timeout)
        return result.return_value

    try:
        return await _timed_async(call, warmups, samples, check, pause_s)
    finally:
        await broker.shutdown()


def _latency_celery(warmups: int, samples: int, check: Check, timeout: float, pause_s: float) -> list[float]:
    app = _build_celery_app()
    echo = app.tasks["bench.echo"]
    try:
        return _timed_sync(lambda: echo.delay(1).get(timeout=timeout), warmups, samples, check, pause_s)
    finally:
        app.close()


def _latency_rq(warmups: int, samples: int, check: Check, timeout: float, pause_s: float) -> list[float]:
    from rq import Queue

    conn = redis.Redis.from_url(_env("BENCH_REDIS_URL"))
    queue = Queue("bench", connection=conn)

    def call() -> Any:
        job = queue.enqueue(f"{JOBS_MODULE}.s_echo", 1)
        deadline = time.monotonic() + timeout
        while (value := job.return_value(refresh=True)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("rq job did not finish")
            time.sleep(RQ_POLL_S)
        return value

    try:
        return _timed_sync(call, warmups, samples, check, pause_s)
    finally:
        conn.close()


def latency(
    lib: str, warmups: int, samples: int, check: Check, timeout: float, pause_s: float
) -> list[float]:
    if lib.startswith("arq"):
        return asyncio.run(_latency_arq(lib, warmups, samples, check, timeout, pause_s))
    if lib == "saq":
        return asyncio.run(_latency_saq(warmups, samples, check, timeout, pause_s))
    if lib == "streaq":
        return asyncio.run(_latency_streaq(warmups, samples, check, timeout, pause_s))
    if lib == "taskiq":
        return asyncio.run(_latency_taskiq(warmups, samples, check, timeout, pause_s))
    if lib == "celery":
        return _latency_celery(warmups, samples, check, timeout, pause_s)
    if lib == "rq":
        return _latency_rq(warmups, samples, check, timeout, pause_s)
    raise ValueError(lib)


LATENCY_NOTES = {
    "arq-defaults": "Job.result() default poll 0.5 s",
    "arq-100": "Job.result(poll_delay=0.01)",
    "saq": "Queue.listen (pub/sub) set up before enqueue, then Job.refresh()",
    # measured: the task ends ~5 ms after enqueue; leaving coredis 6.9's PubSub waits its 0.1 s
    # unsubscription_timeout, so Task.result() returns ~100 ms later
    "streaq": "Task.result() (pub/sub; ~100 ms is coredis leaving the PubSub)",
    "taskiq": "wait_result(check_interval=0.005)",
    "celery": "AsyncResult.get() (redis backend pub/sub)",
    "rq": "job.return_value(refresh=True) polled every 5 ms",
}


def expected_seconds(lib: str, scenario: str, n: int, concurrency: int) -> float:
    rate = RATE_GUESS.get(lib, 1000.0)
    if scenario == "io50":
        slots_rate = concurrency / (0.5 if lib == "arq-defaults" else 0.05)
        rate = min(rate, slots_rate)
    return n / rate


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def run(args: argparse.Namespace) -> dict[str, Any]:
    lib, scenario, n = args.lib, args.scenario, args.jobs
    result: dict[str, Any] = {
        "lib": lib,
        "scenario": scenario,
        "jobs": n if scenario != "latency" else args.samples,
        "concurrency": args.concurrency,
        "jobs_per_s": None,
        "p50_ms": None,
        "p99_ms": None,
        "enqueue_cmds_per_job": None,
        "worker_cmds_per_job": None,
        "notes": "",
    }
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{lib}-"))
    shutil.copy(__file__, workdir / f"{JOBS_MODULE}.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        BENCH_REDIS_URL=args.redis_url,
        BENCH_JOBS=str(n),
        BENCH_LIB=lib,
        BENCH_CONCURRENCY=str(args.concurrency),
        PYTHONPATH=str(workdir),
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(
        {k: env[k] for k in ("BENCH_REDIS_URL", "BENCH_JOBS", "BENCH_LIB", "BENCH_CONCURRENCY")}
    )
    client = redis.Redis.from_url(args.redis_url, lib_name=None, lib_version=None)
    worker: WorkerProcess | None = None
    try:
        client.delete("bench:done", "bench:t0", "bench:t1")
        cmd = worker_command(lib, args.concurrency)

        def check() -> None:
            if worker is not None and not worker.alive():
                raise RuntimeError(f"{lib} worker exited with {worker.proc.returncode}:\n{worker.log_tail()}")

        if scenario == "latency":
            worker = WorkerProcess(cmd, workdir, env)
            durations = latency(lib, WARMUPS, args.samples, check, timeout=60.0, pause_s=args.pause_ms / 1000)
            result["p50_ms"] = statistics.median(durations) * 1000
            result["p99_ms"] = percentile(durations, 99) * 1000
            result["notes"] = (
                f"{WARMUPS} warm-ups, {args.pause_ms:g} ms pause after each; {LATENCY_NOTES[lib]}"
            )
            if RETRIED_SAMPLES:
                result["notes"] += f"; {len(RETRIED_SAMPLES)} sample(s) retried, result was {RETRIED_SAMPLES}"
            return result

        fn = "io50" if scenario == "io50" else "noop"
        before_enqueue = command_calls(client)
        enqueue(lib, n, fn)
        after_enqueue = command_calls(client)
        worker = WorkerProcess(cmd, workdir, env)
        timeout = max(60.0, 5 * expected_seconds(lib, scenario, n, args.concurrency))
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            polls += 1
            if client.get("bench:t1") is not None:
                break
            check()
            if time.monotonic() > deadline:
                done = client.get("bench:done")
                raise TimeoutError(
                    f"{lib} {scenario}: {done!r} of {n} jobs done after {timeout:.0f} s:\n{worker.log_tail()}"
                )
            time.sleep(POLL_S)
        after_worker = command_calls(client)
        t0 = float(client.get("bench:t0") or 0)
        t1 = float(client.get("bench:t1") or 0)
        result["jobs_per_s"] = (n - 1) / (t1 - t0)
        # harness commands: one INFO per snapshot window, the GET polls, N INCR + 2 SET in the jobs
        result["enqueue_cmds_per_job"] = (after_enqueue - before_enqueue - 1) / n
        result["worker_cmds_per_job"] = (after_worker - after_enqueue - 1 - polls - n - 2) / n
        result["notes"] = (
            "harness commands subtracted (snapshot INFOs, t1 polls, 1 INCR per job, 2 SETs); "
            "worker phase includes start-up"
        )
        return result
    finally:
        if worker is not None:
            worker.stop()
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(f"runner: terminated by signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", required=True, choices=LIBS)
    parser.add_argument("--scenario", required=True, choices=("noop", "io50", "latency"))
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pause-ms", type=float, default=5.0, help="latency: idle pause after each sample")
    args = parser.parse_args(argv)
    if args.scenario != "latency" and args.jobs < 2:
        parser.error("--jobs must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM from the orchestrator unwinds through run()'s finally, which stops the worker's group
    signal.signal(signal.SIGTERM, _terminated)
    try:
        result = run(args)
    except Exception as exc:
        print(f"runner {args.lib} {args.scenario} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
