"""Fault-test harness: a real redis-server, the API (uvicorn) and workers (`python workers.py`) as
separate processes on one shared SQLite store, each process's output kept in a file for post-mortems.

Waits are polls with deadlines of at least three times the interval they depend on; nothing asserts
tight timings. `Cluster.stop_all()` kills everything it started (teardown calls it whatever happens).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from scripts.local_redis import RedisServer, free_port, start_redis_server
from src.config import Environment, Settings
from src.domain.appointments import Appointment
from src.domain.jobs import JobRecord, JobStatus
from src.domain.workers import WorkerRecord
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.sqlite_repository import SQLiteRepository

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TOKEN = "fault-token"
BEAT_S = 0.5
LEASE_S = 3.0

# What every process gets; a test overrides per process. Blank values switch optional services off
# whatever the caller's environment holds (no MongoDB, no OpenAI).
BASE_ENV: dict[str, str] = {
    "ENVIRONMENT": "test",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "APP_VERSION": "fault-a",
    "API_ACCESS_TOKEN": TOKEN,
    "MONGODB_URL": "",
    "OPENAI_API_KEY": "",
    "OPENAI_BASE_URL": "",
    "WORKER_HEARTBEAT_INTERVAL": str(BEAT_S),
    "JOB_LEASE_SECONDS": str(LEASE_S),
    "RECONCILE_EVERY_SECONDS": "1",
    "RENORMALIZE_EVERY_SECONDS": "0",  # off unless a test turns it on (it asks the LLM again)
    "ARQ_POLL_DELAY": "0.05",
    "ARQ_JOB_COMPLETION_WAIT": "5",
    "ARQ_MAX_JOBS": "10",
    "BATCH_CHUNK_SIZE": "500",
    "TEST_ITEM_DELAY_MS": "0",
}


class WaitTimeout(AssertionError):
    pass


async def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """`wait_for` for a plain predicate (a log line, a file's content)."""

    async def probe() -> bool:
        return predicate()

    await wait_for(probe, timeout=timeout, what=what)


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll `probe` until it returns something truthy; Redis errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: str | None = None
    while True:
        try:
            value = await probe()
        except (RedisError, OSError, httpx.TransportError) as exc:
            value, last_error = None, f"{type(exc).__name__}: {exc}"
        if value:
            return value
        if time.monotonic() > deadline:
            suffix = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}{suffix}")
        await asyncio.sleep(interval)


