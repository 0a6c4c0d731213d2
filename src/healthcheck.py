"""The image's health check, right for whatever the container runs: `python -m src.healthcheck`.

One image runs the API, workers, or both (single-container mode), under our compose files or
outside them (plain Docker, a Coolify Dockerfile application, Railway), where nothing overrides the
image's `HEALTHCHECK`. So the check finds out what runs here, first match wins:
1. `HEALTHCHECK_ROLE` (`api`, `worker` or `both`), when set;
2. the container's command (PID 1's command line; under `init: true` the command after the init):
   `workers.py` is a worker, `start_web_and_workers.sh` is both, `uvicorn` is the API;
3. otherwise: a worker when this deployment's worker state files show live workers, else the API.
A worker is checked as `python workers.py --check` checks it (a fresh heartbeat, not fenced or
mismatched); the API on `GET /healthz` at `PORT` (default 8000).
Exit 0 when healthy; else 1 with one line saying why.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path

from src.config import Settings, settings_or_exit
from src.worker.liveness import check  # the same check as `python workers.py --check`
from src.worker.state_files import deployment_scope, live_state_files

# Within the Dockerfile's `--timeout=5s` even for `both`, so the reason line is printed, not cut off.
REDIS_TIMEOUT_S = 2.5
API_TIMEOUT_S = 1.0  # per address (127.0.0.1, then ::1); the API is on loopback


def role_from_command(argv: list[str]) -> str | None:
    """The role a container command runs, or None when the command says nothing we know. A shell
    form (`sh -c "exec uvicorn … --port $PORT"`) is read word by word."""
    words = [word for part in argv for word in _words(part)]
    names = [Path(word).name for word in words]
    if "start_web_and_workers.sh" in names:
        return "both"
    if "workers.py" in names:
        return "worker"
    if "uvicorn" in names or any(word.startswith("src.api.main") for word in words):
        return "api"
    return None


def _words(part: str) -> list[str]:
    try:
        return shlex.split(part)
    except ValueError:  # unbalanced quotes: take it as it is
        return part.split()


def container_command(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    """PID 1's command line: the container's command (empty when unreadable)."""
    try:
        return [part for part in proc.read_bytes().decode(errors="replace").split("\0") if part]
    except OSError:
        return []


def choose_role(settings: Settings, command: list[str]) -> str:
    if settings.healthcheck_role != "auto":
        return settings.healthcheck_role
    from_command = role_from_command(command)
    if from_command is not None:
        return from_command
    scope = deployment_scope(settings.redis_display)
    return "worker" if live_state_files(settings.worker_state_dir, scope) else "api"


def api_problem(port: int) -> str | None:
    """None when the API answers /healthz on loopback; `--host ::` listens on IPv6 only (asyncio
    sets IPV6_V6ONLY), so ::1 is tried when 127.0.0.1 refuses."""
    failure = "no answer"
    for host in ("127.0.0.1", "[::1]"):
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=API_TIMEOUT_S) as response:  # noqa: S310 - loopback
                return None if response.status == 200 else f"API /healthz answered {response.status}"
        except urllib.error.HTTPError as exc:
            return f"API /healthz answered {exc.code}"
        except OSError as exc:
            failure = type(exc).__name__
    return f"API on port {port} does not answer /healthz ({failure})"


def main() -> int:
    try:
        settings = settings_or_exit()
    except SystemExit:  # its line is printed; Docker reserves exit status 2
        return 1
    role = choose_role(settings, container_command())
    problems = []
    if role in ("worker", "both"):
        status, message = asyncio.run(check(settings, redis_timeout_s=REDIS_TIMEOUT_S))
        if status != 0:
            problems.append(message.removeprefix("unhealthy: "))
    if role in ("api", "both"):
        problem = api_problem(settings.port)
        if problem is not None:
            problems.append(problem)
    if problems:
        print(f"unhealthy ({role}): " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"healthy ({role})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
