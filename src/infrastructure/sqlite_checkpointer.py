"""Checkpoints the SQLite WAL in the background, off the commit path.

SQLite's automatic checkpoint runs inside whichever commit pushes the WAL past its threshold, and
with `synchronous = NORMAL` a checkpoint syncs the files: one job in every ~60 waited ~15 ms for it
(bench.compare's latency p99). Here a thread of its own runs a PASSIVE checkpoint (it never blocks
readers or writers) every `every_s` seconds; the automatic one stays as a safety net at a higher
threshold for processes that do not run this.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import structlog

log = structlog.get_logger(__name__)

CHECKPOINT_EVERY_S = 1.0


class WalCheckpointer:
    def __init__(self, path: str, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._path = path
        self._every_s = every_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._task: asyncio.Task[None] | None = None
        self.frames_checkpointed = 0  # WAL frames copied into the database by this checkpointer

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sqlite-checkpoint")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        await asyncio.to_thread(self._executor.shutdown)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await loop.run_in_executor(self._executor, self._checkpoint)
            except sqlite3.Error as exc:  # the file is busy or gone: the next tick (or a commit) retries
                log.debug("background checkpoint skipped", error=str(exc))
                await loop.run_in_executor(self._executor, self._close)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            self._conn.execute("PRAGMA cache_size = -256")  # it only copies pages: keep its cache small
        row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if row is not None and row[2] > 0:
            self.frames_checkpointed += int(row[2])

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
