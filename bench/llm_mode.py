"""LLM-mode throughput: 2 worker processes against the shipped OpenAI-compatible fake (issue 7, gate 6).

`python -m bench.llm_mode [--appointments N] [--mode jobs|import|both] [--smoke] [--json PATH]
[--latency-ms 200] [--cap 32] [--slots S] [--chunk-size C] [--workers 2] [--call raw|parse]`

`--call parse` runs the workers with the SDK's `chat.completions.parse` in place of our raw request
(`bench/llm_parse_call.py`): the comparison behind the choice of the raw request.

Every mode starts, from scratch: a private redis-server on a free port, one fake OpenAI server per
worker process (`tests/fakes/openai_server.py`, `--latency-ms`, its own free port, so each server's
`/_stats` max_in_flight is exactly one worker's LLM concurrency), the API (uvicorn; it initializes
the store and publishes the deployment) and the workers (`python workers.py --queue normalization`)
with `OPENAI_BASE_URL` pointing at their own server, `LLM_CONCURRENCY_HARD_CAP=cap`,
`ARQ_MAX_JOBS=slots` (default: cap + 8, the product's default next to the default cap; see
`default_slots` and docs/configuration.md, "Slots and the LLM cap") and the rules fallback in
place (it always is in LLM mode).

- `jobs`: N single-appointment normalization jobs, the shape `POST /api/v1/appointments` produces
  (`AppointmentService.create`: store the appointment, then `TaskService.enqueue` a
  `normalize_appointment` envelope keyed `normalize:{id}`). Here the N appointments are stored in
  one call and the N envelopes enqueued with `TaskService.enqueue_many` once the workers are
  registered, so the producer (N HTTP requests) is not what is measured.
- `import`: a spreadsheet of N valid rows POSTed to `/api/v1/appointments/import` (chunk jobs of
  `BATCH_CHUNK_SIZE` rows, each normalizing pages of rows concurrently).

Measured: appointments/s in steady state, from the first to the last appointment normalized (the
`provenance.finished_at` the workers write), and in total (from the enqueue / the POST to the last
one); the address source of every stored appointment (`llm` vs the `rules` fallback); each fake
server's `/_stats` (requests, statuses, max_in_flight) and its in_flight sampled every 100 ms; each
worker's own LLM counters (from the registry); CPU seconds of every process over the run.

Ideal: `workers × cap / latency` (2 × 32 / 0.2 s = 320 appointments/s). Printed: ratio = steady
appointments/s ÷ ideal, PASS when ≥ 0.9, and PASS when every server's max_in_flight ≤ cap.

The rows come from `scripts.generate_sample` (seed 42), keeping only rows that are valid and whose
address the fake server's heuristic can split into an answer our validation accepts (about 3 in 4):
so "every appointment has the LLM as its source" is a meaningful check. The fake cannot split the
others (no commas: "R. DAS FLORES 1037 BARRA SALVADOR BA"); they would fall back to the rules after
the same LLM call, costing the same time.

Every process started here is stopped (SIGTERM, then kill) whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import api_command, cpu_seconds
from bench.import50k import stop_all, wait_ready, wait_workers
from scripts.generate_sample import generate_rows, write_xlsx
from scripts.local_redis import free_port, start_redis_server
from src.application.services.appointment_service import normalize_key
from src.application.services.spreadsheet_parser import ParsedRow, parse_spreadsheet
from src.application.services.task_service import TaskService
from src.domain.addresses import AddressSource
from src.domain.appointments import Appointment, NormalizationStatus, new_appointment_id
from src.domain.jobs import JobEnvelope
from src.infrastructure.llm_address_normalizer import answer_to_address
from src.infrastructure.llm_request import LLMAddressAnswer
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository
from tests.fakes.openai_server import FakeOpenAIServer, fake_normalize, run_fake_openai_server

ROOT = Path(__file__).resolve().parent.parent
GATE_RATIO = 0.9
POLL_S = 0.25
SAMPLE_S = 0.1
RUN_TIMEOUT_S = 900.0
RECORD_WAIT_S = 12.0  # > 2 heartbeats (WORKER_HEARTBEAT_INTERVAL 5 s)


@dataclass
class ServerFigures:
    url: str
    requests_total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0
    mean_in_flight: float = 0.0  # sampled while appointments were being normalized
    client_disconnects: int = 0


@dataclass
class RunFigures:
    mode: str
    appointments: int
    workers: int
    cap: int
    slots: int
    latency_ms: int
    chunk_size: int
    ideal_per_s: float
    call: str = "raw"
    normalized: int = 0
    failed: int = 0
    pending: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    produce_s: float = 0.0  # enqueue_many, or the import POST
    total_s: float = 0.0  # from the enqueue / the POST to the last appointment normalized
    steady_s: float = 0.0  # from the first to the last appointment normalized
    servers: list[ServerFigures] = field(default_factory=list)
    worker_llm: list[dict[str, Any]] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # process name -> CPU seconds over the run
    wait_s: dict[str, float] = field(default_factory=dict)  # process name -> run-queue wait over the run
    machine_busy: float = 0.0  # share of all cores busy over the run (whatever ran on the machine)
    jobs_per_worker: list[int] = field(default_factory=list)

    @property
    def steady_per_s(self) -> float:
        done = self.normalized + self.failed
        return (done - 1) / self.steady_s if done > 1 and self.steady_s > 0 else math.nan

    @property
    def total_per_s(self) -> float:
        done = self.normalized + self.failed
        return done / self.total_s if self.total_s > 0 else math.nan

    @property
    def ratio(self) -> float:
        return self.steady_per_s / self.ideal_per_s

    @property
    def max_in_flight(self) -> int:
        return max((s.max_in_flight for s in self.servers), default=0)

    @property
    def rate_ok(self) -> bool:
        return self.ratio >= GATE_RATIO

    @property
    def cap_ok(self) -> bool:
        return bool(self.servers) and all(s.max_in_flight <= self.cap for s in self.servers)

    @property
    def all_llm(self) -> bool:
        return self.sources.get(AddressSource.LLM.value, 0) == self.appointments and self.normalized == (
            self.appointments
        )


# --- input rows ------------------------------------------------------------------------------------


def fake_accepts(raw: str) -> bool:
    """Whether the fake server's answer for `raw` passes our validation (no rules fallback)."""
    fields = fake_normalize(raw).model_dump()
    try:
        answer_to_address(LLMAddressAnswer(**{k: fields[k] for k in LLMAddressAnswer.model_fields}), raw)
    except Exception:  # noqa: BLE001 - the rejection class is private to the normalizer
        return False
    return True


