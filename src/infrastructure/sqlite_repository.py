"""The embedded store: `Repository` on one SQLite file, shared by the API and the workers of a host.

Each repository owns one connection and one thread that runs every statement on it (a tiny
dedicated executor): calls from one process are serialized without an asyncio lock bound to a loop,
and the default thread pool is never starved. Across processes, WAL lets readers run beside the
single writer, writes are short `BEGIN IMMEDIATE` transactions (models are encoded before the lock
is taken), and `busy_timeout` makes a writer wait for the lock instead of failing with `database is
locked`.

What runs on the event loop's thread instead (`inline`): point reads, and writes of at most
`INLINE_MAX_ROWS` rows, on a second connection that can never wait: `busy_timeout = 0` (a locked
file raises at once, and the call goes to the store's thread, which may wait), `synchronous =
NORMAL` in WAL (a commit does not sync the disk) and no automatic checkpoint (the store's thread
checkpoints). A thread hop costs more than such a statement: moving them all to the thread cost 25 %
of no-op throughput.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

from src.domain.addresses import NormalizedAddress
from src.domain.appointments import Appointment, Batch, BatchCounts, KindResult, NormalizationResult
from src.errors import StoreUnavailable
from src.infrastructure import store_codec as codec
from src.infrastructure.sqlite_checkpointer import WalCheckpointer
from src.infrastructure.sqlite_connection import (
    INLINE_MAX_ROWS,
)
from src.infrastructure.sqlite_connection import (
    write_many as _write_many,
)
from src.infrastructure.sqlite_connection import (
    write_transaction as _write,
)
from src.infrastructure.sqlite_ledger import SQLiteLedger

T = TypeVar("T")

INIT_LOCK_RETRY_S = 4.0  # within the 5 s workers.py gives the store at start-up
# the partial index's condition, written the same way in the query so that SQLite uses the index
_RULES_FALLBACK = "json_extract(normalization, '$.endereco_normalizado.source') = 'rules_fallback'"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL,
        initialized_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS appointments (
        id TEXT PRIMARY KEY, batch_id TEXT, seq INTEGER NOT NULL, normalization_status TEXT NOT NULL,
        prov_job_id TEXT, prov_attempt INTEGER, body TEXT NOT NULL, normalization TEXT)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS appointments_batch_seq
        ON appointments (batch_id, seq) WHERE batch_id IS NOT NULL""",
    """CREATE INDEX IF NOT EXISTS appointments_batch_status
        ON appointments (batch_id, normalization_status) WHERE batch_id IS NOT NULL""",
    f"""CREATE INDEX IF NOT EXISTS appointments_rules_fallback ON appointments (id)
        WHERE {_RULES_FALLBACK}""",
    "CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS jobs (
        job_id TEXT PRIMARY KEY, logical_key TEXT NOT NULL, generation INTEGER NOT NULL,
        task TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL,
        app_failures INTEGER NOT NULL, interruptions INTEGER NOT NULL, worker_id TEXT, version TEXT,
        enqueued_at TEXT NOT NULL, started_at TEXT, heartbeat_at TEXT, finished_at TEXT,
        duration_ms INTEGER, progress TEXT NOT NULL, error_category TEXT, error_message TEXT,
        result TEXT, envelope TEXT NOT NULL, lease_losses INTEGER NOT NULL DEFAULT 0, superseded_by TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_key_generation ON jobs (logical_key, generation)",
    "CREATE INDEX IF NOT EXISTS jobs_status_enqueued ON jobs (status, enqueued_at)",
    "CREATE INDEX IF NOT EXISTS jobs_enqueued ON jobs (enqueued_at)",
    "CREATE INDEX IF NOT EXISTS jobs_status_finished ON jobs (status, finished_at)",
    """CREATE TABLE IF NOT EXISTS workers (
        worker_id TEXT PRIMARY KEY, version TEXT NOT NULL, hostname TEXT NOT NULL, queue TEXT NOT NULL,
        started_at TEXT NOT NULL, seen_at TEXT NOT NULL)""",
)
# Columns added since schema version 1, added in place to a file made by an older version.
_ADDED_JOB_COLUMNS = {
    "lease_losses": "INTEGER NOT NULL DEFAULT 0",
    "superseded_by": "TEXT",
}

