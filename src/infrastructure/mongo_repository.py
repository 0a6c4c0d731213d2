"""`Repository` on MongoDB with PyMongo's native asyncio client (`AsyncMongoClient`).

Inserts are upserts keyed by `_id` with `$setOnInsert`, so replaying them changes nothing; every
write of a job run is a single-document update whose filter carries the run's `attempt` (the
fencing token), so a stale run matches nothing. A job kind's result is `results.<kind>` of the
appointment's document, written and fenced on its own: no kind's write reads or sets another's.
Connection-level failures become `StoreUnavailable` (a transient error the worker retries); any
other `PyMongoError` is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from src.domain.addresses import AddressSource, NormalizedAddress
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
from src.infrastructure.mongo_common import (
    CODEC_OPTIONS,
    Document,
    after_position,
    insert_many,
    insert_op,
    unavailable_on_connection_errors,
)
from src.infrastructure.mongo_ledger import JOB_INDEXES, MongoLedger
from src.infrastructure.mongo_migration import migrate_appointments

_NORMALIZATION = f"results.{NORMALIZATION}"
_ADDRESS = f"{_NORMALIZATION}.data.endereco_normalizado"
_ADDRESS_SOURCE = f"{_ADDRESS}.source"
_FALLBACK = AddressSource.RULES_FALLBACK.value

APPOINTMENT_INDEXES = [
    # unique among batched rows only: single appointments have no batch and all share seq 0
    IndexModel(
        [("batch_id", ASCENDING), ("seq", ASCENDING)],
        name="batch_seq",
        unique=True,
        partialFilterExpression={"batch_id": {"$type": "string"}},
    ),
    # a batch's progress: its rows by normalization status (none yet: pending)
    IndexModel(
        [("batch_id", ASCENDING), (f"{_NORMALIZATION}.status", ASCENDING)], name="batch_normalization"
    ),
    # only the rules_fallback addresses are in it: the re-normalization's pages, in id order
    IndexModel(
        [(_ADDRESS_SOURCE, ASCENDING), ("_id", ASCENDING)],
        name="normalization_rules_fallback",
        partialFilterExpression={_ADDRESS_SOURCE: _FALLBACK},
    ),
]
OFF_LOOP_MIN_DOCS = 1000  # documents built on a thread of their own from this many on


class MongoRepository(MongoLedger):
    """`Repository` on `database`; `hosts` (e.g. `db1:27017,db2:27017`) only feeds `identity()`."""

    def __init__(self, database: AsyncDatabase[Document], *, hosts: str | None = None) -> None:
        super().__init__(database)
        self._database = database
        self._hosts = hosts if hosts is not None else _seed_hosts(database)
        self._appointments = database.get_collection("appointments", codec_options=CODEC_OPTIONS)
        self._batches = database.get_collection("batches", codec_options=CODEC_OPTIONS)
        self._meta = database.get_collection("meta", codec_options=CODEC_OPTIONS)
        self._store_id: str | None = None

    # lifecycle

    async def init(self) -> None:
        """Migrate a store an older release wrote, create indexes and the init marker; safe to call
        on every start, and by several processes at once."""
        with unavailable_on_connection_errors():
            before = await self._meta.find_one({"_id": "store"})
            # no marker: a new store, as every release wrote it at its first start
            found_version = codec.SCHEMA_VERSION if before is None else int(before.get("schema_version", 1))
            codec.check_schema_version(found_version, self.identity())
            await migrate_appointments(self._appointments, found_version)
            await self._appointments.create_indexes(APPOINTMENT_INDEXES)
            await self._jobs.create_indexes(JOB_INDEXES)
            marker = {"store_id": uuid.uuid4().hex, "initialized_at": datetime.now(UTC)}
            marker["schema_version"] = codec.SCHEMA_VERSION
            try:
                await self._meta.update_one({"_id": "store"}, {"$setOnInsert": marker}, upsert=True)
            except DuplicateKeyError:
                pass  # another process created the marker at the same moment
            await self._meta.update_one(  # only now: an interrupted migration is run again
                {"_id": "store", "schema_version": {"$lt": codec.SCHEMA_VERSION}},
                {"$set": {"schema_version": codec.SCHEMA_VERSION}},
            )
            found = await self._meta.find_one({"_id": "store"})
        if found is None:
            raise StoreUnavailable("MongoDB store lost its init marker", store=self.identity())
        codec.check_schema_version(int(found.get("schema_version", 1)), self.identity())
        self._store_id = str(found["store_id"])

    async def close(self) -> None:
        """Close the client the database belongs to."""
        await self._database.client.close()

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when no server can be reached."""
        with unavailable_on_connection_errors():
            await self._database.command("ping")

    def identity(self) -> str:
        suffix = f"#{self._store_id}" if self._store_id else ""
        return f"mongodb:{self._hosts}/{self._database.name}{suffix}"

    def data_key(self) -> str:
        if self._store_id is None:
            raise RuntimeError("data_key() needs init() first: the store id is read there")
        return "mongodb#" + self._store_id

    # appointments and batches

    async def insert_appointments(self, appointments: Sequence[Appointment]) -> int:
        """Insert the appointments whose id (and batch_id + seq) is new; return how many."""
        if len(appointments) >= OFF_LOOP_MIN_DOCS:  # an import's 50,000 take a few hundred ms to build
            ops = await asyncio.to_thread(_appointment_ops, appointments)
        else:  # one API create: a thread hop would cost more than the document
            ops = _appointment_ops(appointments)
        return await insert_many(self._appointments, ops)

    async def get_appointment(self, appointment_id: str) -> Appointment | None:
        with unavailable_on_connection_errors():
            doc = await self._appointments.find_one({"_id": appointment_id})
        return None if doc is None else codec.appointment_from_doc(doc)

    async def list_batch_appointments(
        self, batch_id: str, *, seq_from: int, seq_to: int, limit: int
    ) -> list[Appointment]:
        """Appointments of a batch with seq_from <= seq < seq_to, in seq order, at most `limit`."""
        query = {"batch_id": batch_id, "seq": {"$gte": seq_from, "$lt": seq_to}}
        with unavailable_on_connection_errors():
            docs = await self._appointments.find(query).sort([("seq", ASCENDING)]).limit(limit).to_list()
        return [codec.appointment_from_doc(doc) for doc in docs]

    async def save_normalizations(
        self, results: Sequence[NormalizationResult], *, job_id: str, attempt: int
    ) -> int:
        """Write results of one run of `job_id` as the normalization kind's; skip appointments a newer
        attempt already wrote."""
        codec.check_provenance(((r.appointment_id, r.provenance) for r in results), job_id, attempt)
        docs = [(r.appointment_id, codec.normalization_doc(r)) for r in results]
        return await self._save(NORMALIZATION, docs, job_id=job_id, attempt=attempt)

    async def save_results(
        self, kind: str, results: Mapping[str, KindResult], *, job_id: str, attempt: int
    ) -> int:
        codec.check_provenance(((key, r.provenance) for key, r in results.items()), job_id, attempt)
        docs = [(key, r.model_dump()) for key, r in results.items()]
        return await self._save(codec.checked_kind(kind), docs, job_id=job_id, attempt=attempt)

    async def _save(self, kind: str, docs: list[tuple[str, Document]], *, job_id: str, attempt: int) -> int:
        """Set `results.<kind>` of each (id, result) unless a newer attempt of `job_id` wrote it."""
        if not docs:
            return 0
        field = f"results.{kind}"
        # a newer attempt of the same job wins; a run of another job may always overwrite
        fence: Document = {
            "$or": [
                {f"{field}.provenance.job_id": {"$ne": job_id}},
                {f"{field}.provenance.attempt": {"$lte": attempt}},
            ]
        }
        ops = [UpdateOne({"_id": key, **fence}, {"$set": {field: doc}}) for key, doc in docs]
        with unavailable_on_connection_errors():
            written = await self._appointments.bulk_write(ops, ordered=False)
        return written.matched_count

    async def single_appointments_to_retime(self, *, after_id: str | None, limit: int) -> list[Appointment]:
        query: Document = {"batch_id": None, "retimed": {"$exists": False}, "_id": {"$gt": after_id or ""}}
        with unavailable_on_connection_errors():
            docs = await self._appointments.find(query).sort([("_id", ASCENDING)]).limit(limit).to_list()
        return [codec.appointment_from_doc(doc) for doc in docs]

    async def rules_fallback_appointments(
        self, *, after_id: str | None, limit: int, without_result: str | None = None
    ) -> list[Appointment]:
        query: Document = {_ADDRESS_SOURCE: _FALLBACK, "_id": {"$gt": after_id or ""}}
        if without_result is not None:
            query[f"results.{codec.checked_kind(without_result)}"] = {"$exists": False}
        with unavailable_on_connection_errors():
            docs = await self._appointments.find(query).sort([("_id", ASCENDING)]).limit(limit).to_list()
        return [codec.appointment_from_doc(doc) for doc in docs]

    async def settle_fallback_address(
        self, appointment_id: str, kind: str, result: KindResult, address: NormalizedAddress | None
    ) -> bool:
        """See the port. One update, conditioned on the address still being a fallback."""
        update: Document = {f"results.{codec.checked_kind(kind)}": result.model_dump()}
        if address is not None:  # into the normalization's result: its status and provenance stay
            update[_ADDRESS] = address.model_dump(mode="json")
        query: Document = {"_id": appointment_id, _ADDRESS_SOURCE: _FALLBACK}
        with unavailable_on_connection_errors():
            written = await self._appointments.update_one(query, {"$set": update})
        return written.matched_count == 1

    async def retime_appointments(self, times: Sequence[tuple[str, datetime]]) -> int:
        if not times:
            return 0
        ops = [
            UpdateOne({"_id": appointment_id, "retimed": {"$exists": False}},
                      {"$set": {"data_hora": at, "retimed": True}})
            for appointment_id, at in times
        ]  # fmt: skip
        with unavailable_on_connection_errors():
            written = await self._appointments.bulk_write(ops, ordered=False)
        return int(written.modified_count)

    async def insert_batch(self, batch: Batch) -> bool:
        """Insert the batch if its id is new; True when inserted."""
        doc = batch.model_dump(exclude={"id"})
        with unavailable_on_connection_errors():
            try:
                written = await self._batches.update_one(
                    {"_id": batch.id}, {"$setOnInsert": doc}, upsert=True
                )
            except DuplicateKeyError:
                return False  # a concurrent insert of the same id won
        return written.upserted_id is not None

    async def get_batch(self, batch_id: str) -> Batch | None:
        with unavailable_on_connection_errors():
            doc = await self._batches.find_one({"_id": batch_id})
        return None if doc is None else Batch.model_validate({**doc, "id": doc["_id"]})

    async def recent_batches(self, *, limit: int, before: tuple[datetime, str] | None = None) -> list[Batch]:
        query = {} if before is None else after_position("created_at", before)
        order = [("created_at", DESCENDING), ("_id", DESCENDING)]
        with unavailable_on_connection_errors():
            docs = await self._batches.find(query, sort=order, limit=limit).to_list()
        return [Batch.model_validate({**doc, "id": doc["_id"]}) for doc in docs]

    async def count_batch(self, batch_id: str) -> BatchCounts:
        pipeline: list[Document] = [
            {"$match": {"batch_id": batch_id}},
            {"$group": {"_id": f"${_NORMALIZATION}.status", "count": {"$sum": 1}}},  # none: pending
        ]
        with unavailable_on_connection_errors():
            cursor = await self._appointments.aggregate(pipeline)
            groups = await cursor.to_list()
        return codec.batch_counts((group["_id"], group["count"]) for group in groups)

    async def count_batches(self) -> int:
        with unavailable_on_connection_errors():
            return await self._batches.count_documents({})