def usable_rows(count: int, workdir: Path) -> tuple[list[dict[str, object]], list[ParsedRow]]:
    """`count` generated rows (seed 42) that import cleanly and that the fake normalizes: the raw
    rows (for a spreadsheet) and the same rows as parsed (for appointments)."""
    generated = generate_rows(int(count * 1.5) + 100, seed=42)
    sheet_path = workdir / "candidates.xlsx"
    write_xlsx(generated, sheet_path)
    parsed = parse_spreadsheet(sheet_path.read_bytes(), sheet_path.name, max_rows=len(generated) + 1)
    raw: list[dict[str, object]] = []
    kept: list[ParsedRow] = []
    for row in parsed.rows:
        if fake_accepts(row.endereco):
            raw.append(generated[row.row - 2])  # row 2 is the first data row
            kept.append(row)
            if len(kept) == count:
                return raw, kept
    raise RuntimeError(f"only {len(kept)} usable rows out of {len(generated)} generated")


# --- process accounting ----------------------------------------------------------------------------


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a core (schedstat field 2):
    large next to its CPU time means it was starved by other processes on the machine."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


# --- the run ---------------------------------------------------------------------------------------


async def sample_in_flight(
    servers: list[FakeOpenAIServer], samples: list[list[int]], stop: asyncio.Event
) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            for index, server in enumerate(servers):
                with contextlib.suppress(httpx.HTTPError):
                    samples[index].append(int((await client.get(f"{server.url}/_stats")).json()["in_flight"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_S)


async def read_worker_records(
    client: httpx.AsyncClient, figures: RunFigures, servers: list[FakeOpenAIServer], pids: dict[str, int]
) -> None:
    """The workers' own view (registry records, refreshed every heartbeat): LLM counters and jobs
    done, in worker order. Waits for the beat that covers every request the fakes answered."""
    answered = sum(s.stats()["requests_total"] for s in servers)
    order = [pids[f"worker-{i}"] for i in range(len(servers))]
    deadline = time.monotonic() + RECORD_WAIT_S
    while True:
        records = {
            v["worker"]["pid"]: v["worker"] for v in (await client.get("/api/v1/workers")).json()["items"]
        }
        answers = sum(
            int((r.get("llm") or {}).get("llm_used", 0))
            + sum((r.get("llm") or {}).get("fallbacks", {}).values())
            for r in records.values()
        )
        if answers >= answered or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    figures.worker_llm, figures.jobs_per_worker = [], []
    for pid in order:
        record = records.get(pid, {})
        llm = record.get("llm") or {}
        figures.worker_llm.append(
            {k: llm.get(k) for k in ("calls", "llm_used", "fallbacks", "max_in_flight")}
        )
        figures.jobs_per_worker.append(int(record.get("counters", {}).get("complete", 0)))


async def produce_jobs(settings_env: dict[str, str], rows: list[ParsedRow]) -> list[str]:
    """Store the appointments and enqueue one `normalize_appointment` job each, as
    `AppointmentService.create` / `enqueue_normalization` do, in bulk."""
    from src.config import Settings

    settings = Settings(_env_file=None, **{k.lower(): v for k, v in settings_env.items()})  # type: ignore[arg-type]
    repository = build_repository(settings)
    await repository.init()
    pool = create_redis_pool(settings)
    try:
        now = datetime.now(UTC)
        appointments = [
            Appointment(
                id=new_appointment_id(),
                paciente=r.paciente,
                documento=r.documento,
                endereco=r.endereco,
                data_hora=r.data_hora,
                telefone=r.telefone,
                email=r.email,
                created_at=now,
            )
            for r in rows
        ]
        await repository.insert_appointments(appointments)
        envelopes = [
            JobEnvelope(
                task="normalize_appointment",
                logical_key=normalize_key(a.id),
                generation=1,
                ids={"appointment_id": a.id},
                request_id=None,
                producer_version=settings.app_version,
            )
            for a in appointments
        ]
        tasks = TaskService(RedisJobQueue(pool), repository=repository, producer_version=settings.app_version)
        results = await tasks.enqueue_many(envelopes)
        if any(r.status != "queued" for r in results):
            raise RuntimeError("some jobs were not queued")
        return [a.id for a in appointments]
    finally:
        await pool.aclose(close_connection_pool=True)
        await repository.close()


async def drive(
    mode: str,
    figures: RunFigures,
    base_url: str,
    token: str,
    settings_env: dict[str, str],
    rows: list[dict[str, object]],
    parsed: list[ParsedRow],
    workdir: Path,
    servers: list[FakeOpenAIServer],
    pids: dict[str, int],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    from src.config import Settings

    settings = Settings(_env_file=None, **{k.lower(): v for k, v in settings_env.items()})  # type: ignore[arg-type]
    repository = build_repository(settings)
    await repository.init()
    headers = {"Authorization": f"Bearer {token}"}
    stop = asyncio.Event()
    samples: list[list[int]] = [[] for _ in servers]
    sampler = asyncio.create_task(sample_in_flight(servers, samples, stop))
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wait_before = {name: runqueue_wait_seconds(pid) for name, pid in pids.items()}
    busy_before, all_before = machine_ticks()
    appointments: list[Appointment] = []
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as client:
            started_wall = time.time()
            started = time.perf_counter()
            if mode == "jobs":
                ids = await produce_jobs(settings_env, parsed)
                batch_id = None
            else:
                sheet = workdir / f"import-{len(rows)}.xlsx"
                write_xlsx(rows, sheet)
                started_wall, started = time.time(), time.perf_counter()  # the file is not the product's
                response = await client.post(
                    "/api/v1/appointments/import", files={"file": (sheet.name, sheet.read_bytes())}
                )
                response.raise_for_status()
                report = response.json()
                if int(report["accepted"]) != figures.appointments:
                    raise RuntimeError(f"import accepted {report['accepted']} of {figures.appointments}")
                batch_id = report["batch_id"]
            figures.produce_s = time.perf_counter() - started
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while True:
                if batch_id is None:
                    finished = sum(c.count for c in await repository.count_jobs() if c.status.terminal)
                    pending = figures.appointments - finished
                else:
                    pending = (await repository.count_batch(batch_id)).pending
                if pending == 0:
                    break
                for p in processes:
                    if p.poll() is not None:
                        raise RuntimeError(f"a process exited during the run with {p.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{pending} appointments still pending after {RUN_TIMEOUT_S:.0f} s")
                await asyncio.sleep(POLL_S)
            stop.set()
            busy_after, all_after = machine_ticks()
            figures.cpu_s = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            figures.wait_s = {
                name: runqueue_wait_seconds(pid) - wait_before[name] for name, pid in pids.items()
            }
            figures.machine_busy = (busy_after - busy_before) / max(1, all_after - all_before)
            await read_worker_records(client, figures, servers, pids)
        if batch_id is None:
            appointments = [a for a in [await repository.get_appointment(i) for i in ids] if a is not None]
        else:
            appointments = await repository.list_batch_appointments(
                batch_id, seq_from=0, seq_to=figures.appointments, limit=figures.appointments
            )
    finally:
        stop.set()
        await asyncio.gather(sampler, return_exceptions=True)
        await repository.close()

    status = Counter(a.normalization_status for a in appointments)
    figures.normalized = status[NormalizationStatus.NORMALIZED]
    figures.failed = status[NormalizationStatus.FAILED]
    figures.pending = figures.appointments - figures.normalized - figures.failed
    figures.sources = dict(
        Counter(
            a.endereco_normalizado.source.value if a.endereco_normalizado else "none" for a in appointments
        )
    )
    finished_at = sorted(a.provenance.finished_at.timestamp() for a in appointments if a.provenance)
    if finished_at:
        figures.steady_s = finished_at[-1] - finished_at[0]
        figures.total_s = finished_at[-1] - started_wall
    for server, server_samples in zip(servers, samples, strict=True):
        stats = server.stats()
        # in_flight while the pipeline is busy: drop the idle samples before the first and after
        # the last request
        busy = server_samples
        while busy and busy[0] == 0:
            busy = busy[1:]
        while busy and busy[-1] == 0:
            busy = busy[:-1]
        figures.servers.append(
            ServerFigures(
                url=server.url,
                requests_total=int(stats["requests_total"]),
                by_status=dict(stats["by_status"]),
                max_in_flight=int(stats["max_in_flight"]),
                mean_in_flight=sum(busy) / len(busy) if busy else 0.0,
                client_disconnects=int(stats["client_disconnects"]),
            )
        )


def run(
    mode: str,
    count: int,
    *,
    workers: int,
    cap: int,
    slots: int,
    latency_ms: int,
    chunk_size: int,
    workdir: Path,
    call: str = "raw",
) -> RunFigures:
    rows, parsed = usable_rows(count, workdir)
    figures = RunFigures(
        mode=mode,
        appointments=count,
        workers=workers,
        cap=cap,
        slots=slots,
        latency_ms=latency_ms,
        chunk_size=chunk_size,
        ideal_per_s=workers * cap / (latency_ms / 1000),
        call=call,
    )
    token = secrets.token_urlsafe(24)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        redis = start_redis_server(workdir / "redis")
        stack.callback(redis.stop)
        # one fake per worker: its max_in_flight is that worker's LLM concurrency
        servers = [
            stack.enter_context(run_fake_openai_server("--latency-ms", str(latency_ms)))
            for _ in range(workers)
        ]
        settings_env = {
            "ENVIRONMENT": "test",
            "REDIS_URL": redis.url,
            "SQLITE_PATH": str(workdir / "store.sqlite3"),
            "API_ACCESS_TOKEN": token,
            "APP_VERSION": "bench",
        }
        env = {
            **os.environ,
            **settings_env,
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_PER_MINUTE": "0",
            "MAX_IMPORT_ROWS": str(count + 1000),
            "BATCH_CHUNK_SIZE": str(chunk_size),
        }
        env.pop("OPENAI_API_KEY", None)
        env.pop("OPENAI_BASE_URL", None)
        try:
            processes.append(
                subprocess.Popen(
                    api_command(port),
                    cwd=ROOT,
                    env=env,
                )
            )

            async def ready() -> None:
                async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
                    await wait_ready(client, processes)

            asyncio.run(ready())  # the API initializes the store and publishes the deployment first
            pids = {"api": processes[0].pid, "redis": redis.process.pid}
            for index, server in enumerate(servers):
                pids[f"fake-openai-{index}"] = server.process.pid
                worker_env = {
                    **env,
                    "WORKER_STATE_DIR": str(workdir / f"worker-state-{index}"),
                    "OPENAI_BASE_URL": server.base_url,
                    "OPENAI_API_KEY": "bench-fake-key",  # the fake ignores it
                    "LLM_CONCURRENCY_HARD_CAP": str(cap),
                    "ARQ_MAX_JOBS": str(slots),
                    "ADDRESS_NORMALIZATION_ENABLED": "true",
                }
                entry = ["workers.py"] if call == "raw" else ["-m", "bench.llm_parse_call"]
                worker = subprocess.Popen(
                    [sys.executable, *entry, "--queue", "normalization"],
                    cwd=ROOT,
                    env=worker_env,
                    stdout=subprocess.DEVNULL,
                )
                processes.append(worker)
                pids[f"worker-{index}"] = worker.pid
            asyncio.run(wait_workers(base_url, token, workers, processes))
            asyncio.run(
                drive(
                    mode,
                    figures,
                    base_url,
                    token,
                    settings_env,
                    rows,
                    parsed,
                    workdir,
                    servers,
                    pids,
                    processes,
                )
            )
        finally:
            stop_all(processes)  # workers and API first; the fakes and redis-server via the stack
    return figures


# --- output ----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(f: RunFigures) -> str:
    servers = "\n".join(
        f"    fake {i}: {s.requests_total} requests {s.by_status}, max_in_flight {s.max_in_flight}, "
        f"mean in_flight while busy {s.mean_in_flight:.1f}, disconnects {s.client_disconnects}"
        for i, s in enumerate(f.servers)
    )
    cpu = ", ".join(
        f"{name} {seconds / f.total_s * 100:.0f}% (+{f.wait_s.get(name, 0) / f.total_s * 100:.0f}% runnable)"
        for name, seconds in sorted(f.cpu_s.items())
    )
    done = max(1, f.normalized + f.failed)
    worker_cpu_ms = sum(v for k, v in f.cpu_s.items() if k.startswith("worker")) / done * 1000
    llm = "; ".join(
        f"worker {i}: calls {w['calls']}, llm_used {w['llm_used']}, fallbacks {w['fallbacks']}, "
        f"max_in_flight {w['max_in_flight']}"
        for i, w in enumerate(f.worker_llm)
    )
    return "\n".join(
        [
            f"LLM mode, {f.mode} ({f.call} call): {f.appointments} appointments, {f.workers} workers, "
            f"cap {f.cap}, "
            f"ARQ_MAX_JOBS {f.slots}, latency {f.latency_ms} ms"
            + (f", chunk {f.chunk_size}" if f.mode == "import" else ""),
            f"  normalized {f.normalized}, failed {f.failed}, pending {f.pending}; sources {f.sources}  "
            f"(every one by the LLM: {verdict(f.all_llm)})",
            f"  produce ({'enqueue_many' if f.mode == 'jobs' else 'POST /import'}): {f.produce_s:.2f} s; "
            f"jobs done per worker {f.jobs_per_worker}",
            f"  steady (first → last normalized): {f.steady_s:7.2f} s  {f.steady_per_s:7.1f} appointments/s",
            f"  total (produce → last normalized): {f.total_s:6.2f} s  {f.total_per_s:7.1f} appointments/s",
            f"  ideal {f.workers} × {f.cap} / {f.latency_ms / 1000:g} s = {f.ideal_per_s:.0f}/s; "
            f"ratio {f.ratio:.3f}  (gate >= {GATE_RATIO}: {verdict(f.rate_ok)})",
            servers,
            f"  max_in_flight per server <= cap {f.cap}: {verdict(f.cap_ok)}",
            f"  workers' own LLM counters: {llm}",
            f"  CPU over the run (% of one core; + waiting for a core): {cpu}; "
            f"machine busy {f.machine_busy * 100:.0f}% of all cores; "
            f"worker CPU per appointment {worker_cpu_ms:.1f} ms",
        ]
    )


def as_json(f: RunFigures) -> dict[str, Any]:
    data = asdict(f)
    data.update(
        steady_per_s=f.steady_per_s,
        total_per_s=f.total_per_s,
        ratio=f.ratio,
        max_in_flight=f.max_in_flight,
        rate_ok=f.rate_ok,
        cap_ok=f.cap_ok,
        all_llm=f.all_llm,
    )
    return data


def default_slots(mode: str, cap: int) -> int:
    """ARQ_MAX_JOBS that lets each worker reach `cap` LLM calls in flight, and no more than needed."""
    # A single-appointment job holds its slot for its one LLM call plus its bookkeeping (claim,
    # read, write, finish): by Little's law, `cap` calls in flight need a few more slots than `cap`.
    # Chunk jobs (100-row chunks, the product default) run with the same default: the product's.
    return cap + 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--appointments", type=int, default=None, help="default 8000 (smoke: 200)")
    parser.add_argument("--mode", choices=("jobs", "import", "both"), default="both")
    parser.add_argument("--smoke", action="store_true", help="200 appointments, 50 ms latency")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--latency-ms", type=int, default=None, help="default 200 (smoke: 50)")
    parser.add_argument("--cap", type=int, default=32, help="LLM_CONCURRENCY_HARD_CAP")
    parser.add_argument("--slots", type=int, default=None, help="ARQ_MAX_JOBS (default: cap + 8)")
    parser.add_argument("--chunk-size", type=int, default=50, help="BATCH_CHUNK_SIZE (import mode)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--call", choices=("raw", "parse"), default="raw", help="how the workers ask the LLM")
    args = parser.parse_args(argv)
    count = args.appointments or (200 if args.smoke else 8000)
    latency_ms = args.latency_ms or (50 if args.smoke else 200)
    chunk_size = min(args.chunk_size, 50) if args.smoke else args.chunk_size
    modes = ["jobs", "import"] if args.mode == "both" else [args.mode]
    results: list[RunFigures] = []
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix=f"bench-llm-{mode}-") as tmp:
            figures = run(
                mode,
                count,
                workers=args.workers,
                cap=args.cap,
                slots=args.slots or default_slots(mode, args.cap),
                latency_ms=latency_ms,
                chunk_size=chunk_size,
                workdir=Path(tmp),
                call=args.call,
            )
        print(report(figures), flush=True)
        results.append(figures)
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": [as_json(f) for f in results]}, default=str))
    # throughput is reported, not enforced; a wrong result (lost work, fallback, cap exceeded) fails
    return 0 if all(f.all_llm and f.cap_ok for f in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
