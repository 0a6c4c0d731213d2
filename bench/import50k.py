"""A 50,000-row import end to end: real API, real workers, real redis-server, SQLite store.

`python -m bench.import50k [--rows 50000] [--workers 2] [--smoke]`

Generates a spreadsheet with `scripts.generate_sample` (`.xlsx`), starts a redis-server on a free
port, the API (uvicorn, `src.api.main:app_from_env`) and, once `/readyz` answers, N `python
workers.py` processes. Then POSTs the import and polls `GET /api/v1/batches/{id}` until it is
finished, while a side task polls `GET /healthz` every 50 ms (latencies recorded) and every worker's
RSS is read from `/proc/PID/status` (VmRSS) every second.

Reports end-to-end seconds (from the POST to the batch finished) and appointments/s (gate: ≤ 60 s
for 50,000 rows, a stretch goal), the max RSS of each worker (gate ≤ 100 MB) and /healthz p50/p99
during the import (gate p99 < 100 ms). Baseline measured in the same run: `parse_spreadsheet` of the
same file alone, in this process; the ratio printed is end-to-end time ÷ parse time.

Every process started here is stopped (SIGTERM, then kill) whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench.common import api_command
from scripts.generate_sample import generate_rows, write_xlsx
from scripts.local_redis import free_port, start_redis_server
from src.application.services.spreadsheet_parser import parse_spreadsheet

ROOT = Path(__file__).resolve().parent.parent
HEALTH_INTERVAL_S = 0.05
RSS_INTERVAL_S = 1.0
GATE_APPOINTMENTS_PER_S = 50_000 / 60  # 50,000 rows in <= 60 s
GATE_RSS_MB = 100.0
GATE_HEALTH_P99_MS = 100.0


@dataclass
class ImportFigures:
    rows: int
    workers: int
    file_bytes: int
    accepted: int = 0
    rejected: int = 0
    done: int = 0
    failed: int = 0
    parse_s: float = 0.0
    post_s: float = 0.0
    end_to_end_s: float = 0.0
    worker_max_rss_mb: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_errors: int = 0

    @property
    def appointments_per_s(self) -> float:
        return (self.done + self.failed) / self.end_to_end_s

    @property
    def ratio(self) -> float:
        return self.end_to_end_s / self.parse_s

    def health_percentile(self, q: float) -> float:
        if not self.health_ms:
            return math.nan
        ordered = sorted(self.health_ms)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def rss_mb(pid: int) -> float | None:
    """VmRSS of a live process in MB (psutil is not installed)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(processes):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


async def wait_ready(client: httpx.AsyncClient, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"a process exited early with status {p.returncode}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become ready within 60 s")


