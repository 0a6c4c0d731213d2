"""A store written by the release before results by kind (schema 2) is migrated in place on open.

The old store is built as that release wrote it: SQLite rows through its own statements (insert,
save, the re-normalization's settle, the retime), MongoDB documents as its `$set`s left them. Opened
by this release, every appointment reads back with its normalization, status and provenance, and
its other kinds' results; nothing else changes; a second open changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from src.domain.addresses import AddressSource, NormalizedAddress
from src.domain.appointments import (
    NORMALIZATION,
    NORMALIZATION_VIEWS,
    Appointment,
    BatchCounts,
    KindResult,
    NormalizationStatus,
    Provenance,
)
from src.domain.documents import NormalizedDocument
from src.infrastructure import sqlite_schema
from src.infrastructure.mongo_migration import TO_RESULTS_BY_KIND
from src.infrastructure.mongo_repository import build_mongo_repository
from src.infrastructure.sqlite_repository import SQLiteRepository
from src.infrastructure.store_codec import SCHEMA_VERSION
from tests.contract.conftest import (
    MONGODB_SKIP_REASON,
    MONGODB_TEST_URL,
    NORMALIZED_ADDRESS,
    T0,
    make_appointment,
    make_job,
    make_provenance,
    make_result,
)

RENORMALIZE = "renormalize_addresses"
CHUNK = "batch:batch-1:0:1"
FALLBACK = NORMALIZED_ADDRESS.model_copy(
    update={
        "source": AddressSource.RULES_FALLBACK,
        "fallback_reason": "timeout",
        "confidence": 0.7000000000000001,
    }
)
BY_LLM = NORMALIZED_ADDRESS.model_copy(update={"bairro": "Cerqueira César", "notes": ("cep inferred",)})
RETIMED_TO = T0 + timedelta(hours=3)


class StoredNormalizationV2(BaseModel):
    """The `normalization` column of a schema 2 row, as that release wrote it."""

    documento_normalizado: NormalizedDocument | None = None
    endereco_normalizado: NormalizedAddress | None = None
    normalization_error: str | None = None
    provenance: Provenance | None = None


class KindResultV2(BaseModel):
    """A kind's result in schema 2 (`body.results.<kind>`): no status, no error yet."""

    data: dict[str, Any]
    provenance: Provenance


def renormalized(outcome: str) -> KindResult:
    provenance = make_provenance("cron:renormalize_addresses:1", 1, "worker-r")
    return KindResult(data={"outcome": outcome}, provenance=provenance)


def expected_appointments() -> list[Appointment]:
    """What each appointment of the old store must read as once migrated."""
    normalized = make_result("appt-1", CHUNK, 2).model_copy(update={"endereco_normalizado": FALLBACK})
    failed = make_result("appt-2", "normalize:appt-2:1", 1, NormalizationStatus.FAILED)
    settled = make_result("appt-3", CHUNK, 2).model_copy(update={"endereco_normalizado": BY_LLM})
    kept = make_result("appt-4", CHUNK, 2).model_copy(update={"endereco_normalizado": FALLBACK})
    return [
        make_appointment(0),  # pending
        make_appointment(1, results={NORMALIZATION: normalized.kind_result()}),
        make_appointment(2, batch_id=None, seq=0, results={NORMALIZATION: failed.kind_result()}),
        make_appointment(
            3, results={NORMALIZATION: settled.kind_result(), RENORMALIZE: renormalized("replaced")}
        ),
        make_appointment(4, results={NORMALIZATION: kept.kind_result(), RENORMALIZE: renormalized("kept")}),
        make_appointment(5, batch_id=None, seq=0, telefone="+55 11 90000-0000", data_hora=RETIMED_TO),
    ]


def old_normalization(appointment: Appointment) -> StoredNormalizationV2:
    result = appointment.results[NORMALIZATION]
    fallback = FALLBACK if RENORMALIZE in appointment.results else None  # before the settle
    return StoredNormalizationV2(
        documento_normalizado=appointment.documento_normalizado,
        endereco_normalizado=fallback or appointment.endereco_normalizado,
        normalization_error=result.error,
        provenance=result.provenance,
    )


def old_body(appointment: Appointment) -> str:
    data_hora = T0 + timedelta(days=5) if appointment.id == "appt-5" else appointment.data_hora
    original = appointment.model_copy(update={"data_hora": data_hora})
    return original.model_dump_json(exclude={"id", "batch_id", "seq", "results", *NORMALIZATION_VIEWS})


# --- SQLite ------------------------------------------------------------------------------------