_INSERT_APPOINTMENT = (
    f"INSERT OR IGNORE INTO appointments ({codec.APPOINTMENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
)
# A newer attempt of the same job wins; a run of another job may always overwrite. And never from a run
# the ledger no longer holds as current, checked in the same statement: a run fenced off (its lease
# lost, its generation superseded, its job cancelled) between its last check and this write writes
# nothing.
_SAVE_NORMALIZATION = """UPDATE appointments
    SET normalization_status = ?, normalization = ?, prov_job_id = ?, prov_attempt = ?
    WHERE id = ? AND NOT (prov_job_id IS ? AND prov_attempt > ?)
      AND NOT EXISTS (SELECT 1 FROM jobs WHERE job_id = ? AND NOT (attempt = ? AND status = 'running'))"""


class SQLiteRepository(SQLiteLedger):
    """`Repository` on the SQLite file at `path` (created by `init()` when missing)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._store_id: str | None = None
        self._closed = False
        self.checkpointer = WalCheckpointer(self._path)

    # lifecycle

    async def init(self) -> None:
        """Create tables/indexes and the init marker; safe to call on every start, and by several
        processes at once on a new file (switching it to WAL can fail fast while another process
        holds the lock, so a locked attempt is retried for a while)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INIT_LOCK_RETRY_S
        while True:
            try:
                self._store_id = await self._run(self._init)
                self.checkpointer.start()
                return
            except StoreUnavailable as exc:
                if not exc.details.get("locked") or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05 + random.random() * 0.2)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.checkpointer.stop()
        self._close_inline()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connection)
        await asyncio.to_thread(self._executor.shutdown)

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when the file cannot be opened or queried."""
        await self._run(lambda conn: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())

    def identity(self) -> str:
        suffix = f"#{self._store_id}" if self._store_id else ""
        return f"sqlite:{self._path}{suffix}"

    def data_key(self) -> str:
        if self._store_id is None:
            raise RuntimeError("data_key() needs init() first: the store id is read there")
        return "sqlite#" + self._store_id

    # appointments and batches

    async def insert_appointments(self, appointments: Sequence[Appointment]) -> int:
        """Insert the appointments whose id (and batch_id + seq) is new; return how many."""
        return await self._run(
            lambda conn: _write_many(
                conn, _INSERT_APPOINTMENT, [codec.appointment_row(a) for a in appointments]
            )
        )

    async def get_appointment(self, appointment_id: str) -> Appointment | None:
        sql = f"SELECT {codec.APPOINTMENT_COLUMNS} FROM appointments WHERE id = ?"
        row = await self._run(lambda conn: conn.execute(sql, (appointment_id,)).fetchone(), inline=True)
        return None if row is None else codec.appointment_from_row(row)

    async def list_batch_appointments(
        self, batch_id: str, *, seq_from: int, seq_to: int, limit: int
    ) -> list[Appointment]:
        """Appointments of a batch with seq_from <= seq < seq_to, in seq order, at most `limit`."""
        sql = f"""SELECT {codec.APPOINTMENT_COLUMNS} FROM appointments
            WHERE batch_id = ? AND seq >= ? AND seq < ? ORDER BY seq LIMIT ?"""
        args = (batch_id, seq_from, seq_to, limit)
        rows = await self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [codec.appointment_from_row(row) for row in rows]

    async def save_normalizations(
        self, results: Sequence[NormalizationResult], *, job_id: str, attempt: int
    ) -> int:
        """Write results of one run of `job_id`; skip appointments a newer attempt already wrote."""
        codec.check_provenance(results, job_id, attempt)

        def save(conn: sqlite3.Connection) -> int:
            rows = [(*codec.normalization_row(r), job_id, attempt, job_id, attempt) for r in results]
            return _write_many(conn, _SAVE_NORMALIZATION, rows)

        return await self._run(save, inline=len(results) <= INLINE_MAX_ROWS)

    async def single_appointments_to_retime(self, *, after_id: str | None, limit: int) -> list[Appointment]:
        sql = f"""SELECT {codec.APPOINTMENT_COLUMNS} FROM appointments
            WHERE batch_id IS NULL AND json_extract(body, '$.retimed') IS NULL AND id > ?
            ORDER BY id LIMIT ?"""
        rows = await self._run(lambda conn: conn.execute(sql, (after_id or "", limit)).fetchall())
        return [codec.appointment_from_row(row) for row in rows]

    async def rules_fallback_appointments(
        self, *, after_id: str | None, limit: int, without_result: str | None = None
    ) -> list[Appointment]:
        sql = f"""SELECT {codec.APPOINTMENT_COLUMNS} FROM appointments
            WHERE {_RULES_FALLBACK} AND id > ? AND (? IS NULL OR json_extract(body, ?) IS NULL)
            ORDER BY id LIMIT ?"""
        path = None if without_result is None else codec.result_path(without_result)
        args = (after_id or "", path, path, limit)
        rows = await self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [codec.appointment_from_row(row) for row in rows]

    async def settle_fallback_address(
        self, appointment_id: str, kind: str, result: KindResult, address: NormalizedAddress | None
    ) -> bool:
        """See the port. One statement: the check that the address is still a fallback and the write."""
        stored = codec.with_utc(result.provenance, "started_at", "finished_at")
        result_json = result.model_copy(update={"provenance": stored}).model_dump_json()
        path = codec.result_path(kind)
        if address is None:
            sql = f"""UPDATE appointments SET body = json_set(body, ?, json(?))
                WHERE id = ? AND {_RULES_FALLBACK}"""
            args: tuple[object, ...] = (path, result_json, appointment_id)
        else:
            sql = f"""UPDATE appointments SET body = json_set(body, ?, json(?)),
                normalization = json_set(normalization, '$.endereco_normalizado', json(?))
                WHERE id = ? AND {_RULES_FALLBACK}"""
            args = (path, result_json, address.model_dump_json(), appointment_id)

        def settle(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                return conn.execute(sql, args).rowcount == 1

        return await self._run(settle)

    async def retime_appointments(self, times: Sequence[tuple[str, datetime]]) -> int:
        sql = """UPDATE appointments SET body = json_set(body, '$.data_hora', ?, '$.retimed', 1)
            WHERE id = ? AND json_extract(body, '$.retimed') IS NULL"""
        rows: list[tuple[object, ...]] = [
            (codec.json_time(at), appointment_id) for appointment_id, at in times
        ]
        return await self._run(lambda conn: _write_many(conn, sql, rows))

    async def insert_batch(self, batch: Batch) -> bool:
        """Insert the batch if its id is new; True when inserted."""
        args = (batch.id, codec.with_utc(batch, "created_at").model_dump_json())

        def insert(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                return conn.execute("INSERT OR IGNORE INTO batches VALUES (?, ?)", args).rowcount == 1

        return await self._run(insert)

    async def get_batch(self, batch_id: str) -> Batch | None:
        sql = "SELECT body FROM batches WHERE id = ?"
        row = await self._run(lambda conn: conn.execute(sql, (batch_id,)).fetchone())
        return None if row is None else Batch.model_validate_json(row[0])

    async def recent_batches(self, *, limit: int, before: tuple[datetime, str] | None = None) -> list[Batch]:
        # created_at is compared as a datetime, not as the JSON's text (whose length varies)
        created = "julianday(json_extract(body, '$.created_at'))"
        where, args = "", ()  # type: tuple[str, tuple[object, ...]]
        if before is not None:
            at = codec.iso_utc(before[0])
            where, args = f"WHERE {created} < julianday(?) OR ({created} = julianday(?) AND id < ?)", (
                at, at, before[1],
            )  # fmt: skip
        sql = f"SELECT body FROM batches {where} ORDER BY {created} DESC, id DESC LIMIT ?"
        rows = await self._run(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [Batch.model_validate_json(row[0]) for row in rows]

    async def count_batches(self) -> int:
        rows = await self._run(lambda conn: conn.execute("SELECT count(*) FROM batches").fetchall())
        return int(rows[0][0])

    async def count_batch(self, batch_id: str) -> BatchCounts:
        sql = """SELECT normalization_status, count(*) FROM appointments
            WHERE batch_id = ? GROUP BY normalization_status"""
        rows = await self._run(lambda conn: conn.execute(sql, (batch_id,)).fetchall())
        return codec.batch_counts(rows)

    def _init(self, conn: sqlite3.Connection) -> str:
        with _write(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
            present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            for column, definition in _ADDED_JOB_COLUMNS.items():
                if column not in present:  # a file made by an older version: migrate in place
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {definition}")
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES (1, ?, ?, ?)",
                (uuid.uuid4().hex, codec.iso_utc(datetime.now(UTC)), codec.SCHEMA_VERSION),
            )
            conn.execute(
                "UPDATE meta SET schema_version = ? WHERE id = 1 AND schema_version < ?",
                (codec.SCHEMA_VERSION, codec.SCHEMA_VERSION),
            )
            row = conn.execute("SELECT store_id, schema_version FROM meta WHERE id = 1").fetchone()
        codec.check_schema_version(int(row[1]), self.identity())
        return str(row[0])
