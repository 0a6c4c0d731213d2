"""The embedded store's tables and indexes, and the in-place migration of a file an older release made.

Appointments keep their imported fields in `appointments`; what each job kind recorded for one of
them is a row of `appointment_results`, keyed by (appointment, kind), with that run's provenance and
the columns its writes are fenced and counted by (`job_id`, `attempt`, `status`). The normalization
is such a row, of the kind `normalization`; `batch_id` is copied in (an appointment never changes
batch) so that a batch's progress is counted on one index.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime

from src.domain.appointments import NORMALIZATION
from src.infrastructure import store_codec as codec
from src.infrastructure.sqlite_connection import write_transaction

# The partial index's condition, written the same way in the queries so that SQLite uses the index.
RULES_FALLBACK = (
    f"kind = '{NORMALIZATION}'"
    " AND json_extract(body, '$.data.endereco_normalizado.source') = 'rules_fallback'"
)

_APPOINTMENTS = """CREATE TABLE IF NOT EXISTS {name} (
    id TEXT PRIMARY KEY, batch_id TEXT, seq INTEGER NOT NULL, body TEXT NOT NULL)"""
_APPOINTMENT_INDEXES = (
    """CREATE UNIQUE INDEX IF NOT EXISTS appointments_batch_seq
        ON appointments (batch_id, seq) WHERE batch_id IS NOT NULL""",
)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL,
        initialized_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
    _APPOINTMENTS.format(name="appointments"),
    """CREATE TABLE IF NOT EXISTS appointment_results (
        appointment_id TEXT NOT NULL, kind TEXT NOT NULL, batch_id TEXT, status TEXT,
        job_id TEXT NOT NULL, attempt INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (appointment_id, kind))""",
    # a batch's progress: its rows' results of one kind, counted by status
    """CREATE INDEX IF NOT EXISTS appointment_results_batch_status
        ON appointment_results (batch_id, kind, status) WHERE batch_id IS NOT NULL""",
    f"""CREATE INDEX IF NOT EXISTS appointment_results_rules_fallback
        ON appointment_results (appointment_id) WHERE {RULES_FALLBACK}""",
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
    *_APPOINTMENT_INDEXES,
)
# Columns added since schema version 1, added in place to a file made by an older version.
_ADDED_JOB_COLUMNS = {
    "lease_losses": "INTEGER NOT NULL DEFAULT 0",
    "superseded_by": "TEXT",
}

# Schema 3 (results by kind), from schema 2's appointment rows: the normalization was the row's own
# columns (`normalization_status`, `prov_job_id`, `prov_attempt`, and a `normalization` JSON of
# both documents, the error and the provenance); the other kinds' results were in `body.results`.
_MIGRATED_NORMALIZATIONS = f"""INSERT OR IGNORE INTO appointment_results
    (appointment_id, kind, batch_id, status, job_id, attempt, body)
    SELECT id, '{NORMALIZATION}', batch_id, normalization_status,
        json_extract(normalization, '$.provenance.job_id'),
        json_extract(normalization, '$.provenance.attempt'),
        json_object(
            'status', normalization_status,
            'data', json_object(
                'documento_normalizado', json_extract(normalization, '$.documento_normalizado'),
                'endereco_normalizado', json_extract(normalization, '$.endereco_normalizado')),
            'error', json_extract(normalization, '$.normalization_error'),
            'provenance', json_extract(normalization, '$.provenance'))
    FROM appointments WHERE json_type(normalization, '$.provenance') = 'object'"""
_MIGRATED_KIND_RESULTS = """INSERT OR IGNORE INTO appointment_results
    (appointment_id, kind, batch_id, status, job_id, attempt, body)
    SELECT appointments.id, result.key, appointments.batch_id, json_extract(result.value, '$.status'),
        json_extract(result.value, '$.provenance.job_id'),
        json_extract(result.value, '$.provenance.attempt'), result.value
    FROM appointments, json_each(appointments.body, '$.results') AS result
    WHERE json_type(appointments.body, '$.results') = 'object'"""
_MIGRATED_APPOINTMENTS = """INSERT INTO appointments_v3 (id, batch_id, seq, body)
    SELECT id, batch_id, seq,
        CASE WHEN json_type(body, '$.results') IS NULL THEN body ELSE json_remove(body, '$.results') END
    FROM appointments"""


def initialize(conn: sqlite3.Connection) -> tuple[str, int]:
    """Create what is missing, migrate a file of an older schema in place, and return the store's id
    and the schema version it is now at (a newer one than ours when a newer release migrated it).
    One transaction: a migration interrupted midway leaves the file as it was."""
    with write_transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
        present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        for column, definition in _ADDED_JOB_COLUMNS.items():
            if column not in present:  # a file made by an older version: migrate in place
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {definition}")
        _keep_results_by_kind(conn)
        conn.execute(
            "INSERT OR IGNORE INTO meta VALUES (1, ?, ?, ?)",
            (uuid.uuid4().hex, codec.iso_utc(datetime.now(UTC)), codec.SCHEMA_VERSION),
        )
        conn.execute(
            "UPDATE meta SET schema_version = ? WHERE id = 1 AND schema_version < ?",
            (codec.SCHEMA_VERSION, codec.SCHEMA_VERSION),
        )
        row = conn.execute("SELECT store_id, schema_version FROM meta WHERE id = 1").fetchone()
    return str(row[0]), int(row[1])


def _keep_results_by_kind(conn: sqlite3.Connection) -> None:
    """Schema 2 → 3: each appointment's normalization and other kinds' results become rows of
    `appointment_results`, and `appointments` is rebuilt without the columns that held them (a
    no-op on a file that has no `normalization` column: new, or migrated already)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(appointments)")}
    if "normalization" not in columns:
        return
    conn.execute(_MIGRATED_NORMALIZATIONS)
    conn.execute(_MIGRATED_KIND_RESULTS)
    conn.execute(_APPOINTMENTS.format(name="appointments_v3"))
    conn.execute(_MIGRATED_APPOINTMENTS)
    conn.execute("DROP TABLE appointments")  # and its indexes, made for the old columns
    conn.execute("ALTER TABLE appointments_v3 RENAME TO appointments")
    for statement in _APPOINTMENT_INDEXES:
        conn.execute(statement)