V2_SCHEMA = (
    """CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL,
        initialized_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
    """CREATE TABLE appointments (
        id TEXT PRIMARY KEY, batch_id TEXT, seq INTEGER NOT NULL, normalization_status TEXT NOT NULL,
        prov_job_id TEXT, prov_attempt INTEGER, body TEXT NOT NULL, normalization TEXT)""",
    "CREATE UNIQUE INDEX appointments_batch_seq ON appointments (batch_id, seq) WHERE batch_id IS NOT NULL",
    """CREATE INDEX appointments_batch_status ON appointments (batch_id, normalization_status)
        WHERE batch_id IS NOT NULL""",
    """CREATE INDEX appointments_rules_fallback ON appointments (id)
        WHERE json_extract(normalization, '$.endereco_normalizado.source') = 'rules_fallback'""",
    "CREATE TABLE batches (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
    """CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY, logical_key TEXT NOT NULL, generation INTEGER NOT NULL,
        task TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL,
        app_failures INTEGER NOT NULL, interruptions INTEGER NOT NULL, worker_id TEXT, version TEXT,
        enqueued_at TEXT NOT NULL, started_at TEXT, heartbeat_at TEXT, finished_at TEXT,
        duration_ms INTEGER, progress TEXT NOT NULL, error_category TEXT, error_message TEXT,
        result TEXT, envelope TEXT NOT NULL, lease_losses INTEGER NOT NULL DEFAULT 0, superseded_by TEXT)""",
    """CREATE TABLE workers (worker_id TEXT PRIMARY KEY, version TEXT NOT NULL, hostname TEXT NOT NULL,
        queue TEXT NOT NULL, started_at TEXT NOT NULL, seen_at TEXT NOT NULL)""",
)
V2_INSERT = "INSERT OR IGNORE INTO appointments VALUES (?,?,?,?,?,?,?,?)"
V2_SAVE = """UPDATE appointments SET normalization_status = ?, normalization = ?, prov_job_id = ?,
    prov_attempt = ? WHERE id = ?"""
V2_SETTLE = """UPDATE appointments SET body = json_set(body, ?, json(?)),
    normalization = json_set(normalization, '$.endereco_normalizado', json(?)) WHERE id = ?"""
V2_SETTLE_KEPT = "UPDATE appointments SET body = json_set(body, ?, json(?)) WHERE id = ?"
V2_RETIME = "UPDATE appointments SET body = json_set(body, '$.data_hora', ?, '$.retimed', 1) WHERE id = ?"


def write_v2_file(path: Path) -> None:
    """The old release's file: its schema, its statements, a ledger record, a batch and a worker."""
    job = make_job("batch:batch-1:0", status="running", attempt=2, worker_id="worker-a")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in V2_SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES (1, 'store-1', '2026-03-01T00:00:00.000000+00:00', 2)")
        conn.execute("INSERT INTO batches VALUES ('batch-1', '{\"id\":\"batch-1\"}')")
        conn.execute("INSERT INTO workers VALUES ('worker-a', '1.2.3', 'host', 'normalization', 't0', 't1')")
        conn.execute(
            "INSERT INTO jobs (job_id, logical_key, generation, task, queue, status, attempt, app_failures,"
            " interruptions, enqueued_at, progress, envelope) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (job.job_id, job.logical_key, 1, job.task, job.queue, "running", 2, 0, 0,
             T0.isoformat(timespec="microseconds"), job.progress.model_dump_json(),
             job.envelope.model_dump_json()),
        )  # fmt: skip
        for appointment in expected_appointments():
            conn.execute(
                V2_INSERT,
                (appointment.id, appointment.batch_id, appointment.seq, "pending", None, None,
                 old_body(appointment), None),
            )  # fmt: skip
            if NORMALIZATION in appointment.results:
                result = appointment.results[NORMALIZATION]
                conn.execute(
                    V2_SAVE,
                    (result.status, old_normalization(appointment).model_dump_json(),
                     result.provenance.job_id, result.provenance.attempt, appointment.id),
                )  # fmt: skip
            if RENORMALIZE in appointment.results:
                kind = appointment.results[RENORMALIZE]
                old = KindResultV2(data=kind.data, provenance=kind.provenance).model_dump_json()
                if kind.data["outcome"] == "replaced":
                    address = BY_LLM.model_dump_json()
                    conn.execute(V2_SETTLE, (f"$.results.{RENORMALIZE}", old, address, appointment.id))
                else:
                    conn.execute(V2_SETTLE_KEPT, (f"$.results.{RENORMALIZE}", old, appointment.id))
        conn.execute(V2_RETIME, (RETIMED_TO.isoformat().replace("+00:00", "Z"), "appt-5"))
    finally:
        conn.close()


def dump(path: Path, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in tables
        }
    finally:
        conn.close()


def schema_of(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=repr)
    finally:
        conn.close()


async def open_and_read(path: Path) -> list[Appointment | None]:
    repo = SQLiteRepository(str(path))
    try:
        await repo.init()
        return [await repo.get_appointment(a.id) for a in expected_appointments()]
    finally:
        await repo.close()


