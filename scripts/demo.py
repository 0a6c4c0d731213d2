"""`make demo`: the main job end to end on embedded defaults, then everything it started is stopped.

Starts a local redis-server on a free port, one worker (`python workers.py`) and the API (uvicorn),
imports the bundled sample spreadsheet, shows progress until the batch is done, prints a summary and
a few before/after rows.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

from scripts.local_redis import free_port, start_redis_server
from src.config import isolated_environ

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_appointments.xlsx"


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        return f"git-{sha}"
    except (OSError, subprocess.CalledProcessError):
        return "dev"


class ProcessLogs:
    """One log file per process the demo starts, in its working directory."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._files: dict[str, IO[bytes]] = {}

    def open(self, name: str) -> IO[bytes]:
        handle = (self._directory / f"{name}.log").open("wb")
        self._files[name] = handle
        return handle

    def tails(self, lines: int = 15) -> str:
        parts = []
        for name in self._files:
            text = (self._directory / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {name}.log ---\n" + "\n".join(text))
        return "\n".join(parts)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


def wait_ready(
    client: httpx.Client, processes: list[subprocess.Popen[bytes]], logs: ProcessLogs, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            if p.poll() is not None:
                raise SystemExit(f"a demo process exited early with status {p.returncode}:\n{logs.tails()}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the API did not become ready within 60 s")


def progress_bar(done: int, total: int, width: int = 40) -> str:
    filled = int(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def show_rows(client: httpx.Client, batch_id: str, count: int) -> None:
    print("\nBefore → after (a few rows):")
    for seq in range(count):
        appt: dict[str, Any] = client.get(f"/api/v1/appointments/{batch_id}-{seq:06d}").json()
        doc = appt.get("documento_normalizado") or {}
        addr = appt.get("endereco_normalizado") or {}
        doc_after = doc.get("formatted") or f"invalid ({doc.get('reason')})"
        print(f"  documento: {appt['documento']!r:28} → {doc_after}")
        print(f"  endereco:  {appt['endereco']!r}")
        source, confidence = addr.get("source"), addr.get("confidence")
        print(f"          → {addr.get('formatted')!r} [{source}, confidence {confidence}]")


def run(sample: Path, workers: int) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="clinic-demo-"))
    redis = start_redis_server(workdir / "redis")
    token = secrets.token_urlsafe(24)
    api_port = free_port()
    env = {
        **isolated_environ(),  # a developer's .env or MONGODB_URL / OPENAI_API_KEY never reach the demo
        "ENVIRONMENT": "development",
        "REDIS_URL": redis.url,
        "SQLITE_PATH": str(workdir / "demo.sqlite3"),
        "API_ACCESS_TOKEN": token,
        "APP_VERSION": code_version(),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "console",
        "ARQ_POLL_DELAY": "0.1",
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs = ProcessLogs(workdir)
    failed = False
    try:
        # Their output goes to log files: the progress bar and the summary stay readable.
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "src.api.main:app_from_env",
             "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=logs.open("api"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        processes.append(api)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        wait_ready(client, processes, logs)  # the API initializes the store before workers start
        for n in range(workers):
            log_file = logs.open(f"worker-{n}")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "workers.py"],
                    cwd=ROOT,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            )
        print(f"API and {workers} worker(s) started (their logs: {workdir}/*.log)")
        print(f"Importing {sample.name} …")
        started = time.perf_counter()
        with sample.open("rb") as fh:
            response = client.post("/api/v1/appointments/import", files={"file": (sample.name, fh)})
        response.raise_for_status()
        report = response.json()
        batch_id = report["batch_id"]
        print(f"accepted {report['accepted']} rows, rejected {report['rejected']} (row-level errors)")
        for err in report["errors"][:3]:
            print(f"  row {err['row']}: {err['message']}")
        if len(report["errors"]) > 3:
            print(f"  … and {len(report['errors']) - 3} more (GET /api/v1/batches/{batch_id} and the report)")
        while True:
            batch = client.get(f"/api/v1/batches/{batch_id}").json()
            print(f"\r{progress_bar(batch['done'] + batch['failed'], batch['total'])}", end="", flush=True)
            if batch["finished"]:
                break
            for p in processes:
                if p.poll() is not None:
                    failed = True
                    raise SystemExit(f"\na demo process exited with status {p.returncode}:\n{logs.tails()}")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        print()
        summarize(client, report, batch, elapsed)
        show_rows(client, batch_id, 4)
        return 0
    except BaseException:
        failed = True
        raise
    finally:
        for p in reversed(processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        redis.stop()
        logs.close()
        # The demo's data (a thousand patient-like rows) is not left behind; logs are kept only
        # when something failed, to be read.
        if failed:
            for data in workdir.glob("demo.sqlite3*"):
                data.unlink()
            print(f"\nDemo stopped; its logs are in {workdir} (its data was removed).")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print("\nDemo stopped: API, worker and redis-server are down, and its data removed.")


def summarize(client: httpx.Client, report: dict[str, Any], batch: dict[str, Any], elapsed: float) -> None:
    sources: dict[str, int] = {}
    invalid_documents = 0
    for job_id in report["job_ids"]:
        result = client.get(f"/api/v1/queue/job/{job_id}").json().get("result") or {}
        for source, n in (result.get("address_sources") or {}).items():
            sources[source] = sources.get(source, 0) + n
        invalid_documents += int(result.get("invalid_documents") or 0)
    print("\nSummary")
    print(f"  rows in file:            {report['accepted'] + report['rejected'] + report['blank']}")
    print(f"  blank rows (skipped):    {report['blank']}")
    print(f"  rejected at import:      {report['rejected']}")
    print(f"  normalized:              {batch['done']}")
    print(f"  failed:                  {batch['failed']}")
    print(f"  invalid documents:       {invalid_documents} (stored with a reason)")
    print(f"  address source:          {', '.join(f'{k}={v}' for k, v in sorted(sources.items())) or '-'}")
    print(f"  elapsed:                 {elapsed:.2f} s")
    print(f"  throughput:              {batch['done'] / elapsed:.0f} appointments/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    return run(args.sample, args.workers)


if __name__ == "__main__":
    sys.exit(main())
