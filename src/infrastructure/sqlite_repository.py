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
import os
import random
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, TypeVar

from src.domain.addresses import NormalizedAddress
from src.domain.appointments import Appointment, Batch, BatchCounts, KindResult, NormalizationResult
from src.domain.jobs import (
    ErrorCategory,
    JobClaim,
    JobCount,
    JobEnvelope,
    JobOutcome,
    JobProgress,
    JobRecord,
    JobStatus,
    LostLease,
)
from src.domain.workers import WorkerRegistration
from src.errors import StoreUnavailable
from src.infrastructure import store_codec as codec
from src.infrastructure.sqlite_checkpointer import WalCheckpointer
from src.infrastructure.sqlite_write_batcher import WriteBatcher

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
AUTOCHECKPOINT_PAGES = 10000  # about 40 MB of WAL (SQLite's default: 1000)
INLINE_MAX_ROWS = 16  # point reads and writes of at most this many rows run on the event loop's thread
INIT_LOCK_RETRY_S = 4.0  # within the 5 s workers.py gives the store at start-up
_TERMINAL = ", ".join(f"'{status}'" for status in codec.TERMINAL_STATUSES)
_FINISHED = ", ".join(f"'{status}'" for status in codec.FINISHED_STATUSES)

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
_JOB_PLACEHOLDERS = ", ".join("?" * (codec.JOB_COLUMNS.count(",") + 1))
_INSERT_JOB = f"INSERT OR IGNORE INTO jobs ({codec.JOB_COLUMNS}) VALUES ({_JOB_PLACEHOLDERS})"
# A newer attempt of the same job wins; a run of another job may always overwrite. And never from a run
# the ledger no longer holds as current, checked in the same statement: a run fenced off (its lease
# lost, its generation superseded, its job cancelled) between its last check and this write writes
# nothing.
_SAVE_NORMALIZATION = """UPDATE appointments
    SET normalization_status = ?, normalization = ?, prov_job_id = ?, prov_attempt = ?
    WHERE id = ? AND NOT (prov_job_id IS ? AND prov_attempt > ?)
      AND NOT EXISTS (SELECT 1 FROM jobs WHERE job_id = ? AND NOT (attempt = ? AND status = 'running'))"""
_CLAIM = """UPDATE jobs SET attempt = attempt + 1, status = 'running', worker_id = ?, version = ?,
    started_at = ?, heartbeat_at = ?, finished_at = NULL, duration_ms = NULL, error_category = NULL,
    error_message = NULL, result = NULL
    WHERE job_id = ? AND status IN ('queued', 'interrupted') RETURNING attempt"""
# A lost lease: the run is fenced off (attempt + 1) and the job queued again, or quarantined at the
# limit; `worker_id` keeps naming the last holder. Two conditioned statements, each atomic.
_LOST_LEASE_REQUEUE = """UPDATE jobs SET attempt = attempt + 1, lease_losses = lease_losses + 1,
    status = 'queued', error_category = NULL, error_message = ?
    WHERE job_id = ? AND status = 'running' AND lease_losses + 1 < ? AND (? IS NULL OR attempt = ?)
    RETURNING status, attempt, lease_losses, worker_id"""
_LOST_LEASE_QUARANTINE = """UPDATE jobs SET attempt = attempt + 1, lease_losses = lease_losses + 1,
    status = 'failed', error_category = 'quarantined', error_message = ?, finished_at = ?
    WHERE job_id = ? AND status = 'running' AND (? IS NULL OR attempt = ?)
    RETURNING status, attempt, lease_losses, worker_id"""
# A succeeded generation is never superseded: its outcome stands (a later one is refused upstream).
_SUPERSEDE = f"""UPDATE jobs SET superseded_by = ?,
    finished_at = CASE WHEN status IN ({_TERMINAL}) THEN finished_at ELSE ? END,
    status = CASE WHEN status IN ({_TERMINAL}) THEN status ELSE 'superseded' END
    WHERE logical_key = ? AND generation < ? AND superseded_by IS NULL AND status != 'succeeded'"""