async def test_a_schema_2_file_is_migrated_in_place(tmp_path: Path) -> None:
    """Every appointment keeps its normalization, status, provenance and other kinds' results; the
    imported fields, the retime mark, the ledger, the batches and the workers are untouched; the old
    columns are gone and a second open changes nothing."""
    path = tmp_path / "v2.sqlite3"
    write_v2_file(path)
    untouched = ("batches", "jobs", "workers")
    before = dump(path, *untouched)
    old_bodies = {row[0]: json.loads(row[6]) for row in dump(path, "appointments")["appointments"]}

    assert await open_and_read(path) == expected_appointments()

    assert dump(path, *untouched) == before
    conn = sqlite3.connect(path)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(appointments)")]
        bodies = {row[0]: json.loads(row[1]) for row in conn.execute("SELECT id, body FROM appointments")}
        meta = conn.execute("SELECT store_id, schema_version FROM meta").fetchall()
    finally:
        conn.close()
    assert columns == ["id", "batch_id", "seq", "body"]
    assert bodies == {
        key: {k: v for k, v in body.items() if k != "results"} for key, body in old_bodies.items()
    }
    assert bodies["appt-5"]["retimed"] == 1
    assert meta == [("store-1", SCHEMA_VERSION)]

    after_first = (schema_of(path), dump(path, "meta", "appointments", "appointment_results", *untouched))
    assert await open_and_read(path) == expected_appointments()
    assert (
        schema_of(path),
        dump(path, "meta", "appointments", "appointment_results", *untouched),
    ) == after_first


async def test_a_migrated_file_works_as_a_new_one(tmp_path: Path) -> None:
    """After the migration: the provenance fences stale attempts, batches count by status, and the
    listings that follow the indexes (fallback addresses, singles to retime) see the migrated rows."""
    path = tmp_path / "v2.sqlite3"
    write_v2_file(path)
    repo = SQLiteRepository(str(path))
    try:
        await repo.init()
        assert await repo.count_batch("batch-1") == BatchCounts(total=4, normalized=3, failed=0, pending=1)
        assert [a.id for a in await repo.rules_fallback_appointments(after_id=None, limit=10)] == [
            "appt-1",
            "appt-4",
        ]
        todo = await repo.rules_fallback_appointments(after_id=None, limit=10, without_result=RENORMALIZE)
        assert [a.id for a in todo] == ["appt-1"]
        assert [a.id for a in await repo.single_appointments_to_retime(after_id=None, limit=10)] == ["appt-2"]

        single = "normalize:appt-2:1"  # not in the ledger: its migrated provenance alone fences it
        assert (
            await repo.save_normalizations([make_result("appt-2", single, 0)], job_id=single, attempt=0) == 0
        )
        assert (
            await repo.save_normalizations([make_result("appt-2", single, 1)], job_id=single, attempt=1) == 1
        )
        stale = [make_result("appt-1", CHUNK, 1, NormalizationStatus.FAILED)]
        assert await repo.save_normalizations(stale, job_id=CHUNK, attempt=1) == 0
        current = [make_result("appt-0", CHUNK, 2)]  # the ledger's running attempt
        assert await repo.save_normalizations(current, job_id=CHUNK, attempt=2) == 1
        assert await repo.count_batch("batch-1") == BatchCounts(total=4, normalized=4, failed=0, pending=0)
    finally:
        await repo.close()


