"""The API as it is deployed: `python -m uvicorn --factory src.api.main:app_from_env` in a process of
its own, on a free loopback port, its stdout and stderr in one log file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts.local_redis import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ApiProcess:
    url: str
    log_path: Path
    popen: subprocess.Popen[bytes]

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()


@contextmanager
def run_api(redis_url: str, workdir: Path, **env: str) -> Iterator[ApiProcess]:
    """Start the API with its SQLite store in `workdir`; yield once `/readyz` answers 200; stop it
    (SIGTERM, then its graceful shutdown) on exit."""
    port = free_port()
    values = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis_url,
        "SQLITE_PATH": str(workdir / "api-store.sqlite3"),
        "APP_VERSION": "test-1",
        "WORKER_STATE_DIR": str(workdir / "worker-state"),
        **env,
    }
    log_path = workdir / f"api-{port}.log"
    argv = [sys.executable, "-m", "uvicorn", "--factory", "src.api.main:app_from_env",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with log_path.open("ab") as log_file:
        popen = subprocess.Popen(argv, cwd=ROOT, env=values, stdout=log_file, stderr=subprocess.STDOUT)
    api = ApiProcess(url=f"http://127.0.0.1:{port}", log_path=log_path, popen=popen)
    try:
        deadline = time.monotonic() + 60
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"the API exited ({popen.returncode}):\n" + "\n".join(api.log_lines()))
            if time.monotonic() > deadline:
                raise RuntimeError("the API's /readyz did not answer 200 in 60 s")
            try:
                if httpx.get(f"{api.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield api
    finally:
        popen.terminate()
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
