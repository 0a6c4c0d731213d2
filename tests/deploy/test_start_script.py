"""scripts/start_web_and_workers.sh run for real: API + 2 workers + 1 maintenance worker on a local
redis-server and a SQLite file; signals are forwarded, and one dead child takes the others down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.local_redis import free_port, start_redis_server
from tests.deploy.tools import ROOT, SINGLE_CONTAINER_HEALTHCHECK, apt_tool, healthcheck_command

SCRIPT = ROOT / "scripts" / "start_web_and_workers.sh"
pytestmark = pytest.mark.integration


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> dict[int, str]:
        """pid -> command line of the script's direct children."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                found[int(entry.name)] = cmdline
        return found

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {**self.env, **(env or {})}
        return subprocess.run(args, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(probe: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for {what}; log tail:\n{stack.log()[-3000:]}"
            )
        time.sleep(0.2)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The script started with a test environment; waits until the API is ready and the workers are
    healthy (`python workers.py --check`). Teardown kills whatever is left."""
    apt_tool("redis-server", "redis-server")
    redis = start_redis_server(tmp_path / "redis")
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ENVIRONMENT": "test",
        "REDIS_URL": redis.url,
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "MONGODB_URL": "",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "API_ACCESS_TOKEN": "deploy-test-token",
        "APP_VERSION": "deploy-test",
        "PORT": str(port),
        "N_WORKERS": "2",
        "WORKER_STATE_DIR": str(tmp_path / "worker-state"),
        "WORKER_HEARTBEAT_INTERVAL": "0.5",
        "JOB_LEASE_SECONDS": "3",
        "ARQ_JOB_COMPLETION_WAIT": "5",
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "stack.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(SCRIPT)],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = Stack(process, env, log_path)
    try:
        wait_until(lambda: ready(port), 90, "GET /readyz = 200", stack)
        wait_until(
            lambda: stack.run(sys.executable, "workers.py", "--check").returncode == 0, 90, "--check", stack
        )
        yield stack
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for pid in stack.children():
            os.kill(pid, signal.SIGKILL)
        redis.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_are_forwarded_and_everything_stops_cleanly(stack: Stack, sig: signal.Signals) -> None:
    """API, 2 normalization workers and the maintenance worker run and are healthy; SIGTERM (or
    SIGINT) to the script reaches every child, each stops gracefully, and the script exits 0."""
    children = stack.children()
    commands = sorted(children.values())
    assert len(commands) == 4, commands
    assert sum("workers.py --queue normalization" in c for c in commands) == 2
    assert sum("workers.py --queue maintenance" in c for c in commands) == 1
    assert sum("uvicorn --factory src.api.main:app_from_env" in c for c in commands) == 1
    # the image's HEALTHCHECK, option A's health check and the operators' view, against the stack
    assert stack.run(*healthcheck_command()).returncode == 0
    both = stack.run("sh", "-c", SINGLE_CONTAINER_HEALTHCHECK)
    assert (both.returncode, both.stdout.strip()) == (0, "healthy (both)"), both.stderr
    # the worker role needs no API (a worker container has none); the API role needs the API
    no_api = {"PORT": str(free_port())}
    assert stack.run(*healthcheck_command(), env={**no_api, "HEALTHCHECK_ROLE": "worker"}).returncode == 0
    api_gone = stack.run(*healthcheck_command(), env={**no_api, "HEALTHCHECK_ROLE": "api"})
    assert api_gone.returncode == 1 and "does not answer /healthz" in api_gone.stderr
    listing = stack.run(sys.executable, "-m", "src.cli", "workers")
    assert listing.returncode == 0 and listing.stdout.count(" deploy-test ") == 3, listing.stdout
    assert "Starting ARQ Background Worker" in stack.log() and "Code version: deploy-test" in stack.log()

    stack.process.send_signal(sig)
    assert stack.process.wait(60) == 0, stack.log()[-3000:]
    assert not [pid for pid in children if running(pid)]
    log = stack.log()
    assert f"received {sig.name}: forwarding it to 4 processes" in log
    assert log.count('"event": "worker stopped"') == 3
    assert "Finished server process" in log
    assert "SIGKILL" not in log


def test_a_dead_worker_takes_the_others_down_and_the_script_fails(stack: Stack) -> None:
    """SIGKILL to one normalization worker: the script stops the others and exits non-zero."""
    children = stack.children()
    victim = next(pid for pid, command in children.items() if "--queue normalization" in command)
    os.kill(victim, signal.SIGKILL)
    code = stack.process.wait(60)
    assert code != 0
    assert not [pid for pid in children if running(pid)]
    log = stack.log()
    assert f"(pid {victim}) exited with code 137: stopping the others" in log
    assert log.count('"event": "worker stopped"') == 2


def test_refuses_a_malformed_worker_count(tmp_path: Path) -> None:
    """N_WORKERS that is not a whole number stops the script at once with exit code 2."""
    env = {**os.environ, "N_WORKERS": "two"}
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "N_WORKERS must be a whole number" in result.stderr
