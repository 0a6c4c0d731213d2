"""bench/profile_hot_path.py's summary: the main thread's busy samples, whatever the event loop."""

from __future__ import annotations

from pathlib import Path

from bench.profile_hot_path import summarize

MAIN = "<module> (workers.py:163);main (workers.py:158);Worker.run (arq/worker.py:313)"
RAW = "\n".join(
    [
        f"{MAIN};JobRunner._run (job_runner.py:100);claim_ (src/infrastructure/sqlite_repository.py:248) 6",
        f"{MAIN};AppWorker.run_job (src/worker/arq_worker.py:349) 2",
        f"{MAIN};select (selectors.py:451) 50",  # idle
        # a thread (the store's or an executor's)
        "_bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);_run (x.py:1) 40",
    ]
)


def test_summary_counts_the_main_threads_busy_samples_only(tmp_path: Path) -> None:
    """uvloop leaves no `run_until_complete` frame: the main thread is told by the absence of a
    thread's bootstrap frame; idle waits and other threads are left out."""
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW)
    text = summarize(raw)
    assert text.startswith("main thread: 8 busy samples")
    assert "75.0%  claim_ (src/infrastructure/sqlite_repository.py:248)" in text
    assert "25.0%  AppWorker.run_job (src/worker/arq_worker.py:349)" in text
    assert "concurrent/futures" not in text and "selectors.py" not in text
