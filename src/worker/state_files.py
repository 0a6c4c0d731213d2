"""The files `python workers.py --check` finds this container's workers by.

Each worker process writes one file, `WORKER_STATE_DIR/<deployment>/<pid>.worker`, and removes it
when it stops. `<deployment>` is a digest of the Redis server and database the worker consumes from,
so other checkouts or deployments on the same machine (sharing `/tmp/clinic-workers`) are never
taken for this one's. The file holds the process's start time as the kernel counts it: a pid reused
by another process after a `kill -9` is told apart, and its stale file removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StateFile:
    worker_id: str
    pid: int
    path: Path


def deployment_scope(redis_display: str) -> str:
    """A short digest of `host:port/db` (no password): which queues a worker belongs to."""
    return hashlib.sha256(redis_display.removeprefix("***@").encode()).hexdigest()[:12]


def process_start(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (Linux `/proc`); None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None


def write_state_file(state_dir: str, scope: str, worker_id: str) -> Path:
    directory = Path(state_dir) / scope
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{os.getpid()}.worker"
    path.write_text(json.dumps({"worker_id": worker_id, "started": process_start(os.getpid())}))
    return path


def live_state_files(state_dir: str, scope: str) -> list[StateFile]:
    """This deployment's workers that still run in this container; stale files (a process gone, or
    a pid now another process's) are removed as they are found."""
    found = []
    for path in sorted((Path(state_dir) / scope).glob("*.worker")):
        try:
            pid = int(path.stem)
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid) or entry.get("started") not in (None, process_start(pid)):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        found.append(StateFile(worker_id=str(entry["worker_id"]), pid=pid, path=path))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
