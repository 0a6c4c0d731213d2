"""The ghost-worker incident's load test, against a real API, real workers and a real redis-server.

`python -m bench.loadtest [--smoke] [--phases 400@170,2000@500] [--workers 2] [--json PATH] [--strict]
[--logs DIR] [--redis-max-connections N] [--redis-pool-timeout S]`

What it starts (as `bench/import50k.py` does): a private redis-server on a free loopback port (never
6379), one uvicorn process of the API (`src.api.main:app_from_env`) and, once `/readyz` answers, N
`python workers.py --queue normalization` processes: rules mode (no OpenAI key), the embedded SQLite
store in a temporary directory. Every process writes its stdout/stderr to a log file there, and every
one is stopped (SIGTERM, then kill) in `finally`.

What one request is: POST /api/v1/appointments with a valid body (names, CPFs/CNPJs and addresses
from `scripts.generate_sample`, so some documents are invalid: those jobs still finish as
`normalized` with the document marked invalid), then GET /api/v1/appointments/{id} with a short
backoff (20 ms doubling to 200 ms) until its `normalization_status` is terminal, 60 s at most. It
succeeds on a 2xx create and a `normalized` result; a create answered `deferred` (the API could not
reach Redis) fails at once, since only the maintenance worker's reconciler, not started here, would
enqueue it. The phases (`requests@concurrency`) run in order; a phase keeps `concurrency` requests
in flight, one HTTP connection each (httpx clients of 25 connections, `concurrency` in all).

What is measured, per phase: successes and failures by reason, the create→result latency
(p50/p99/max, ms), requests/s, the occurrences of "Too many connections" (case-insensitive) in the
error bodies and in every process's log written during the phase (with other signs of connection
trouble: "No connection available", a pool wait that timed out; "queue unavailable", the API's 503
for any RedisError; deferred enqueues), the CPU seconds of each process, and Redis `connected_clients`,
read every 100 ms by a sampler thread over its own single connection (its own connection is
subtracted). The bound for `connected_clients` is the sum of the maxima of every Redis pool the
started processes hold while the phases run, worked out from the code (`POOL_SITES`) and the
settings passed to the processes (REDIS_MAX_CONNECTIONS); how it is computed is printed, next to
each process's own peak of sockets to Redis (from /proc). `--redis-max-connections 2` shows the
bound reached exactly; adding `--redis-pool-timeout 0.05` shows what pool exhaustion looks like.

Gates (issue 7): 100% success in every phase, 0 "Too many connections", max `connected_clients` ≤
the bound. PASS/FAIL is printed; the exit status is non-zero on a failed gate only with `--strict`.

The API runs with RATE_LIMIT_PER_MINUTE=0: its in-memory per-token limit (600/min by default) would
answer 429 to a load test sent with one token, and the incident's test is about Redis connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import redis

from bench.common import api_command, bench_settings, cpu_seconds
from bench.import50k import stop_all, wait_ready, wait_workers
from scripts.generate_sample import generate_rows
from scripts.local_redis import RedisServer, free_port, start_redis_server
from src.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHASES = "400@170,2000@500"
SMOKE_PHASES = "40@17,100@50"
REQUEST_TIMEOUT_S = 60.0  # create → result, per request
HTTP_TIMEOUT_S = 30.0  # one HTTP call
POLL_FIRST_S = 0.02
POLL_MAX_S = 0.2
LANES_PER_CLIENT = 25
# Below uvicorn's 5 s keep-alive timeout: a connection the server is closing is not reused for a
# POST (which httpx does not retry: ReadError).
KEEPALIVE_EXPIRY_S = 2.0
SAMPLE_INTERVAL_S = 0.1
PROCESS_SAMPLE_EVERY = 5  # per-process socket counts every 5th sample (500 ms): /proc reads cost
SAMPLE_BODIES_PER_REASON = 3
TOO_MANY = "too many connections"
# Other signs of Redis connection trouble, reported (not gated) to tell a pool timeout
# (BlockingConnectionPool: "No connection available.") from a refused client and from the API's
# 503 for any RedisError ("queue unavailable") or a deferred enqueue.
RELATED_SIGNS = (
    "no connection available",
    "max number of clients reached",
    "queue unavailable",
    "jobs deferred",
    "connectionerror",
    "heartbeat failed",
    "redis unreachable",
)


@dataclass(frozen=True)
class PoolSite:
    """One Redis connection pool a started process creates, as found in the code."""

    process: str  # "api" or "worker"
    where: str
    max_connections: str  # the setting or constant that bounds it
    held_during_phases: bool
    note: str


# Every pool the API and `python workers.py` create (grep: create_redis_pool, ArqRedis, Redis(,
# BlockingConnectionPool, max_connections in src/ and workers.py). All go through
# src/infrastructure/redis_pool.py:create_redis_pool, redis-py's stock BlockingConnectionPool (behind
# Sentinel, src/infrastructure/redis_sentinel.py's SentinelBlockingPool, the same) of
# `max_connections or REDIS_MAX_CONNECTIONS`. Not started here: src/cli/direct.py (2 and 4), the
# TaskService() fallback (API and workers inject their pool) and `workers.py --check` (2,
# src/worker/liveness.py).
POOL_SITES: tuple[PoolSite, ...] = (
    PoolSite(
        "api",
        "src/api/main.py create_app.lifespan: create_redis_pool(settings)",
        "REDIS_MAX_CONNECTIONS",
        True,
        "shared by TaskService, DeploymentRegistry (publisher), RedisIdempotencyStore, /readyz; "
        "the rate limiter is in memory",
    ),
    PoolSite(
        "worker",
        "workers.py preflight: create_redis_pool(settings, max_connections=2)",
        "2",
        False,
        "one PING, closed (aclose) before the worker is built",
    ),
    PoolSite(
        "worker",
        "src/worker/settings.py build_worker: create_redis_pool(settings)",
        "REDIS_MAX_CONNECTIONS",
        True,
        "arq's poll loop, claims/finishes, running jobs, Heartbeat/DeploymentRegistry, ctx['redis']",
    ),
)
# Where pools can be created, and how many such call sites the table above was worked out from:
# a change here means the bound must be re-checked (printed as a warning, not a gate).
POOL_PATTERN = re.compile(
    r"create_redis_pool\(|BlockingConnectionPool|ConnectionPool\(|[^.\w]Redis\(|ArqRedis\(|create_pool\(|from_url\("
)
EXPECTED_POOL_CALL_SITES = {
    "src/api/main.py": 1,  # lifespan
    "src/worker/settings.py": 1,  # build_worker
    "workers.py": 1,  # preflight
    "src/worker/liveness.py": 1,  # `workers.py --check` and the image's health check
    "src/cli/direct.py": 2,  # with_registry and with_admin
    "src/infrastructure/queue/redis_queue.py": 1,  # TaskService()'s default queue
    # docstring, import, `def create_redis_pool(`, BlockingConnectionPool.from_url( (2), ArqRedis( over it
    "src/infrastructure/redis_pool.py": 6,
    # docstring (2), import, `class SentinelBlockingPool(…, BlockingConnectionPool)`: built by the above
    "src/infrastructure/redis_sentinel.py": 4,
}


@dataclass(frozen=True)
class Phase:
    requests: int
    concurrency: int

    def __str__(self) -> str:
        return f"{self.requests}@{self.concurrency}"


def parse_phases(text: str) -> list[Phase]:
    phases = []
    for part in text.split(","):
        requests, _, concurrency = part.strip().partition("@")
        phase = Phase(int(requests), int(concurrency))
        if phase.requests < 1 or phase.concurrency < 1:
            raise argparse.ArgumentTypeError(f"bad phase {part!r}: want REQUESTS@CONCURRENCY, both >= 1")
        phases.append(phase)
    return phases


@dataclass
class Bound:
    redis_max_connections: int
    workers: int
    terms: list[dict[str, object]] = field(default_factory=list)
    total: int = 0  # pools held while the phases run
    total_with_transient: int = 0  # plus pools closed before the phases (never open together)
    unexpected_sites: dict[str, int] = field(default_factory=dict)

    def explain(self) -> str:
        lines = [f"Redis connection bound (REDIS_MAX_CONNECTIONS={self.redis_max_connections}):"]
        for t in self.terms:
            held = "held during the phases" if t["held_during_phases"] else "transient, not counted"
            lines.append(
                f"  {t['processes']} x {t['process']:<6} {t['where']}\n"
                f"      max {t['max_connections']} ({t['setting']}) -> {t['subtotal']}  [{held}; {t['note']}]"
            )
        held_terms = " + ".join(
            f"{t['processes']}x{t['max_connections']}" for t in self.terms if t["held_during_phases"]
        )
        lines.append(
            f"  bound = {held_terms} = {self.total}  (with transient pools: {self.total_with_transient})"
        )
        if self.unexpected_sites:
            lines.append(
                f"  WARNING: pool call sites differ from those this bound was worked out from: "
                f"{self.unexpected_sites}; re-check POOL_SITES"
            )
        return "\n".join(lines)


def compute_bound(settings: Settings, workers: int) -> Bound:
    bound = Bound(redis_max_connections=settings.redis_max_connections, workers=workers)
    for site in POOL_SITES:
        size = (
            settings.redis_max_connections
            if site.max_connections == "REDIS_MAX_CONNECTIONS"
            else int(site.max_connections)
        )
        processes = 1 if site.process == "api" else workers
        bound.terms.append(
            {
                **asdict(site),
                "setting": site.max_connections,
                "max_connections": size,
                "processes": processes,
                "subtotal": processes * size,
            }
        )
        bound.total_with_transient += processes * size
        if site.held_during_phases:
            bound.total += processes * size
    bound.unexpected_sites = check_pool_sites()
    return bound


def check_pool_sites() -> dict[str, int]:
    """Files whose count of pool-creating call sites differs from `EXPECTED_POOL_CALL_SITES`."""
    found: dict[str, int] = {}
    for path in [*sorted((ROOT / "src").rglob("*.py")), ROOT / "workers.py"]:
        count = len(POOL_PATTERN.findall(path.read_text(encoding="utf-8")))
        if count:
            found[str(path.relative_to(ROOT))] = count
    keys = set(found) | set(EXPECTED_POOL_CALL_SITES)
    return {k: found.get(k, 0) for k in sorted(keys) if found.get(k, 0) != EXPECTED_POOL_CALL_SITES.get(k, 0)}


# --- request bodies ---------------------------------------------------------------------------


def appointment_bodies(count: int, seed: int = 7) -> list[dict[str, object]]:
    """Valid create bodies from the sample generator: varied CPFs/CNPJs (some with bad check digits,
    short or repeated: still normalized, marked invalid) and messy addresses. Rows the importer would
    reject (no name, document or address) are skipped; dates the API does not parse are replaced."""
    bodies: list[dict[str, object]] = []
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    seed_offset = 0
    while len(bodies) < count:
        for row in generate_rows(count + 100, seed=seed + seed_offset):
            name, document, address = row["Paciente"], row["Documento"], row["Endereço"]
            if not all(isinstance(v, str | int) and str(v).strip() for v in (name, document, address)):
                continue
            when = row["Data/Hora"]
            moment = when if isinstance(when, datetime) else start + timedelta(minutes=15 * len(bodies))
            body: dict[str, object] = {
                "paciente": str(name),
                "documento": str(document),  # the generator types some documents as numbers
                "endereco": str(address),
                "data_hora": moment.isoformat(),
            }
            if row["Telefone"] is not None:
                body["telefone"] = str(row["Telefone"])
            if isinstance(row["E-mail"], str):
                body["email"] = row["E-mail"]
            bodies.append(body)
            if len(bodies) == count:
                break
        seed_offset += 1
    return bodies


# --- one request and one phase ----------------------------------------------------------------


@dataclass
class Outcome:
    latency_ms: float | None = None  # set on success
    reason: str | None = None  # set on failure
    body: str | None = None  # an error body, for the report
    create_ms: float | None = None  # the POST alone, when it answered
    polls: int = 0


async def one_request(client: httpx.AsyncClient, body: dict[str, object]) -> Outcome:
    started = time.perf_counter()
    deadline = started + REQUEST_TIMEOUT_S
    try:
        response = await client.post("/api/v1/appointments", json=body)
    except httpx.HTTPError as exc:
        return Outcome(reason=f"create: {type(exc).__name__}", body=repr(exc))
    outcome = Outcome(create_ms=(time.perf_counter() - started) * 1000)
    if not response.is_success:
        outcome.reason, outcome.body = f"create: HTTP {response.status_code}", response.text
        return outcome
    created = response.json()
    if created.get("enqueue_status") == "deferred":
        # Redis refused the enqueue: only the maintenance worker's reconciler (not started) would
        # enqueue it later, so waiting is pointless.
        outcome.reason, outcome.body = "create: enqueue deferred (Redis error in the API)", response.text
        return outcome
    appointment_id = created["appointment_id"]
    delay = POLL_FIRST_S
    while True:
        await asyncio.sleep(delay)
        delay = min(2 * delay, POLL_MAX_S)
        outcome.polls += 1
        try:
            response = await client.get(f"/api/v1/appointments/{appointment_id}")
        except httpx.HTTPError as exc:
            outcome.reason, outcome.body = f"poll: {type(exc).__name__}", repr(exc)
            return outcome
        if not response.is_success:
            outcome.reason, outcome.body = f"poll: HTTP {response.status_code}", response.text
            return outcome
        appointment = response.json()
        status = appointment.get("normalization_status")
        if status == "normalized":
            outcome.latency_ms = (time.perf_counter() - started) * 1000
            return outcome
        if status == "failed":
            outcome.reason, outcome.body = "normalization failed", str(appointment.get("normalization_error"))
            return outcome
        if time.perf_counter() > deadline:
            outcome.reason = f"no result within {REQUEST_TIMEOUT_S:.0f} s (last status {status})"
            return outcome


@dataclass
class PhaseFigures:
    requests: int
    concurrency: int
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    error_bodies: dict[str, list[str]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    create_ms: list[float] = field(default_factory=list)
    polls: int = 0
    duration_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process during the phase
    too_many_in_bodies: int = 0
    too_many_in_logs: int = 0
    related_in_logs: dict[str, int] = field(default_factory=dict)
    connected_clients_max: int = 0
    connected_clients_samples: int = 0
    process_connections_max: dict[str, int] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else math.nan

    @property
    def too_many(self) -> int:
        return self.too_many_in_bodies + self.too_many_in_logs

    def percentile(self, q: float, values: list[float] | None = None) -> float:
        """Nearest rank, of the create→result latencies unless other values are given."""
        values = self.latencies_ms if values is None else values
        if not values:
            return math.nan
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("latencies_ms")
        data.pop("create_ms")
        data.update(
            phase=f"{self.requests}@{self.concurrency}",
            p50_ms=self.percentile(0.50),
            p99_ms=self.percentile(0.99),
            max_ms=max(self.latencies_ms, default=math.nan),
            requests_per_s=self.requests_per_s,
            too_many_connections=self.too_many,
            create_p50_ms=self.percentile(0.50, self.create_ms),
            create_p99_ms=self.percentile(0.99, self.create_ms),
            polls_per_s=self.polls / self.duration_s if self.duration_s else math.nan,
        )
        return data


async def run_phase(
    base_url: str, token: str, phase: Phase, bodies: Sequence[dict[str, object]], first: int
) -> PhaseFigures:
    """`concurrency` lanes, each running requests back to back (one HTTP call in flight per lane),
    until the phase's requests are used up. The lanes are spread over several httpx clients of
    `LANES_PER_CLIENT` connections, `concurrency` connections in all: httpcore's pool scans every
    connection for every queued request, so one 500-connection client spends the CPU this small
    machine needs for the API and the workers."""
    figures = PhaseFigures(requests=phase.requests, concurrency=phase.concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    indexes: Iterator[int] = iter(range(first, first + phase.requests))

    async def lane(client: httpx.AsyncClient) -> None:
        for index in indexes:  # shared by all lanes
            outcome = await one_request(client, bodies[index % len(bodies)])
            figures.polls += outcome.polls
            if outcome.create_ms is not None:
                figures.create_ms.append(outcome.create_ms)
            if outcome.latency_ms is not None:
                figures.successes += 1
                figures.latencies_ms.append(outcome.latency_ms)
                continue
            reason = outcome.reason or "unknown"
            figures.failures[reason] = figures.failures.get(reason, 0) + 1
            if outcome.body and TOO_MANY in outcome.body.lower():
                figures.too_many_in_bodies += 1
            samples = figures.error_bodies.setdefault(reason, [])
            if outcome.body and len(samples) < SAMPLE_BODIES_PER_REASON:
                samples.append(outcome.body[:300])

    lanes = min(phase.concurrency, phase.requests)
    shares = [min(LANES_PER_CLIENT, lanes - start) for start in range(0, lanes, LANES_PER_CLIENT)]
    async with AsyncExitStack() as stack:
        clients = []
        for share in shares:
            limits = httpx.Limits(
                max_connections=share,
                max_keepalive_connections=share,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            )
            client = httpx.AsyncClient(
                base_url=base_url, headers=headers, limits=limits, timeout=HTTP_TIMEOUT_S
            )
            clients.append(await stack.enter_async_context(client))
        started = time.perf_counter()
        await asyncio.gather(
            *(lane(c) for c, share in zip(clients, shares, strict=True) for _ in range(share))
        )
        figures.duration_s = time.perf_counter() - started
    return figures


# --- observing Redis and the logs ------------------------------------------------------------


def redis_sockets(pid: int, inodes_to_redis: set[str]) -> int:
    """How many of the process's sockets are established connections to the benchmark's Redis."""
    count = 0
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes_to_redis:
                count += 1
    except OSError:
        return 0
    return count


def inodes_connected_to(port: int) -> set[str]:
    """Inodes of established loopback TCP sockets whose remote end is `port` (/proc/net/tcp)."""
    wanted = f":{port:04X}"
    inodes: set[str] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return inodes
    for line in lines:
        parts = line.split()
        if len(parts) > 9 and parts[2].endswith(wanted) and parts[3] == "01":
            inodes.add(parts[9])
    return inodes


class ClientSampler:
    """A thread that reads `connected_clients` every 100 ms over one connection of its own (so the
    load generator's event loop cannot delay it) and, every 500 ms, counts each process's sockets to
    Redis from /proc, to say which pool a peak belongs to."""

    def __init__(self, server: RedisServer, processes: dict[str, int]) -> None:
        self._client = redis.Redis(
            host="127.0.0.1", port=server.port, single_connection_client=True, socket_timeout=2
        )
        self._port = server.port
        self._processes = processes
        self.samples: list[tuple[float, int]] = []  # (monotonic, connected_clients - 1)
        self.process_samples: list[tuple[float, dict[str, int]]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connected-clients", daemon=True)

    def read_once(self) -> int:
        return int(self._client.info("clients")["connected_clients"]) - 1  # minus this connection

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._client.close()

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self.samples.append((now, self.read_once()))
            except redis.RedisError:
                self.errors += 1
            if tick % PROCESS_SAMPLE_EVERY == 0:
                inodes = inodes_connected_to(self._port)
                counts = {name: redis_sockets(pid, inodes) for name, pid in self._processes.items()}
                self.process_samples.append((now, counts))
            tick += 1
            self._stop.wait(max(0.0, SAMPLE_INTERVAL_S - (time.monotonic() - now)))

    def window(self, start: float, end: float) -> tuple[int, int, dict[str, int]]:
        """(max connected_clients, samples, max sockets per process) between two monotonic times."""
        values = [v for t, v in self.samples if start <= t <= end]
        per_process: dict[str, int] = {}
        for t, counts in self.process_samples:
            if start <= t <= end:
                for name, count in counts.items():
                    per_process[name] = max(per_process.get(name, 0), count)
        return max(values, default=0), len(values), per_process


def log_sizes(logs: Sequence[Path]) -> dict[Path, int]:
    return {path: path.stat().st_size if path.exists() else 0 for path in logs}


def count_signs(logs: Sequence[Path], since: dict[Path, int] | None = None) -> Counter[str]:
    """Case-insensitive occurrences of "too many connections" and the related signs in the logs,
    from the given offsets (a phase) or from the start (the whole run)."""
    counts: Counter[str] = Counter()
    for path in logs:
        if not path.exists():
            continue
        with path.open("rb") as handle:
            handle.seek((since or {}).get(path, 0))
            text = handle.read().decode("utf-8", errors="replace").lower()
        for sign in (TOO_MANY, *RELATED_SIGNS):
            counts[sign] += text.count(sign)
    return counts


# --- the run ------------------------------------------------------------------------------------


@dataclass
class LoadFigures:
    workers: int
    redis_max_connections: int
    redis_pool_timeout: float
    bound: Bound
    phases: list[PhaseFigures] = field(default_factory=list)
    idle_connected_clients: int = 0
    connected_clients_max: int = 0
    sampler_errors: int = 0
    too_many_in_logs_total: int = 0  # the whole run, start-up and shut-down included
    related_in_logs_total: dict[str, int] = field(default_factory=dict)
    startup_s: float = 0.0
    run_s: float = 0.0

    @property
    def too_many_total(self) -> int:
        return self.too_many_in_logs_total + sum(p.too_many_in_bodies for p in self.phases)

    def gates(self) -> dict[str, bool]:
        return {
            "success": all(p.successes == p.requests for p in self.phases),
            "too_many_connections": self.too_many_total == 0,
            "connected_clients": self.connected_clients_max <= self.bound.total,
        }


def start_process(
    command: list[str], env: dict[str, str], log_path: Path, opened: list[IO[bytes]]
) -> subprocess.Popen[bytes]:
    log_file = log_path.open("wb")
    opened.append(log_file)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def run(
    phases: Sequence[Phase],
    workers: int,
    max_connections: int,
    pool_timeout: float,
    workdir: Path,
    keep_logs: Path | None = None,
) -> LoadFigures:
    run_started = time.perf_counter()
    bodies = appointment_bodies(min(sum(p.requests for p in phases), 5000))
    redis_log = workdir / "redis.log"
    server = start_redis_server(workdir / "redis", None, "--logfile", str(redis_log))
    try:
        settings = bench_settings(
            server.url, workdir, redis_max_connections=max_connections, redis_pool_timeout=pool_timeout
        )
        figures = LoadFigures(
            workers=workers,
            redis_max_connections=settings.redis_max_connections,
            redis_pool_timeout=settings.redis_pool_timeout,
            bound=compute_bound(settings, workers),
        )
    except BaseException:
        server.stop()
        raise
    token = secrets.token_urlsafe(24)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MONGODB_URL")
    }
    env.update(
        {
            "ENVIRONMENT": "test",
            "REDIS_URL": server.url,
            "REDIS_MAX_CONNECTIONS": str(settings.redis_max_connections),
            "REDIS_POOL_TIMEOUT": str(settings.redis_pool_timeout),
            "SQLITE_PATH": settings.sqlite_path,
            "API_ACCESS_TOKEN": token,
            "APP_VERSION": "bench-loadtest",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "RATE_LIMIT_PER_MINUTE": "0",
            "PYTHONUNBUFFERED": "1",  # nothing lost in a buffer if a process has to be killed
        }
    )
    processes: list[subprocess.Popen[bytes]] = []
    opened: list[IO[bytes]] = []
    logs = [redis_log, workdir / "api.log", *(workdir / f"worker-{i}.log" for i in range(workers))]
    sampler: ClientSampler | None = None
    try:
        api = start_process(
            api_command(port), env, workdir / "api.log", opened,
        )  # fmt: skip
        processes.append(api)

        async def ready() -> None:
            async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
                await wait_ready(client, processes)

        asyncio.run(ready())  # the API initializes the store and publishes the deployment first
        pids = {"api": api.pid}
        for index in range(workers):
            worker_env = {**env, "WORKER_STATE_DIR": str(workdir / f"worker-state-{index}")}
            worker = start_process(
                [sys.executable, "workers.py", "--queue", "normalization"],
                worker_env, workdir / f"worker-{index}.log", opened,
            )  # fmt: skip
            processes.append(worker)
            pids[f"worker-{index}"] = worker.pid
        asyncio.run(wait_workers(base_url, token, workers, processes))
        figures.startup_s = time.perf_counter() - run_started

        sampler = ClientSampler(server, pids)
        # where the CPU goes on a small machine: this load generator competes with what it measures
        cpu_pids = {**pids, "redis": server.process.pid, "loadgen": os.getpid()}
        figures.idle_connected_clients = sampler.read_once()
        sampler.start()
        first = 0
        for phase in phases:
            offsets = log_sizes(logs)
            cpu_before = {name: cpu_seconds(pid) for name, pid in cpu_pids.items()}
            begin = time.monotonic()
            result = asyncio.run(run_phase(base_url, token, phase, bodies, first))
            end = time.monotonic()
            result.cpu_s = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in cpu_pids.items()}
            first += phase.requests
            signs = count_signs(logs, offsets)
            result.too_many_in_logs = signs.pop(TOO_MANY)
            result.related_in_logs = {k: v for k, v in signs.items() if v}
            (
                result.connected_clients_max,
                result.connected_clients_samples,
                result.process_connections_max,
            ) = sampler.window(begin, end)
            for p in processes:
                if p.poll() is not None:
                    raise RuntimeError(f"a process exited during phase {phase} with {p.returncode}")
            figures.phases.append(result)
            print(f"  phase {phase} done in {result.duration_s:.1f} s", file=sys.stderr, flush=True)
    finally:
        if sampler is not None:
            sampler.stop()
            figures.sampler_errors = sampler.errors
        stop_all(processes)
        server.stop()
        for handle in opened:
            handle.close()
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for path in logs:
                if path.exists():
                    shutil.copy(path, keep_logs / path.name)
    figures.connected_clients_max = max((p.connected_clients_max for p in figures.phases), default=0)
    signs = count_signs(logs)
    figures.too_many_in_logs_total = signs.pop(TOO_MANY)
    figures.related_in_logs_total = {k: v for k, v in signs.items() if v}
    figures.run_s = time.perf_counter() - run_started
    return figures


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(f: LoadFigures) -> str:
    lines = [
        f"Load test: API (1 uvicorn process) + {f.workers} worker(s), rules mode, SQLite; "
        f"REDIS_MAX_CONNECTIONS={f.redis_max_connections}, REDIS_POOL_TIMEOUT={f.redis_pool_timeout:g} s",
        f.bound.explain(),
        f"  idle connected_clients (sampler excluded) before the phases: {f.idle_connected_clients}",
    ]
    for p in f.phases:
        failures = ", ".join(f"{reason}: {n}" for reason, n in sorted(p.failures.items())) or "none"
        per_process = ", ".join(f"{name} {n}" for name, n in p.process_connections_max.items())
        lines += [
            f"Phase {p.requests}@{p.concurrency}: {p.successes}/{p.requests} succeeded "
            f"in {p.duration_s:.1f} s ({p.requests_per_s:.1f} requests/s)",
            f"  create→result latency: p50 {p.percentile(0.5):.0f} ms, p99 {p.percentile(0.99):.0f} ms, "
            f"max {max(p.latencies_ms, default=math.nan):.0f} ms",
            f"  create (POST) alone: p50 {p.percentile(0.5, p.create_ms):.0f} ms, "
            f"p99 {p.percentile(0.99, p.create_ms):.0f} ms; {p.polls} polls ({p.polls / p.duration_s:.0f}/s)",
            f"  CPU s during the phase: {', '.join(f'{k} {v:.1f}' for k, v in p.cpu_s.items())}",
            f"  failures: {failures}",
            f"  'Too many connections': {p.too_many} ({p.too_many_in_bodies} in bodies, "
            f"{p.too_many_in_logs} in logs); other signs in logs: {p.related_in_logs or 'none'}",
            f"  connected_clients max {p.connected_clients_max} over {p.connected_clients_samples} samples "
            f"(bound {f.bound.total}); max sockets to Redis per process: {per_process}",
        ]
        for reason, bodies in p.error_bodies.items():
            if bodies:
                lines.append(f"    e.g. {reason}: {bodies[0][:200]!r}")
    gates = f.gates()
    lines += [
        f"Whole run {f.run_s:.1f} s (start-up {f.startup_s:.1f} s); 'Too many connections' in all logs: "
        f"{f.too_many_in_logs_total}; other signs: {f.related_in_logs_total or 'none'}; "
        f"sampler errors {f.sampler_errors}",
        f"Gate 100% success in every phase:            {verdict(gates['success'])}",
        f"Gate 0 'Too many connections':               {verdict(gates['too_many_connections'])} "
        f"({f.too_many_total})",
        f"Gate connected_clients <= {f.bound.total:<4} (pools' sum): {verdict(gates['connected_clients'])} "
        f"(max {f.connected_clients_max})",
    ]
    return "\n".join(lines)


def figures_json(f: LoadFigures) -> dict[str, object]:
    return {
        "workers": f.workers,
        "redis_max_connections": f.redis_max_connections,
        "redis_pool_timeout": f.redis_pool_timeout,
        "connection_bound": f.bound.total,
        "connection_bound_with_transient": f.bound.total_with_transient,
        "bound_terms": f.bound.terms,
        "unexpected_pool_sites": f.bound.unexpected_sites,
        "idle_connected_clients": f.idle_connected_clients,
        "connected_clients_max": f.connected_clients_max,
        "sampler_errors": f.sampler_errors,
        "too_many_connections": f.too_many_total,
        "too_many_in_logs_total": f.too_many_in_logs_total,
        "related_in_logs_total": f.related_in_logs_total,
        "startup_s": f.startup_s,
        "run_s": f.run_s,
        "phases": [p.summary() for p in f.phases],
        "gates": f.gates(),
        "passed": all(f.gates().values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--phases", type=parse_phases, default=None, help=f"default {DEFAULT_PHASES}")
    parser.add_argument("--workers", type=int, default=None, help="default 2 (1 with --smoke)")
    parser.add_argument(
        "--redis-max-connections",
        type=int,
        default=Settings.model_fields["redis_max_connections"].default,
        help="REDIS_MAX_CONNECTIONS given to every process (default: the Settings default)",
    )
    parser.add_argument(
        "--redis-pool-timeout",
        type=float,
        default=Settings.model_fields["redis_pool_timeout"].default,
        help="REDIS_POOL_TIMEOUT given to every process (default: the Settings default)",
    )
    parser.add_argument("--smoke", action="store_true", help=f"phases {SMOKE_PHASES}, 1 worker")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--logs", type=Path, default=None, help="copy every process's log here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a gate fails")
    args = parser.parse_args(argv)
    phases = args.phases or parse_phases(SMOKE_PHASES if args.smoke else DEFAULT_PHASES)
    workers = args.workers or (1 if args.smoke else 2)
    with tempfile.TemporaryDirectory(prefix="bench-loadtest-") as tmp:
        figures = run(
            phases, workers, args.redis_max_connections, args.redis_pool_timeout, Path(tmp), args.logs
        )
    if args.json is not None:  # first: the figures survive a bug in the report below
        args.json.write_text(json.dumps(figures_json(figures), indent=2))
    print(report(figures), flush=True)
    if args.strict and not all(figures.gates().values()):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