async def wait_workers(
    base_url: str, token: str, count: int, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Until `count` workers are in the registry, so start-up is not timed as import."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=5) as client:
        while time.monotonic() < deadline:
            for p in processes:
                if p.poll() is not None:
                    raise RuntimeError(f"a process exited early with status {p.returncode}")
            response = await client.get("/api/v1/workers")
            if response.status_code == 200 and len(response.json()["items"]) >= count:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{count} workers did not register within 60 s")


async def poll_health(base_url: str, figures: ImportFigures, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await client.get("/healthz")
                elapsed_ms = (time.perf_counter() - started) * 1000
                if response.status_code == 200:
                    figures.health_ms.append(elapsed_ms)
                else:
                    figures.health_errors += 1
            except httpx.HTTPError:
                figures.health_errors += 1
            await asyncio.sleep(HEALTH_INTERVAL_S)


async def sample_rss(pids: list[int], peaks: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for index, pid in enumerate(pids):
            value = rss_mb(pid)
            if value is not None:
                peaks[index] = max(peaks[index], value)
        try:
            await asyncio.wait_for(stop.wait(), RSS_INTERVAL_S)
        except TimeoutError:
            pass


async def drive_import(
    base_url: str,
    token: str,
    sheet: Path,
    figures: ImportFigures,
    processes: list[subprocess.Popen[bytes]],
    worker_pids: list[int],
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    stop = asyncio.Event()
    peaks = [0.0] * len(worker_pids)
    side = [
        asyncio.create_task(poll_health(base_url, figures, stop)),
        asyncio.create_task(sample_rss(worker_pids, peaks, stop)),
    ]
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as client:
            content = sheet.read_bytes()
            started = time.perf_counter()
            response = await client.post("/api/v1/appointments/import", files={"file": (sheet.name, content)})
            response.raise_for_status()
            figures.post_s = time.perf_counter() - started
            report = response.json()
            figures.accepted, figures.rejected = int(report["accepted"]), int(report["rejected"])
            batch_id = report["batch_id"]
            while True:
                batch = (await client.get(f"/api/v1/batches/{batch_id}")).json()
                if batch["finished"]:
                    figures.end_to_end_s = time.perf_counter() - started
                    figures.done, figures.failed = int(batch["done"]), int(batch["failed"])
                    break
                for p in processes:
                    if p.poll() is not None:
                        raise RuntimeError(f"a process exited during the import with {p.returncode}")
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*side, return_exceptions=True)
        figures.worker_max_rss_mb = peaks


def run(rows: int, workers: int, workdir: Path) -> ImportFigures:
    sheet = workdir / f"appointments-{rows}.xlsx"
    write_xlsx(generate_rows(rows, seed=42), sheet)
    figures = ImportFigures(rows=rows, workers=workers, file_bytes=sheet.stat().st_size)

    content = sheet.read_bytes()
    started = time.perf_counter()
    parsed = parse_spreadsheet(content, sheet.name, max_rows=rows + 1000)
    figures.parse_s = time.perf_counter() - started
    del parsed, content

    redis = start_redis_server(workdir / "redis")
    token = secrets.token_urlsafe(24)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis.url,
        "SQLITE_PATH": str(workdir / "store.sqlite3"),
        "API_ACCESS_TOKEN": token,
        "APP_VERSION": "bench",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_MINUTE": "0",
        "MAX_IMPORT_ROWS": str(rows + 1000),
        "MAX_UPLOAD_BYTES": str(max(2 * figures.file_bytes, 20 * 1024 * 1024)),
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            subprocess.Popen(
                api_command(port),
                cwd=ROOT,
                env=env,
            )  # fmt: skip
        )

        async def ready() -> None:
            async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
                await wait_ready(client, processes)

        asyncio.run(ready())  # the API initializes the store and publishes the deployment first
        worker_pids: list[int] = []
        for index in range(workers):
            worker_env = {**env, "WORKER_STATE_DIR": str(workdir / f"worker-state-{index}")}
            worker = subprocess.Popen(
                [sys.executable, "workers.py"], cwd=ROOT, env=worker_env, stdout=subprocess.DEVNULL
            )
            processes.append(worker)
            worker_pids.append(worker.pid)
        asyncio.run(wait_workers(base_url, token, workers, processes))
        asyncio.run(drive_import(base_url, token, sheet, figures, processes, worker_pids))
    finally:
        stop_all(processes)
        redis.stop()
    return figures


def report(f: ImportFigures) -> str:
    p50, p99 = f.health_percentile(0.50), f.health_percentile(0.99)
    rss = ", ".join(f"{mb:.1f}" for mb in f.worker_max_rss_mb)

    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    return "\n".join(
        [
            f"Import of {f.rows} rows (.xlsx, {f.file_bytes / 1024:.0f} KiB), {f.workers} worker(s)",
            f"  accepted {f.accepted}, rejected {f.rejected}; normalized {f.done}, failed {f.failed}",
            f"  parse_spreadsheet alone (baseline): {f.parse_s:8.2f} s",
            f"  POST /import answered after:        {f.post_s:8.2f} s",
            f"  end to end (POST → finished):       {f.end_to_end_s:8.2f} s  "
            f"{f.appointments_per_s:8.0f} appointments/s",
            f"    (stretch gate: 50,000 rows in <= 60 s, i.e. >= {GATE_APPOINTMENTS_PER_S:.0f}/s: "
            f"{verdict(f.appointments_per_s >= GATE_APPOINTMENTS_PER_S)})",
            f"  ratio end to end / parse:           {f.ratio:8.2f}x",
            f"  max worker RSS (MB):                {rss}  (gate <= {GATE_RSS_MB:.0f} MB: "
            f"{verdict(max(f.worker_max_rss_mb, default=math.inf) <= GATE_RSS_MB)})",
            f"  /healthz during import:             p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {max(f.health_ms, default=math.nan):.1f} ms over {len(f.health_ms)} requests, "
            f"{f.health_errors} errors  (gate p99 < {GATE_HEALTH_P99_MS:.0f} ms: "
            f"{verdict(p99 < GATE_HEALTH_P99_MS)})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="500 rows, a few seconds")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    rows = 500 if args.smoke else args.rows
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        figures = run(rows, args.workers, Path(tmp))
    print(report(figures), flush=True)
    if args.json is not None:
        data = asdict(figures)
        data.pop("health_ms")
        data.update(
            ratio=figures.ratio,
            appointments_per_s=figures.appointments_per_s,
            health_p50_ms=figures.health_percentile(0.50),
            health_p99_ms=figures.health_percentile(0.99),
            health_samples=len(figures.health_ms),
        )
        args.json.write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
