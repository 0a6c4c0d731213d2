"""`workers.py --check` finds this deployment's live workers only: another checkout's files on the
same machine are not ours, and a dead worker's file is not revived by a reused pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from src.worker.state_files import deployment_scope, live_state_files, process_start, write_state_file


def test_each_deployment_sees_its_own_workers(tmp_path: Path) -> None:
    """Two deployments (Redis databases) sharing one state directory never see each other's files."""
    ours, theirs = deployment_scope("127.0.0.1:6379/0"), deployment_scope("127.0.0.1:6379/1")
    assert ours != theirs and deployment_scope("***@127.0.0.1:6379/0") == ours  # a password is no deployment
    write_state_file(str(tmp_path), ours, "w-ours")
    assert [f.worker_id for f in live_state_files(str(tmp_path), ours)] == ["w-ours"]
    assert live_state_files(str(tmp_path), theirs) == []


def test_a_dead_workers_file_is_removed_and_a_reused_pid_is_not_taken_for_it(tmp_path: Path) -> None:
    """A file whose process is gone is removed; one whose pid now belongs to another process (its
    start time differs) is removed too; the live process's own file stays."""
    scope = deployment_scope("127.0.0.1:6379/0")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    directory = tmp_path / scope
    directory.mkdir()
    (directory / f"{dead_pid}.worker").write_text(json.dumps({"worker_id": "w-dead", "started": 1}))
    started = process_start(os.getpid())
    assert started is not None
    # this test's own pid, "reused": the file says another start time, so another process wrote it
    (directory / f"{os.getpid()}.worker").write_text(
        json.dumps({"worker_id": "w-old", "started": started - 1})
    )
    assert live_state_files(str(tmp_path), scope) == []
    assert list(directory.iterdir()) == []
    write_state_file(str(tmp_path), scope, "w-live")
    assert [f.worker_id for f in live_state_files(str(tmp_path), scope)] == ["w-live"]