def build_mongo_repository(
    url: str, database_name: str, max_pool_size: int, *, server_selection_timeout_ms: int = 5000
) -> MongoRepository:
    """Build the client (it connects lazily) and the repository on `database_name`, whatever
    database the URL's path names. Writes are acknowledged by a majority of the replica set
    (`w=majority`, journaled): an appointment or a ledger record a failover can roll back would be
    a job lost or run twice. A `w=` in the URL is an explicit choice and is kept."""
    options: dict[str, Any] = {} if _url_sets_write_concern(url) else {"w": "majority"}
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        url,
        maxPoolSize=max_pool_size,
        serverSelectionTimeoutMS=server_selection_timeout_ms,
        tz_aware=True,
        tzinfo=UTC,
        **options,
    )
    return MongoRepository(client.get_database(database_name), hosts=hosts_of(url))


def _url_sets_write_concern(url: str) -> bool:
    query = url.partition("?")[2]
    return any(part.split("=", 1)[0].lower() == "w" for part in query.split("&") if part)


def hosts_of(url: str) -> str:
    """The host list of a MongoDB URL, without scheme, credentials, path or options."""
    rest = url.split("://", 1)[-1]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return authority.rpartition("@")[2]


def _seed_hosts(database: AsyncDatabase[Document]) -> str:
    servers = database.client.topology_description.server_descriptions()
    return ",".join(sorted(f"{host}:{port}" for host, port in servers))


def _appointment_ops(appointments: Sequence[Appointment]) -> list[UpdateOne]:
    return [insert_op(a.id, codec.appointment_doc(a)) for a in appointments]