@dataclass
class Process:
    """One child process, its merged stdout/stderr in `log_path`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    env: dict[str, str]
    worker_id: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.popen.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def log_text(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass(frozen=True)
class Effect:
    job: str
    attempt: int
    item: str


@dataclass
class Cluster:
    """Redis, API and workers of one test, in `root`; the test talks to them like an operator would."""

    root: Path
    redis: RedisServer
    repo: SQLiteRepository
    processes: list[Process] = field(default_factory=list)
    api: Process | None = None
    http: httpx.AsyncClient | None = None
    _pools: dict[int, ArqRedis] = field(default_factory=dict)

    @classmethod
    async def start(cls, root: Path) -> Cluster:
        redis = start_redis_server(root / "redis")
        repo = SQLiteRepository(str(root / "store.sqlite3"))
        await repo.init()
        return cls(root=root, redis=redis, repo=repo)

    # paths and environment

    @property
    def sqlite_path(self) -> Path:
        return self.root / "store.sqlite3"

    @property
    def effects_path(self) -> Path:
        return self.root / "effects.jsonl"

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/{db}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {**os.environ, **BASE_ENV}
        env.update(
            REDIS_URL=self.redis_url(),
            SQLITE_PATH=str(self.sqlite_path),
            TEST_EFFECTS_PATH=str(self.effects_path),
            WORKER_STATE_DIR=str(self.root / "state-default"),
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env

    # processes

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        log_path = self.root / f"{name}.log"
        log_file = log_path.open("ab")
        popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        process = Process(name=name, popen=popen, log_path=log_path, log_file=log_file, env=env)
        self.processes.append(process)
        return process

    async def start_api(self, **env: str) -> Process:
        """uvicorn on a free port; returns once `/readyz` answers 200 (store initialized, deployment
        published)."""
        port = free_port()
        argv = [PYTHON, "-m", "uvicorn", "--factory", "src.api.main:app_from_env", "--host", "127.0.0.1",
                "--port", str(port), "--no-access-log"]  # fmt: skip
        self.api = self.spawn("api", argv, self.env(**env))
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        http = self.http

        async def ready() -> bool:
            self.assert_alive(self.api)
            return (await http.get("/readyz")).status_code == 200

        await wait_for(ready, timeout=60, what="the API's /readyz")
        return self.api

    async def start_worker(
        self,
        name: str,
        *,
        queue: str = "normalization",
        state: str | None = "ok",
        db: int = 0,
        env: Mapping[str, str] | None = None,
        **overrides: str,
    ) -> Process:
        """`python workers.py --queue QUEUE`; waits for its banner (worker id) and, when `state` is
        given, for its registry record in Redis db `db` to show that state."""
        values = {"WORKER_STATE_DIR": str(self.root / f"state-{name}"), **(env or {}), **overrides}
        # workers.py with the tests' hooks (TEST_ITEM_DELAY_MS, TEST_EFFECTS_PATH): tests/worker_hooks.py
        command = [PYTHON, "-m", "tests.worker_hooks", "--queue", queue]
        process = self.spawn(name, command, self.env(**values))

        async def banner() -> str | None:
            self.assert_alive(process)
            for line in process.log_text().splitlines():
                if line.startswith("Worker id: "):
                    return line.removeprefix("Worker id: ").strip()
            return None

        process.worker_id = await wait_for(banner, timeout=60, what=f"the banner of {name}")
        if state is not None:
            await self.wait_worker_state(process, state, db=db)
        return process

    async def wait_worker_state(
        self, process: Process, state: str, *, db: int = 0, timeout: float = 60
    ) -> None:
        assert process.worker_id is not None

        async def reached() -> bool:
            self.assert_alive(process)
            record = await self.registry(db).get_worker(process.worker_id or "")
            return record is not None and record.state.value == state

        await wait_for(reached, timeout=timeout, what=f"{process.name} to be {state!r} in the registry")

    def assert_alive(self, process: Process | None) -> None:
        assert process is not None
        if not process.alive:
            raise AssertionError(f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}")

    def run_check(self, process: Process) -> subprocess.CompletedProcess[str]:
        """`python workers.py --check` in the (simulated) container of `process`."""
        return subprocess.run(
            [PYTHON, "workers.py", "--check"],
            cwd=ROOT,
            env=process.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def run_cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`python -m src.cli ARGS` as an operator runs it next to the cluster (e.g. `doctor`)."""
        return subprocess.run(
            [PYTHON, "-m", "src.cli", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start_ghost(self, name: str, *, queue: str, serializer: str = "pickle") -> Process:
        """A plain arq worker (tests/fault/ghost_arq_worker.py) on `queue`, its runs logged to
        `<name>.jsonl`; returns once it polls."""
        record = self.root / f"{name}.jsonl"
        record.touch()
        env = self.env(GHOST_RECORD_PATH=str(record), GHOST_QUEUE=queue, GHOST_SERIALIZER=serializer)
        return self.spawn(name, [PYTHON, "-m", "tests.fault.ghost_arq_worker"], env)

    def restart_redis(self) -> None:
        """Stop redis-server and start an empty one on the same port and directory (no persistence)."""
        self.redis.stop()
        self.start_redis_again()

    def start_redis_again(self) -> None:
        """Start an empty redis-server on the stopped one's port and directory."""
        self.redis = start_redis_server(self.redis.workdir, self.redis.port)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.alive:
                process.popen.send_signal(signal.SIGKILL)  # also ends a SIGSTOPped process
        for process in self.processes:
            try:
                process.popen.wait(30)
            finally:
                process.log_file.close()
        self.redis.stop()

    async def close(self) -> None:
        try:
            self.stop_all()
        finally:
            if self.http is not None:
                await self.http.aclose()
            for pool in self._pools.values():
                await pool.aclose(close_connection_pool=True)
            await self.repo.close()

    def tails(self, lines: int = 30) -> str:
        parts = []
        for process in self.processes:
            status = "running" if process.alive else f"exit {process.popen.returncode}"
            parts.append(f"----- {process.name} ({process.worker_id or '-'}, {status}) -----")
            parts.append(process.tail(lines))
        return "\n".join(parts)

    # Redis registry

    def registry(self, db: int = 0) -> DeploymentRegistry:
        if db not in self._pools:
            settings = Settings(_env_file=None, environment=Environment.TEST, redis_url=self.redis_url(db))
            self._pools[db] = create_redis_pool(settings, max_connections=4)
        return DeploymentRegistry(self._pools[db])

    async def worker_record(self, process: Process, db: int = 0) -> WorkerRecord | None:
        return await self.registry(db).get_worker(process.worker_id or "")

    # API

    @property
    def client(self) -> httpx.AsyncClient:
        assert self.http is not None, "start the API first"
        return self.http

    async def create_appointments(self, count: int, prefix: str = "Paciente") -> dict[str, str]:
        """POST `count` appointments; return appointment id → job id."""
        jobs: dict[str, str] = {}
        for i in range(count):
            body = {
                "paciente": f"{prefix} {i}",
                "documento": "529.982.247-25",
                "endereco": f"R. das Flores {i + 1} ap 4, Centro, Sao Paulo - SP, 01310100",
                "data_hora": "2026-12-01T14:30:00-03:00",
            }
            response = await self.client.post("/api/v1/appointments", json=body)
            assert response.status_code == 201, response.text
            data = response.json()
            jobs[data["appointment_id"]] = data["job_id"]
        return jobs

    async def import_csv(self, rows: int) -> dict[str, Any]:
        """POST an import of `rows` generated rows as CSV; return the import report."""
        lines = ["paciente,documento,endereco,data_hora"]
        lines += [
            f'Paciente {i},529.982.247-25,"Av. Paulista {i % 2000 + 1}, Bela Vista, Sao Paulo - SP, '
            f'01310100",01/12/2026 10:00'
            for i in range(rows)
        ]
        content = ("\n".join(lines) + "\n").encode()
        response = await self.client.post(
            "/api/v1/appointments/import", files={"file": ("fault.csv", content, "text/csv")}, timeout=180
        )
        assert response.status_code == 202, response.text
        report: dict[str, Any] = response.json()
        assert report["accepted"] == rows, report
        return report

    # ledger and effects

    async def jobs(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        records = {}
        for job_id in job_ids:
            record = await self.repo.get_job(job_id)
            assert record is not None, f"no ledger record for {job_id}"
            records[job_id] = record
        return records

    async def all_jobs(self) -> list[JobRecord]:
        return await self.repo.list_jobs(limit=1_000_000)

    async def running_on(self, process: Process, task: str | None = None) -> dict[str, int]:
        """job id → attempt of the ledger records running on `process`."""
        running = await self.repo.list_jobs(status=JobStatus.RUNNING, limit=1_000_000)
        return {
            r.job_id: r.attempt
            for r in running
            if r.worker_id == process.worker_id and (task is None or r.task == task)
        }

    async def wait_all_succeeded(self, job_ids: Iterable[str], *, timeout: float) -> dict[str, JobRecord]:
        ids = list(job_ids)

        async def done() -> dict[str, JobRecord] | None:
            records = await self.jobs(ids)
            if all(r.status is JobStatus.SUCCEEDED for r in records.values()):
                return records
            return None

        try:
            return await wait_for(done, timeout=timeout, what=f"{len(ids)} jobs to succeed", interval=0.2)
        except WaitTimeout as exc:
            counts = Counter(r.status.value for r in (await self.jobs(ids)).values())
            raise WaitTimeout(f"{exc}; ledger statuses: {dict(counts)}") from None

    async def wait_all_succeeded_logical(self, job_ids: Iterable[str], *, timeout: float) -> list[JobRecord]:
        """Wait until the logical job of each id has succeeded, whichever generation ran it last
        (a job re-enqueued as its next generation goes on there); return those records."""
        keys = [job_id.rpartition(":")[0] for job_id in job_ids]

        async def done() -> list[JobRecord] | None:
            latest = [await self.repo.latest_job(key) for key in keys]
            if all(r is not None and r.status is JobStatus.SUCCEEDED for r in latest):
                return [r for r in latest if r is not None]
            return None

        try:
            return await wait_for(done, timeout=timeout, what=f"{len(keys)} jobs to succeed", interval=0.2)
        except WaitTimeout as exc:
            latest = [await self.repo.latest_job(key) for key in keys]
            counts = Counter(r.status.value if r else "missing" for r in latest)
            raise WaitTimeout(f"{exc}; latest generations: {dict(counts)}") from None

    def effects(self) -> list[Effect]:
        if not self.effects_path.exists():
            return []
        return [
            Effect(job=d["job"], attempt=int(d["attempt"]), item=d["item"])
            for d in map(json.loads, self.effects_path.read_text().splitlines())
        ]

    def sqlite_write_lock_free(self) -> bool:
        """True when no process holds the store's write lock (a SIGSTOPped writer would hold it)."""
        conn = sqlite3.connect(self.sqlite_path, timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()


def duplicated(effects: Iterable[Effect]) -> dict[str, int]:
    """item → number of accepted writes, for the items written more than once."""
    counts = Counter(e.item for e in effects)
    return {item: n for item, n in counts.items() if n > 1}


def unrecorded_writes(appointments: Iterable[Appointment], effects: Iterable[Effect]) -> dict[int, list[int]]:
    """attempt → seqs of appointments whose stored provenance (job, attempt) has no effects line."""
    recorded = {(e.item, e.job, e.attempt) for e in effects}
    missing: dict[int, list[int]] = {}
    for a in appointments:
        if a.provenance is not None and (a.id, a.provenance.job_id, a.provenance.attempt) not in recorded:
            missing.setdefault(a.provenance.attempt, []).append(a.seq)
    return missing


def log_events(process: Process, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `process` whose event is `event`."""
    found = []
    for line in process.log_text().splitlines():
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if data.get("event") == event:
                found.append(data)
    return found
