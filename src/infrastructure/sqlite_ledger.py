"""The job ledger on the embedded store: every write of a run is conditioned on its attempt (the
fencing token), and the short ones from all of a worker's runs go in one batch (`WriteBatcher`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

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
from src.infrastructure import store_codec as codec
from src.infrastructure.sqlite_connection import (
    INLINE_MAX_ROWS,
    SQLiteConnections,
)
from src.infrastructure.sqlite_connection import (
    write_many as _write_many,
)
from src.infrastructure.sqlite_connection import (
    write_transaction as _write,
)
from src.infrastructure.sqlite_write_batcher import WriteBatcher

_TERMINAL = ", ".join(f"'{status}'" for status in codec.TERMINAL_STATUSES)
_FINISHED = ", ".join(f"'{status}'" for status in codec.FINISHED_STATUSES)

_JOB_PLACEHOLDERS = ", ".join("?" * (codec.JOB_COLUMNS.count(",") + 1))
_INSERT_JOB = f"INSERT OR IGNORE INTO jobs ({codec.JOB_COLUMNS}) VALUES ({_JOB_PLACEHOLDERS})"
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


class SQLiteLedger(SQLiteConnections):
    """The `jobs` and `workers` tables of the store at `path`."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._batcher = WriteBatcher(self._run_in_transaction, self._run_now)

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

    async def _one_job(self, clause: str, args: tuple[object, ...]) -> JobRecord | None:
        sql = f"SELECT {codec.JOB_COLUMNS} FROM jobs {clause}"
        row = await self._run(lambda conn: conn.execute(sql, args).fetchone(), inline=True)
        return None if row is None else codec.job_from_row(row)

    async def _update_one(self, sql: str, args: tuple[object, ...]) -> bool:
        """One conditional update, written in the next batch with the other runs' writes."""
        return await self._batcher.submit(lambda conn: conn.execute(sql, args).rowcount == 1)


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
