"""The image's health check (`python -m src.healthcheck`) checks what the container runs: the API, its
workers, or both; chosen by HEALTHCHECK_ROLE, else by the container's command, else by the state
files. A worker-only container is healthy without an API, an API-only one without workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from src.config import Environment, Settings
from src.healthcheck import api_problem, choose_role, container_command, role_from_command
from src.worker.state_files import deployment_scope, write_state_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("command", "role"),
    [
        (["python", "workers.py"], "worker"),
        (["python", "/app/workers.py", "--queue", "maintenance"], "worker"),
        (["/sbin/docker-init", "--", "python", "workers.py"], "worker"),  # compose's `init: true`
        (["python", "-m", "uvicorn", "--factory", "src.api.main:app_from_env", "--port", "8000"], "api"),
        (["/sbin/docker-init", "--", "scripts/start_web_and_workers.sh"], "both"),
        (["/bin/sh", "/app/scripts/start_web_and_workers.sh"], "both"),
        (["/process_api", "--addr", "0.0.0.0:2024"], None),
        (["sh", "-c", 'exec python -m uvicorn --factory src.api.main:app_from_env --port "$PORT"'], "api"),
        (["/bin/sh", "-c", "python workers.py --queue maintenance"], "worker"),
        ([], None),
    ],
)
def test_the_container_command_tells_the_role(command: list[str], role: str | None) -> None:
    assert role_from_command(command) == role


def test_container_command_reads_pid_ones_command_line(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/sbin/docker-init\0--\0python\0workers.py\0")
    assert container_command(cmdline) == ["/sbin/docker-init", "--", "python", "workers.py"]
    assert container_command(tmp_path / "missing") == []


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment=Environment.TEST,
        redis_url="redis://127.0.0.1:1/0",
        worker_state_dir=str(tmp_path / "state"),
        **values,  # type: ignore[arg-type]
    )


def test_the_variable_wins_then_the_command_then_the_state_files(tmp_path: Path) -> None:
    worker_command = ["python", "workers.py"]
    assert choose_role(settings(tmp_path, healthcheck_role="api"), worker_command) == "api"
    assert choose_role(settings(tmp_path, healthcheck_role="both"), []) == "both"
    assert choose_role(settings(tmp_path), worker_command) == "worker"
    assert choose_role(settings(tmp_path), []) == "api"  # nothing known, no live worker here
    auto = settings(tmp_path)
    write_state_file(auto.worker_state_dir, deployment_scope(auto.redis_display), "w-1")  # this process
    assert choose_role(auto, []) == "worker"


class Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(host: str, status: int) -> Iterator[int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    handler = type("Handler", (Healthz,), {"status": status})
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    server = server_class((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api_port() -> Iterator[int]:
    with serve("127.0.0.1", 200) as port:
        yield port


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_api_is_probed_on_ipv4_then_ipv6(api_port: int) -> None:
    assert api_problem(api_port) is None
    with serve("::1", 200) as ipv6_only:  # what `uvicorn --host ::` listens on
        assert api_problem(ipv6_only) is None
    closed = free_port()
    assert api_problem(closed) == f"API on port {closed} does not answer /healthz (URLError)"
    with serve("127.0.0.1", 503) as failing:
        assert api_problem(failing) == "API /healthz answered 503"


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "WORKER_STATE_DIR": str(tmp_path / "state"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "src.healthcheck"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_api_only_container_is_healthy_without_workers(tmp_path: Path, api_port: int) -> None:
    result = run_check(tmp_path, PORT=str(api_port))
    assert (result.returncode, result.stdout.strip()) == (0, "healthy (api)"), result.stderr


def test_a_worker_container_with_no_worker_fails_naming_why(tmp_path: Path, api_port: int) -> None:
    """A worker role is not satisfied by an API answering; nothing running fails with one line."""
    result = run_check(tmp_path, HEALTHCHECK_ROLE="worker", PORT=str(api_port))
    assert result.returncode == 1
    assert result.stderr.strip() == "unhealthy (worker): no worker process is running in this container"
    both = run_check(tmp_path, HEALTHCHECK_ROLE="both", PORT=str(free_port()))
    assert both.returncode == 1 and "no worker process" in both.stderr and "does not answer" in both.stderr


def test_an_unknown_role_is_one_clear_line(tmp_path: Path) -> None:
    """Exit 1 with the configuration line: Docker reserves exit status 2 for health checks."""
    result = run_check(tmp_path, HEALTHCHECK_ROLE="web")
    assert result.returncode == 1
    assert "HEALTHCHECK_ROLE" in result.stderr and len(result.stderr.strip().splitlines()) == 1
