"""The embedded store's connections: one thread that runs every statement that may wait, and an
inline connection on the event loop's thread for the statements that cannot (see the repository's
docstring); errors that mean "the file or its locks" become `StoreUnavailable`."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import TypeVar

from src.errors import StoreUnavailable

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
AUTOCHECKPOINT_PAGES = 10000  # about 40 MB of WAL (SQLite's default: 1000)
INLINE_MAX_ROWS = 16  # point reads and writes of at most this many rows run on the event loop's thread


class SQLiteConnections:
    """The store's two connections to the file at `path` and how calls run on them."""

    def __init__(self, path: str) -> None:
        self._path = os.path.abspath(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._inline_conn: sqlite3.Connection | None = None  # touched only on the event loop's thread

    def identity(self) -> str:
        return f"sqlite:{self._path}"

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run `fn` on the store's thread; with `inline` (a point read or a write of a few rows),
        first right here on the event loop's thread, without waiting for the lock: a thread hop
        costs more than such a statement, and it is most of a single job's latency. When another
        connection holds the write lock, `fn` goes to the store's thread, which waits its turn."""
        if inline:
            try:
                return self._call(fn, inline=True)
            except _Busy:
                pass
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _connect_inline(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 0")  # never wait on the loop's thread: fall back instead
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # never checkpoint on the loop's thread
            conn.execute("PRAGMA cache_size = -512")  # point reads and writes: a small cache is enough
        except BaseException:
            conn.close()
            raise
        self._inline_conn = conn
        return conn

    def _close_inline(self) -> None:
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None

    def _call(self, fn: Callable[[sqlite3.Connection], T], inline: bool = False) -> T:
        """Run `fn` on the store's connection (or, `inline`, the event loop's one) and map the
        errors that mean "the file or its locks" to `StoreUnavailable`; an inline call that meets
        another connection's lock raises `_Busy` instead, to be retried on the store's thread."""
        try:
            if inline:
                return fn(self._inline_conn or self._connect_inline())
            return fn(self._conn or self._connect())
        except sqlite3.Error as exc:
            code = _primary_code(exc)
            if code not in _UNAVAILABLE_CODES:
                raise
            locked = code in _LOCK_CODES
            if inline and locked:
                raise _Busy from exc
            if not locked:  # reopen on the next call: the file may be back by then
                self._close_inline() if inline else self._close_connection()
            raise StoreUnavailable(
                f"SQLite store unavailable: {exc}", store=self.identity(), locked=locked
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            conn.execute("PRAGMA synchronous = NORMAL")
            # The background checkpointer keeps the WAL short; this is the net if none runs.
            conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run_in_transaction(self, fn: Callable[[sqlite3.Connection], T], writes: int) -> T:
        """Run a batch of the batcher's writes (see `_as_transaction`) on the store's thread: the
        batcher tried `_run_now` first."""
        return await self._run(_as_transaction(fn, writes))

    def _run_now(self, fn: Callable[[sqlite3.Connection], T], writes: int) -> T | None:
        """The batcher's synchronous first try: a short batch, inline; None when it must go to the
        store's thread (too many rows, or another connection holds the write lock)."""
        if writes > INLINE_MAX_ROWS:
            return None
        try:
            return self._call(_as_transaction(fn, writes), inline=True)
        except _Busy:
            return None


def _as_transaction(fn: Callable[[sqlite3.Connection], T], writes: int) -> Callable[[sqlite3.Connection], T]:
    """The batcher's writes, each one statement: several in one transaction, a lone one as it is
    (SQLite makes a statement atomic by itself; BEGIN IMMEDIATE and COMMIT would cost more than the
    statement, on every idle worker's job)."""
    if writes == 1:
        return fn

    def in_transaction(conn: sqlite3.Connection) -> T:
        with write_transaction(conn):
            return fn(conn)

    return in_transaction


class _Busy(Exception):
    """The inline connection met a lock held by another connection: run on the store's thread."""


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock up front, so the busy timeout applies to it
    (a deferred transaction that upgrades from read to write can fail at once with SQLITE_BUSY)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with suppress(sqlite3.Error):  # keep the original error
                conn.execute("ROLLBACK")
        raise


def write_many(conn: sqlite3.Connection, sql: str, rows: list[tuple[object, ...]]) -> int:
    """Run `sql` for every row in one transaction; return how many rows it changed."""
    if not rows:
        return 0
    if len(rows) == 1:  # one statement is atomic by itself (a lone enqueue: no BEGIN/COMMIT pair)
        return conn.execute(sql, rows[0]).rowcount
    with write_transaction(conn):
        return conn.executemany(sql, rows).rowcount


# Primary result codes that mean "the file or its locks", not "our SQL or data" (bugs).
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOMEM,
    }
)


_LOCK_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _primary_code(exc: sqlite3.Error) -> int | None:
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF
