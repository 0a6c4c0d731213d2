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
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from src.domain.addresses import NormalizedAddress
from src.domain.appointments import (
    NORMALIZATION,
    Appointment,
    Batch,
    BatchCounts,
    KindResult,
    NormalizationResult,
)
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
from src.infrastructure.sqlite_schema import RULES_FALLBACK, initialize

T = TypeVar("T")

INIT_LOCK_RETRY_S = 4.0  # within the 5 s workers.py gives the store at start-up

_INSERT_APPOINTMENT = f"INSERT OR IGNORE INTO appointments ({codec.APPOINTMENT_COLUMNS}) VALUES (?,?,?,?)"
_INSERT_RESULT = f"INSERT OR IGNORE INTO appointment_results ({codec.RESULT_COLUMNS}) VALUES (?,?,?,?,?,?,?)"
# One kind's result of one appointment, (id, kind, status, job_id, attempt, body): only that
# (appointment, kind) row is read or written, so a kind never touches another's result. A newer
# attempt of the same job wins; a run of another job may always overwrite. And never from a run the
# ledger no longer holds as current, checked in the same statement: a run fenced off (its lease
# lost, its generation superseded, its job cancelled) between its last check and this write writes
# nothing. An appointment that does not exist gets nothing (the SELECT finds no row).
_SAVE_RESULT = f"""INSERT INTO appointment_results ({codec.RESULT_COLUMNS})
    SELECT id, ?2, batch_id, ?3, ?4, ?5, ?6 FROM appointments
    WHERE id = ?1
      AND NOT EXISTS (SELECT 1 FROM jobs WHERE job_id = ?4 AND NOT (attempt = ?5 AND status = 'running'))
    ON CONFLICT (appointment_id, kind) DO UPDATE
    SET status = excluded.status, job_id = excluded.job_id, attempt = excluded.attempt, body = excluded.body
    WHERE NOT (appointment_results.job_id = excluded.job_id
               AND appointment_results.attempt > excluded.attempt)"""
_SELECT_APPOINTMENTS = f"SELECT {codec.APPOINTMENT_SELECT} FROM appointments"
# (after id, kind or NULL, limit): the page is chosen on the partial index alone, then read.
_RULES_FALLBACK_PAGE = f"""{_SELECT_APPOINTMENTS} WHERE id IN (
        SELECT appointment_id FROM appointment_results
        WHERE {RULES_FALLBACK} AND appointment_id > ?1 AND (?2 IS NULL OR NOT EXISTS (
            SELECT 1 FROM appointment_results AS other
            WHERE other.appointment_id = appointment_results.appointment_id AND other.kind = ?2))
        ORDER BY appointment_id LIMIT ?3)
    ORDER BY id"""