async def test_an_interrupted_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that fails at its last step rolls back whole (one transaction): the file is still
    schema 2, row for row; the next open migrates it."""
    path = tmp_path / "v2.sqlite3"
    write_v2_file(path)
    tables = ("meta", "appointments", "batches", "jobs", "workers")
    before = (schema_of(path), dump(path, *tables))
    broken = (*sqlite_schema._APPOINTMENT_INDEXES, "CREATE INDEX broken ON appointments (no_such_column)")
    monkeypatch.setattr(sqlite_schema, "_APPOINTMENT_INDEXES", broken)
    with pytest.raises(sqlite3.OperationalError, match="no_such_column"):
        await open_and_read(path)
    assert (schema_of(path), dump(path, *tables)) == before

    monkeypatch.undo()
    assert await open_and_read(path) == expected_appointments()


# --- MongoDB (a real server at MONGODB_TEST_URL) -------------------------------------------------

OLD_FIELDS = ("normalization_status", "documento_normalizado", "endereco_normalizado", "normalization_error",
              "provenance")  # fmt: skip


def old_document(appointment: Appointment) -> dict[str, Any]:
    """The document the old release left: its model dumped, then its normalization's and the
    re-normalization's `$set`s, then the retime's."""
    normalization = appointment.results.get(NORMALIZATION)
    doc: dict[str, Any] = {
        "_id": appointment.id,
        **appointment.model_dump(exclude={"id", "results", *NORMALIZATION_VIEWS}),
        "documento_normalizado": None,
        "endereco_normalizado": None,
        "normalization_status": "pending",
        "normalization_error": None,
        "provenance": None,
        "results": {},
    }
    if normalization is not None:
        old = old_normalization(appointment)
        doc.update(
            normalization_status=normalization.status,
            documento_normalizado=old.documento_normalizado.model_dump()
            if old.documento_normalizado
            else None,
            endereco_normalizado=old.endereco_normalizado.model_dump() if old.endereco_normalizado else None,
            normalization_error=old.normalization_error,
            provenance=normalization.provenance.model_dump(),
        )
    if RENORMALIZE in appointment.results:
        kind = appointment.results[RENORMALIZE]
        doc["results"][RENORMALIZE] = KindResultV2(data=kind.data, provenance=kind.provenance).model_dump()
        if kind.data["outcome"] == "replaced":
            doc["endereco_normalizado"] = BY_LLM.model_dump()
    if appointment.id == "appt-5":
        doc["retimed"] = True
    return doc


@pytest.fixture
async def old_database() -> AsyncIterator[tuple[str, AsyncDatabase[dict[str, Any]]]]:
    """A database of its own holding what the old release wrote: documents, indexes, marker."""
    assert MONGODB_TEST_URL is not None
    name = f"migration_{uuid.uuid4().hex[:16]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_TEST_URL, tz_aware=True)
    database = client[name]
    try:
        await database.appointments.insert_many([old_document(a) for a in expected_appointments()])
        await database.appointments.create_index(
            [("batch_id", ASCENDING), ("normalization_status", ASCENDING)], name="batch_status"
        )
        await database.appointments.create_index(
            [("endereco_normalizado.source", ASCENDING), ("_id", ASCENDING)],
            name="rules_fallback",
            partialFilterExpression={"endereco_normalizado.source": "rules_fallback"},
        )
        await database.meta.insert_one({"_id": "store", "store_id": "store-1", "initialized_at": T0,
                                        "schema_version": 2})  # fmt: skip
        yield name, database
    finally:
        await client.drop_database(name)
        await client.close()


async def documents(database: AsyncDatabase[dict[str, Any]]) -> list[dict[str, Any]]:
    return await database.appointments.find({}).sort("_id", ASCENDING).to_list()


@pytest.mark.mongodb
@pytest.mark.skipif(MONGODB_TEST_URL is None, reason=MONGODB_SKIP_REASON)
async def test_a_schema_2_mongodb_database_is_migrated_in_place(
    old_database: tuple[str, AsyncDatabase[dict[str, Any]]],
) -> None:
    """Each document's normalization moves under `results.normalization`, its old fields go, nothing
    else changes; the old indexes are replaced; one document migrated already (an interrupted run)
    and one a new release wrote meanwhile are continued, not redone; a second init is a no-op."""
    assert MONGODB_TEST_URL is not None
    name, database = old_database
    await database.appointments.update_one({"_id": "appt-2"}, TO_RESULTS_BY_KIND)  # an interrupted run
    newer = make_result("appt-4", "normalize:appt-4:2", 1).kind_result()
    await database.appointments.update_one(
        {"_id": "appt-4"}, {"$set": {"results.normalization": newer.model_dump()}}
    )
    before = {doc["_id"]: doc for doc in await documents(database)}

    repo = build_mongo_repository(MONGODB_TEST_URL, name, 5)
    try:
        await repo.init()
        expected = expected_appointments()
        expected[4] = expected[4].model_copy(
            update={"results": {**expected[4].results, NORMALIZATION: newer}}
        )
        assert [await repo.get_appointment(a.id) for a in expected] == expected
        assert await repo.count_batch("batch-1") == BatchCounts(total=4, normalized=3, failed=0, pending=1)
        assert [a.id for a in await repo.rules_fallback_appointments(after_id=None, limit=10)] == ["appt-1"]
        await repo.init()
    finally:
        await repo.close()

    migrated = await documents(database)
    for doc in migrated:
        old = before[doc["_id"]]
        assert not set(OLD_FIELDS) & set(doc)
        assert {k: v for k, v in doc.items() if k != "results"} == {
            k: v for k, v in old.items() if k not in {*OLD_FIELDS, "results"}
        }
        others = {k: v for k, v in doc["results"].items() if k != NORMALIZATION}
        assert others == {k: v for k, v in old["results"].items() if k != NORMALIZATION}
    indexes = await database.appointments.index_information()
    assert "batch_status" not in indexes and "rules_fallback" not in indexes
    assert {"batch_normalization", "normalization_rules_fallback"} <= set(indexes)
    marker = await database.meta.find_one({"_id": "store"})
    assert marker is not None and (marker["store_id"], marker["schema_version"]) == (
        "store-1",
        SCHEMA_VERSION,
    )