_FINISH = """UPDATE jobs SET status = ?, finished_at = ?, duration_ms = ?, error_category = ?,
    error_message = ?, result = ?, app_failures = app_failures + ?, interruptions = interruptions + ?
    WHERE job_id = ? AND attempt = ? AND status = 'running'"""


class SQLiteRepository:
    """`Repository` on the SQLite file at `path` (created by `init()` when missing)."""

    def __init__(self, path: str) -> None:
        self._path = os.path.abspath(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._conn: sqlite3.Connection | None = None  # touched only on the executor's thread
        self._inline_conn: sqlite3.Connection | None = None  # touched only on the event loop's thread
        self._store_id: str | None = None
        self._closed = False
        self._batcher = WriteBatcher(self._run_in_transaction, self._run_now)
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

    # job ledger

    async def create_jobs(self, records: Sequence[JobRecord]) -> int:
        """Insert the ledger records whose job id is new; return how many were inserted."""
        rows = [codec.job_row(record) for record in records]
        successors = [
            (r.job_id, codec.iso_utc(r.enqueued_at), r.logical_key, r.generation)
            for r in records
            if r.generation > 1
        ]
        return await self._run(lambda conn: _insert_jobs(conn, rows, successors))

    async def create_queued_jobs(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str,
        *,
        enqueued_at: datetime,
        progress: JobProgress,
    ) -> int:
        at = codec.to_utc(enqueued_at).isoformat(timespec="microseconds")  # as iso_utc writes it
        seed = progress.model_dump_json()
        rows = [codec.queued_job_row(e, queue, at, seed) for e in envelopes]
        successors = [(e.job_id, at, e.logical_key, e.generation) for e in envelopes if e.generation > 1]
        return await self._run(
            lambda conn: _insert_jobs(conn, rows, successors), inline=len(envelopes) <= INLINE_MAX_ROWS
        )

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._one_job("WHERE job_id = ?", (job_id,))

    async def latest_job(self, logical_key: str) -> JobRecord | None:
        """The record of the highest generation of a logical key."""
        return await self._one_job("WHERE logical_key = ? ORDER BY generation DESC LIMIT 1", (logical_key,))

    async def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 100, before: tuple[datetime, str] | None = None
    ) -> list[JobRecord]:
        """Most recently enqueued first, ties by job id; after `before` when given."""
        conditions: list[str] = []
        args: list[object] = []
        if status is not None:
            conditions.append("status = ?")
            args.append(status.value)
        if before is not None:
            at = codec.iso_utc(before[0])
            conditions.append("(enqueued_at < ? OR (enqueued_at = ? AND job_id < ?))")
            args += [at, at, before[1]]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT {codec.JOB_COLUMNS} FROM jobs {where} ORDER BY enqueued_at DESC, job_id DESC LIMIT ?"
        rows = await self._run(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        return [codec.job_from_row(row) for row in rows]

    async def claim_job(self, job_id: str, claim: JobClaim) -> int | None:
        """Start a run of a queued or interrupted job: increment and return its attempt; else None."""
        started = codec.iso_utc(claim.started_at)
        args = (claim.worker_id, claim.version, started, started, job_id)

        def claim_(conn: sqlite3.Connection) -> int | None:
            rows = conn.execute(_CLAIM, args).fetchall()
            return int(rows[0][0]) if rows else None

        return await self._batcher.submit(claim_)

    async def record_lost_lease(
        self, job_id: str, *, at: datetime, max_losses: int, attempt: int | None = None
    ) -> LostLease | None:
        """Count a lost lease of a running job: queued again, or quarantined at `max_losses`."""
        requeue = (codec.lost_lease_message(max_losses), job_id, max_losses, attempt, attempt)
        quarantine = (codec.quarantine_message(max_losses), codec.iso_utc(at), job_id, attempt, attempt)

        def record(conn: sqlite3.Connection) -> LostLease | None:
            row = conn.execute(_LOST_LEASE_REQUEUE, requeue).fetchone()
            if row is None:
                row = conn.execute(_LOST_LEASE_QUARANTINE, quarantine).fetchone()
            if row is None:
                return None
            status, new_attempt, losses, worker_id = row
            return LostLease(
                status=JobStatus(status), attempt=new_attempt, lease_losses=losses, worker_id=worker_id
            )

        return await self._batcher.submit(record)

    async def fail_waiting_job(
        self,
        job_id: str,
        *,
        at: datetime,
        category: ErrorCategory,
        message: str,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Mark a queued or interrupted job failed with `category`; False when it is not waiting."""
        sql = """UPDATE jobs SET status = 'failed', finished_at = ?, error_category = ?, error_message = ?,
            result = ? WHERE job_id = ? AND status IN ('queued', 'interrupted')"""
        args = (codec.iso_utc(at), category.value, message, codec.result_json(result), job_id)
        return await self._update_one(sql, args)

    async def heartbeat_job(
        self, job_id: str, attempt: int, *, at: datetime, progress: JobProgress | None = None
    ) -> bool:
        """Refresh a running job's heartbeat (and progress); False when `attempt` is not current."""
        sql = """UPDATE jobs SET heartbeat_at = ?, progress = coalesce(?, progress)
            WHERE job_id = ? AND attempt = ? AND status = 'running'"""
        args = (codec.iso_utc(at), progress.model_dump_json() if progress else None, job_id, attempt)
        return await self._update_one(sql, args)

    async def heartbeat_jobs(self, runs: Sequence[tuple[str, int]], *, at: datetime) -> int:
        """Refresh the heartbeat of many running jobs in one transaction; return how many matched."""
        if not runs:
            return 0
        stamp = codec.iso_utc(at)
        rows: list[tuple[object, ...]] = [(stamp, job_id, attempt) for job_id, attempt in runs]
        sql = "UPDATE jobs SET heartbeat_at = ? WHERE job_id = ? AND attempt = ? AND status = 'running'"
        return await self._run(lambda conn: _write_many(conn, sql, rows))

    async def find_stale_jobs(
        self, *, running_heartbeat_before: datetime, waiting_enqueued_before: datetime, limit: int
    ) -> list[JobRecord]:
        """Stale running jobs and long-waiting queued/interrupted jobs, oldest first."""
        sql = f"""SELECT {codec.JOB_COLUMNS} FROM jobs
            WHERE (status = 'running' AND heartbeat_at < ?)
               OR (status IN ('queued', 'interrupted') AND enqueued_at < ?)
            ORDER BY enqueued_at LIMIT ?"""
        args = (codec.iso_utc(running_heartbeat_before), codec.iso_utc(waiting_enqueued_before), limit)
        rows = await self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [codec.job_from_row(row) for row in rows]

    async def count_jobs(self) -> list[JobCount]:
        sql = """SELECT queue, status, error_category, count(*), min(enqueued_at) FROM jobs
            GROUP BY queue, status, error_category"""
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        return [
            JobCount(
                queue=queue,
                status=JobStatus(status),
                error_category=ErrorCategory(category) if category else None,
                count=count,
                oldest_enqueued_at=datetime.fromisoformat(oldest) if oldest else None,
            )
            for queue, status, category, count, oldest in rows
        ]

    async def finished_since(
        self, since: datetime, *, limit: int, categories: Collection[ErrorCategory] | None = None
    ) -> list[JobRecord]:
        kinds = "" if categories is None else f"AND error_category IN ({', '.join('?' * len(categories))})"
        sql = f"""SELECT {codec.JOB_COLUMNS} FROM jobs WHERE status IN ({_FINISHED}) {kinds}
            AND finished_at >= ? ORDER BY finished_at DESC LIMIT ?"""
        args = (*(c.value for c in categories or ()), codec.iso_utc(since), limit)
        rows = await self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [codec.job_from_row(row) for row in rows]

    async def delete_finished_jobs(self, before: datetime, *, limit: int) -> list[str]:
        select = f"""SELECT job_id FROM jobs WHERE status IN ({_TERMINAL}) AND finished_at < ?
            ORDER BY finished_at LIMIT ?"""

        def delete(conn: sqlite3.Connection) -> list[str]:
            with _write(conn):
                ids = [row[0] for row in conn.execute(select, (codec.iso_utc(before), limit)).fetchall()]
                conn.executemany(
                    f"DELETE FROM jobs WHERE job_id = ? AND status IN ({_TERMINAL})", [(i,) for i in ids]
                )
            return ids

        return await self._run(delete)

    async def finish_job(self, job_id: str, attempt: int, outcome: JobOutcome) -> bool:
        """Record how a run ended; False when `attempt` is not current or the job is not running."""
        args = (
            outcome.status.value,
            codec.iso_utc(outcome.finished_at),
            outcome.duration_ms,
            outcome.error_category.value if outcome.error_category else None,
            outcome.error_message,
            codec.result_json(outcome.result),
            int(outcome.app_failure),
            int(outcome.interruption),
            job_id,
            attempt,
        )
        return await self._update_one(_FINISH, args)

    async def cancel_job(self, job_id: str, *, at: datetime) -> bool:
        """Mark a non-terminal job cancelled; False when it is unknown or already terminal."""
        sql = f"""UPDATE jobs SET status = 'cancelled', finished_at = ?
            WHERE job_id = ? AND status NOT IN ({_TERMINAL})"""
        return await self._update_one(sql, (codec.iso_utc(at), job_id))

    # the fleet's workers

    async def register_worker(self, worker: WorkerRegistration) -> None:
        sql = """INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (worker_id) DO UPDATE SET seen_at = excluded.seen_at"""
        args = (worker.worker_id, worker.version, worker.hostname, worker.queue,
                codec.iso_utc(worker.started_at), codec.iso_utc(worker.seen_at))  # fmt: skip
        await self._update_one(sql, args)

    async def known_workers(self, worker_ids: Collection[str]) -> set[str]:
        ids = list(worker_ids)
        if not ids:
            return set()

        def select(conn: sqlite3.Connection) -> set[str]:
            known: set[str] = set()
            for start in range(0, len(ids), 500):  # within SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                sql = f"SELECT worker_id FROM workers WHERE worker_id IN ({', '.join('?' * len(chunk))})"
                known.update(row[0] for row in conn.execute(sql, chunk))
            return known

        return await self._run(select)

    # plumbing (the functions passed to `_run` execute on the store's thread)

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

    async def _one_job(self, clause: str, args: tuple[object, ...]) -> JobRecord | None:
        sql = f"SELECT {codec.JOB_COLUMNS} FROM jobs {clause}"
        row = await self._run(lambda conn: conn.execute(sql, args).fetchone(), inline=True)
        return None if row is None else codec.job_from_row(row)

    async def _update_one(self, sql: str, args: tuple[object, ...]) -> bool:
        """One conditional update, written in the next batch with the other runs' writes."""
        return await self._batcher.submit(lambda conn: conn.execute(sql, args).rowcount == 1)

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
        with _write(conn):
            return fn(conn)

    return in_transaction


class _Busy(Exception):
    """The inline connection met a lock held by another connection: run on the store's thread."""


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
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


def _insert_jobs(
    conn: sqlite3.Connection, rows: list[tuple[object, ...]], successors: Sequence[tuple[object, ...]]
) -> int:
    """Insert ledger rows; a later generation supersedes the earlier ones in the same transaction."""
    if not successors:
        return _write_many(conn, _INSERT_JOB, rows)
    with _write(conn):
        inserted = conn.executemany(_INSERT_JOB, rows).rowcount
        conn.executemany(_SUPERSEDE, successors)
    return inserted


def _write_many(conn: sqlite3.Connection, sql: str, rows: list[tuple[object, ...]]) -> int:
    """Run `sql` for every row in one transaction; return how many rows it changed."""
    if not rows:
        return 0
    if len(rows) == 1:  # one statement is atomic by itself (a lone enqueue: no BEGIN/COMMIT pair)
        return conn.execute(sql, rows[0]).rowcount
    with _write(conn):
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