# A batch's progress in one statement (one snapshot): its rows, then its normalization results by status.
_COUNT_BATCH = f"""SELECT NULL, count(*) FROM appointments WHERE batch_id = ?1
    UNION ALL
    SELECT status, count(*) FROM appointment_results WHERE batch_id = ?1 AND kind = '{NORMALIZATION}'
    GROUP BY status"""


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
        """Insert the appointments whose id (and batch_id + seq) is new, with their results; return
        how many."""
        rows = [codec.appointment_row(a) for a in appointments]
        if not any(a.results for a in appointments):  # new appointments: no results yet
            return await self._run(lambda conn: _write_many(conn, _INSERT_APPOINTMENT, rows))
        results = [codec.result_rows(a) for a in appointments]

        def insert(conn: sqlite3.Connection) -> int:
            inserted = 0
            with _write(conn):
                for row, kinds in zip(rows, results, strict=True):
                    if conn.execute(_INSERT_APPOINTMENT, row).rowcount == 1:  # never onto a known id
                        inserted += 1
                        conn.executemany(_INSERT_RESULT, kinds)
            return inserted

        return await self._run(insert)

    async def get_appointment(self, appointment_id: str) -> Appointment | None:
        sql = f"{_SELECT_APPOINTMENTS} WHERE id = ?"
        row = await self._run(lambda conn: conn.execute(sql, (appointment_id,)).fetchone(), inline=True)
        return None if row is None else codec.appointment_from_row(row)

    async def list_batch_appointments(
        self, batch_id: str, *, seq_from: int, seq_to: int, limit: int
    ) -> list[Appointment]:
        """Appointments of a batch with seq_from <= seq < seq_to, in seq order, at most `limit`."""
        sql = f"{_SELECT_APPOINTMENTS} WHERE batch_id = ? AND seq >= ? AND seq < ? ORDER BY seq LIMIT ?"
        args = (batch_id, seq_from, seq_to, limit)
        rows = await self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [codec.appointment_from_row(row) for row in rows]

    async def save_normalizations(
        self, results: Sequence[NormalizationResult], *, job_id: str, attempt: int
    ) -> int:
        """Write results of one run of `job_id` as the normalization kind's; skip appointments a newer
        attempt already wrote."""
        codec.check_provenance(((r.appointment_id, r.provenance) for r in results), job_id, attempt)
        return await self._save(NORMALIZATION, [codec.normalization_write(r) for r in results])

    async def save_results(
        self, kind: str, results: Mapping[str, KindResult], *, job_id: str, attempt: int
    ) -> int:
        codec.check_provenance(((key, r.provenance) for key, r in results.items()), job_id, attempt)
        return await self._save(
            codec.checked_kind(kind), [codec.kind_result_write(key, r) for key, r in results.items()]
        )

    async def _save(self, kind: str, writes: list[tuple[Any, ...]]) -> int:
        """Run `_SAVE_RESULT` for each (id, status, job_id, attempt, body) of `kind`, in one transaction."""
        rows = [(appointment_id, kind, *rest) for appointment_id, *rest in writes]
        return await self._run(
            lambda conn: _write_many(conn, _SAVE_RESULT, rows), inline=len(rows) <= INLINE_MAX_ROWS
        )

    async def single_appointments_to_retime(self, *, after_id: str | None, limit: int) -> list[Appointment]:
        sql = f"""{_SELECT_APPOINTMENTS}
            WHERE batch_id IS NULL AND json_extract(body, '$.retimed') IS NULL AND id > ?
            ORDER BY id LIMIT ?"""
        rows = await self._run(lambda conn: conn.execute(sql, (after_id or "", limit)).fetchall())
        return [codec.appointment_from_row(row) for row in rows]

    async def rules_fallback_appointments(
        self, *, after_id: str | None, limit: int, without_result: str | None = None
    ) -> list[Appointment]:
        kind = None if without_result is None else codec.checked_kind(without_result)
        args = (after_id or "", kind, limit)
        rows = await self._run(lambda conn: conn.execute(_RULES_FALLBACK_PAGE, args).fetchall())
        return [codec.appointment_from_row(row) for row in rows]

    async def settle_fallback_address(
        self, appointment_id: str, kind: str, result: KindResult, address: NormalizedAddress | None
    ) -> bool:
        """See the port. One transaction: the check that the address is still a fallback, the new
        address in the normalization's result, and `kind`'s own result."""
        provenance = result.provenance
        row = (appointment_id, codec.checked_kind(kind), result.status, provenance.job_id,
               provenance.attempt, codec.kind_result_json(result))  # fmt: skip
        if address is None:
            sql = f"SELECT 1 FROM appointment_results WHERE appointment_id = ? AND {RULES_FALLBACK}"
            args: tuple[object, ...] = (appointment_id,)
        else:
            sql = f"""UPDATE appointment_results
                SET body = json_set(body, '$.data.endereco_normalizado', json(?))
                WHERE appointment_id = ? AND {RULES_FALLBACK}"""
            args = (address.model_dump_json(), appointment_id)

        def settle(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                cursor = conn.execute(sql, args)
                still_fallback = cursor.fetchone() is not None if address is None else cursor.rowcount == 1
                if still_fallback:
                    conn.execute(_SAVE_RESULT, row)
                return still_fallback

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
        rows = await self._run(lambda conn: conn.execute(_COUNT_BATCH, (batch_id,)).fetchall())
        (_, total), *by_status = rows
        with_result = sum(count for _, count in by_status)
        return codec.batch_counts([(None, total - with_result), *by_status])

    def _init(self, conn: sqlite3.Connection) -> str:
        store_id, schema_version = initialize(conn)
        codec.check_schema_version(schema_version, self.identity())
        return store_id
