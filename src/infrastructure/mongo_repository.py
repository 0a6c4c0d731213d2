"""`Repository` on MongoDB with PyMongo's native asyncio client (`AsyncMongoClient`).

Inserts are upserts keyed by `_id` with `$setOnInsert`, so replaying them changes nothing; every
write of a job run is a single-document update whose filter carries the run's `attempt` (the
fencing token), so a stale run matches nothing. Connection-level failures become `StoreUnavailable`
(a transient error the worker retries); any other `PyMongoError` is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, PyMongoError

from src.domain.addresses import AddressSource, NormalizedAddress
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

Document = dict[str, Any]

DUPLICATE_KEY = 11000
# Datetimes come back aware, in UTC (BSON dates are UTC milliseconds).
CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(document_class=dict, tz_aware=True, tzinfo=UTC)
_NOT_TERMINAL = {"$nin": list(codec.TERMINAL_STATUSES)}
_WAITING = {"$in": [JobStatus.QUEUED.value, JobStatus.INTERRUPTED.value]}  # what a run may claim
_FINISHED = {"$in": list(codec.FINISHED_STATUSES)}
_RUNNING = JobStatus.RUNNING.value

_ADDRESS_SOURCE = "endereco_normalizado.source"

APPOINTMENT_INDEXES = [
    # unique among batched rows only: single appointments have no batch and all share seq 0
    IndexModel(
        [("batch_id", ASCENDING), ("seq", ASCENDING)],
        name="batch_seq",
        unique=True,
        partialFilterExpression={"batch_id": {"$type": "string"}},
    ),
    IndexModel([("batch_id", ASCENDING), ("normalization_status", ASCENDING)], name="batch_status"),
    # only the rules_fallback addresses are in it: the re-normalization's pages, in id order
    IndexModel(
        [(_ADDRESS_SOURCE, ASCENDING), ("_id", ASCENDING)],
        name="rules_fallback",
        partialFilterExpression={_ADDRESS_SOURCE: AddressSource.RULES_FALLBACK.value},
    ),
]
JOB_INDEXES = [
    IndexModel([("logical_key", ASCENDING), ("generation", DESCENDING)], name="key_generation", unique=True),
    IndexModel([("status", ASCENDING), ("enqueued_at", DESCENDING)], name="status_enqueued"),
    IndexModel([("status", ASCENDING), ("heartbeat_at", ASCENDING)], name="status_heartbeat"),
    IndexModel([("status", ASCENDING), ("finished_at", DESCENDING)], name="status_finished"),
    IndexModel([("enqueued_at", DESCENDING)], name="enqueued"),
]


OFF_LOOP_MIN_DOCS = 1000  # documents built on a thread of their own from this many on


class MongoRepository:
    """`Repository` on `database`; `hosts` (e.g. `db1:27017,db2:27017`) only feeds `identity()`."""

    def __init__(self, database: AsyncDatabase[Document], *, hosts: str | None = None) -> None:
        self._database = database
        self._hosts = hosts if hosts is not None else _seed_hosts(database)
        self._appointments = database.get_collection("appointments", codec_options=CODEC_OPTIONS)
        self._batches = database.get_collection("batches", codec_options=CODEC_OPTIONS)
        self._jobs = database.get_collection("jobs", codec_options=CODEC_OPTIONS)
        self._meta = database.get_collection("meta", codec_options=CODEC_OPTIONS)
        self._workers = database.get_collection("workers", codec_options=CODEC_OPTIONS)
        self._store_id: str | None = None

    # lifecycle

    async def init(self) -> None:
        """Create indexes and the init marker; safe to call on every start."""
        with _unavailable_on_connection_errors():
            await self._appointments.create_indexes(APPOINTMENT_INDEXES)
            await self._jobs.create_indexes(JOB_INDEXES)
            marker = {"store_id": uuid.uuid4().hex, "initialized_at": datetime.now(UTC)}
            marker["schema_version"] = codec.SCHEMA_VERSION
            try:
                await self._meta.update_one({"_id": "store"}, {"$setOnInsert": marker}, upsert=True)
            except DuplicateKeyError:
                pass  # another process created the marker at the same moment
            await self._meta.update_one(
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
        with _unavailable_on_connection_errors():
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
        return await _insert_many(self._appointments, ops)

    async def get_appointment(self, appointment_id: str) -> Appointment | None:
        with _unavailable_on_connection_errors():
            doc = await self._appointments.find_one({"_id": appointment_id})
        return None if doc is None else codec.appointment_from_doc(doc)

    async def list_batch_appointments(
        self, batch_id: str, *, seq_from: int, seq_to: int, limit: int
    ) -> list[Appointment]:
        """Appointments of a batch with seq_from <= seq < seq_to, in seq order, at most `limit`."""
        query = {"batch_id": batch_id, "seq": {"$gte": seq_from, "$lt": seq_to}}
        with _unavailable_on_connection_errors():
            docs = await self._appointments.find(query).sort([("seq", ASCENDING)]).limit(limit).to_list()
        return [codec.appointment_from_doc(doc) for doc in docs]

    async def save_normalizations(
        self, results: Sequence[NormalizationResult], *, job_id: str, attempt: int
    ) -> int:
        """Write results of one run of `job_id`; skip appointments a newer attempt already wrote."""
        codec.check_provenance(results, job_id, attempt)
        if not results:
            return 0
        ops = [
            UpdateOne(
                {
                    "_id": result.appointment_id,
                    # a newer attempt of the same job wins; a run of another job may always overwrite
                    "$or": [
                        {"provenance.job_id": {"$ne": job_id}},
                        {"provenance.attempt": {"$lte": attempt}},
                    ],
                },
                {"$set": codec.normalization_set(result)},
            )
            for result in results
        ]
        with _unavailable_on_connection_errors():
            written = await self._appointments.bulk_write(ops, ordered=False)
        return written.matched_count

    async def single_appointments_to_retime(self, *, after_id: str | None, limit: int) -> list[Appointment]:
        query: Document = {"batch_id": None, "retimed": {"$exists": False}, "_id": {"$gt": after_id or ""}}
        with _unavailable_on_connection_errors():
            docs = await self._appointments.find(query).sort([("_id", ASCENDING)]).limit(limit).to_list()
        return [codec.appointment_from_doc(doc) for doc in docs]

    async def rules_fallback_appointments(
        self, *, after_id: str | None, limit: int, without_result: str | None = None
    ) -> list[Appointment]:
        source = AddressSource.RULES_FALLBACK.value
        query: Document = {_ADDRESS_SOURCE: source, "_id": {"$gt": after_id or ""}}
        if without_result is not None:
            codec.result_path(without_result)  # an identifier: a safe field name
            query[f"results.{without_result}"] = {"$exists": False}
        with _unavailable_on_connection_errors():
            docs = await self._appointments.find(query).sort([("_id", ASCENDING)]).limit(limit).to_list()
        return [codec.appointment_from_doc(doc) for doc in docs]

    async def settle_fallback_address(
        self, appointment_id: str, kind: str, result: KindResult, address: NormalizedAddress | None
    ) -> bool:
        """See the port. One update, conditioned on the address still being a fallback."""
        codec.result_path(kind)  # an identifier: a safe field name
        update: Document = {f"results.{kind}": result.model_dump()}
        if address is not None:
            update["endereco_normalizado"] = address.model_dump()
        query: Document = {"_id": appointment_id, _ADDRESS_SOURCE: AddressSource.RULES_FALLBACK.value}
        with _unavailable_on_connection_errors():
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
        with _unavailable_on_connection_errors():
            written = await self._appointments.bulk_write(ops, ordered=False)
        return int(written.modified_count)

    async def insert_batch(self, batch: Batch) -> bool:
        """Insert the batch if its id is new; True when inserted."""
        doc = batch.model_dump(exclude={"id"})
        with _unavailable_on_connection_errors():
            try:
                written = await self._batches.update_one(
                    {"_id": batch.id}, {"$setOnInsert": doc}, upsert=True
                )
            except DuplicateKeyError:
                return False  # a concurrent insert of the same id won
        return written.upserted_id is not None

    async def get_batch(self, batch_id: str) -> Batch | None:
        with _unavailable_on_connection_errors():
            doc = await self._batches.find_one({"_id": batch_id})
        return None if doc is None else Batch.model_validate({**doc, "id": doc["_id"]})

    async def recent_batches(self, *, limit: int, before: tuple[datetime, str] | None = None) -> list[Batch]:
        query = {} if before is None else _before("created_at", before)
        order = [("created_at", DESCENDING), ("_id", DESCENDING)]
        with _unavailable_on_connection_errors():
            docs = await self._batches.find(query, sort=order, limit=limit).to_list()
        return [Batch.model_validate({**doc, "id": doc["_id"]}) for doc in docs]

    async def count_batch(self, batch_id: str) -> BatchCounts:
        pipeline: list[Document] = [
            {"$match": {"batch_id": batch_id}},
            {"$group": {"_id": "$normalization_status", "count": {"$sum": 1}}},
        ]
        with _unavailable_on_connection_errors():
            cursor = await self._appointments.aggregate(pipeline)
            groups = await cursor.to_list()
        return codec.batch_counts((group["_id"], group["count"]) for group in groups)

    # job ledger

    async def create_jobs(self, records: Sequence[JobRecord]) -> int:
        """Insert the ledger records whose job id is new; return how many were inserted. A later
        generation then supersedes the earlier ones of its logical key (two conditioned updates,
        not one transaction: should the process die between the insert and them, the earlier
        generation stays runnable until the next enqueue of a later one; a succeeded generation is
        never superseded)."""
        ops = [_insert_op(record.job_id, codec.job_doc(record)) for record in records]
        inserted = await _insert_many(self._jobs, ops)
        for record in records:
            if record.generation > 1:
                await self._supersede(record)
        return inserted

    async def _supersede(self, successor: JobRecord) -> None:
        earlier = {
            "logical_key": successor.logical_key,
            "generation": {"$lt": successor.generation},
            "superseded_by": None,
        }
        replaced = {"superseded_by": successor.job_id}
        with _unavailable_on_connection_errors():
            await self._jobs.update_many(
                {**earlier, "status": _NOT_TERMINAL},
                {
                    "$set": {
                        **replaced,
                        "status": JobStatus.SUPERSEDED.value,
                        "finished_at": successor.enqueued_at,
                    }
                },
            )
            await self._jobs.update_many(
                {**earlier, "status": {"$ne": JobStatus.SUCCEEDED.value}}, {"$set": replaced}
            )

    async def create_queued_jobs(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str,
        *,
        enqueued_at: datetime,
        progress: JobProgress,
    ) -> int:
        # The insert's round trip dominates here, so the records go through the one document codec.
        return await self.create_jobs(
            [
                JobRecord(
                    job_id=e.job_id,
                    logical_key=e.logical_key,
                    generation=e.generation,
                    task=e.task,
                    queue=queue,
                    envelope=e,
                    enqueued_at=enqueued_at,
                    progress=progress,
                )
                for e in envelopes
            ]
        )

    async def get_job(self, job_id: str) -> JobRecord | None:
        with _unavailable_on_connection_errors():
            doc = await self._jobs.find_one({"_id": job_id})
        return None if doc is None else codec.job_from_doc(doc)

    async def latest_job(self, logical_key: str) -> JobRecord | None:
        """The record of the highest generation of a logical key."""
        with _unavailable_on_connection_errors():
            doc = await self._jobs.find_one({"logical_key": logical_key}, sort=[("generation", DESCENDING)])
        return None if doc is None else codec.job_from_doc(doc)

    async def count_batches(self) -> int:
        with _unavailable_on_connection_errors():
            return await self._batches.count_documents({})

    async def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 100, before: tuple[datetime, str] | None = None
    ) -> list[JobRecord]:
        """Most recently enqueued first, ties by job id; after `before` when given."""
        query: dict[str, Any] = {} if before is None else _before("enqueued_at", before)
        if status is not None:
            query["status"] = status.value
        order = [("enqueued_at", DESCENDING), ("_id", DESCENDING)]
        with _unavailable_on_connection_errors():
            docs = await self._jobs.find(query).sort(order).limit(limit).to_list()
        return [codec.job_from_doc(doc) for doc in docs]

    async def claim_job(self, job_id: str, claim: JobClaim) -> int | None:
        """Start a run of a non-terminal job: increment and return its attempt; None otherwise."""
        update = {
            "$inc": {"attempt": 1},
            "$set": {
                "status": _RUNNING,
                "worker_id": claim.worker_id,
                "version": claim.version,
                "started_at": claim.started_at,
                "heartbeat_at": claim.started_at,
                "finished_at": None,
                "duration_ms": None,
                "error_category": None,
                "error_message": None,
                "result": None,
            },
        }
        with _unavailable_on_connection_errors():
            doc = await self._jobs.find_one_and_update(
                {"_id": job_id, "status": _WAITING},
                update,
                projection={"attempt": True},
                return_document=ReturnDocument.AFTER,
            )
        return None if doc is None else int(doc["attempt"])

    async def record_lost_lease(
        self, job_id: str, *, at: datetime, max_losses: int, attempt: int | None = None
    ) -> LostLease | None:
        """Count a lost lease of a running job: queued again, or quarantined at `max_losses`."""
        running: Document = {"_id": job_id, "status": _RUNNING}
        if attempt is not None:
            running["attempt"] = attempt
        counted = {"attempt": 1, "lease_losses": 1}
        requeue = {
            "$inc": counted,
            "$set": {"status": JobStatus.QUEUED.value, "error_category": None,
                     "error_message": codec.lost_lease_message(max_losses)},
        }  # fmt: skip
        quarantine = {
            "$inc": counted,
            "$set": {"status": JobStatus.FAILED.value, "error_category": ErrorCategory.QUARANTINED.value,
                     "error_message": codec.quarantine_message(max_losses), "finished_at": at},
        }  # fmt: skip
        fields = {"status": True, "attempt": True, "lease_losses": True, "worker_id": True}
        with _unavailable_on_connection_errors():
            doc = await self._jobs.find_one_and_update(
                {**running, "lease_losses": {"$not": {"$gte": max_losses - 1}}},  # also when missing
                requeue,
                projection=fields,
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                doc = await self._jobs.find_one_and_update(
                    running, quarantine, projection=fields, return_document=ReturnDocument.AFTER
                )
        if doc is None:
            return None
        return LostLease(
            status=JobStatus(doc["status"]),
            attempt=int(doc["attempt"]),
            lease_losses=int(doc["lease_losses"]),
            worker_id=doc.get("worker_id"),
        )

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
        update = {
            "$set": {"status": JobStatus.FAILED.value, "finished_at": at, "error_category": category.value,
                     "error_message": message, "result": result},
        }  # fmt: skip
        with _unavailable_on_connection_errors():
            written = await self._jobs.update_one({"_id": job_id, "status": _WAITING}, update)
        return written.matched_count == 1

    async def heartbeat_job(
        self, job_id: str, attempt: int, *, at: datetime, progress: JobProgress | None = None
    ) -> bool:
        """Refresh a running job's heartbeat (and progress); False when `attempt` is not current."""
        fields: Document = {"heartbeat_at": at}
        if progress is not None:
            fields["progress"] = progress.model_dump()
        return await self._update_run(job_id, attempt, {"$set": fields})

    async def heartbeat_jobs(self, runs: Sequence[tuple[str, int]], *, at: datetime) -> int:
        """Refresh the heartbeat of many running jobs in one bulk write; return how many matched."""
        if not runs:
            return 0
        ops = [
            UpdateOne(
                {"_id": job_id, "attempt": attempt, "status": "running"}, {"$set": {"heartbeat_at": at}}
            )
            for job_id, attempt in runs
        ]
        with _unavailable_on_connection_errors():
            result = await self._jobs.bulk_write(ops, ordered=False)
        return int(result.matched_count)

    async def find_stale_jobs(
        self, *, running_heartbeat_before: datetime, waiting_enqueued_before: datetime, limit: int
    ) -> list[JobRecord]:
        """Stale running jobs and long-waiting queued/interrupted jobs, oldest first."""
        query = {
            "$or": [
                {"status": "running", "heartbeat_at": {"$lt": running_heartbeat_before}},
                {
                    "status": {"$in": ["queued", "interrupted"]},
                    "enqueued_at": {"$lt": waiting_enqueued_before},
                },
            ]
        }
        with _unavailable_on_connection_errors():
            cursor = self._jobs.find(query, sort=[("enqueued_at", ASCENDING)], limit=limit)
            docs = await cursor.to_list()
        return [codec.job_from_doc(doc) for doc in docs]

    async def count_jobs(self) -> list[JobCount]:
        pipeline: list[Document] = [
            {
                "$group": {
                    "_id": {"queue": "$queue", "status": "$status", "category": "$error_category"},
                    "count": {"$sum": 1},
                    "oldest": {"$min": "$enqueued_at"},
                }
            }
        ]
        with _unavailable_on_connection_errors():
            cursor = await self._jobs.aggregate(pipeline)
            groups = await cursor.to_list()
        return [
            JobCount(
                queue=g["_id"]["queue"],
                status=JobStatus(g["_id"]["status"]),
                error_category=ErrorCategory(g["_id"]["category"]) if g["_id"].get("category") else None,
                count=g["count"],
                oldest_enqueued_at=g.get("oldest"),
            )
            for g in groups
        ]

    async def finished_since(
        self, since: datetime, *, limit: int, categories: Collection[ErrorCategory] | None = None
    ) -> list[JobRecord]:
        query: Document = {"status": _FINISHED, "finished_at": {"$gte": since}}
        if categories is not None:
            query["error_category"] = {"$in": [c.value for c in categories]}
        with _unavailable_on_connection_errors():
            cursor = self._jobs.find(query, sort=[("finished_at", DESCENDING)], limit=limit)
            docs = await cursor.to_list()
        return [codec.job_from_doc(doc) for doc in docs]

    async def delete_finished_jobs(self, before: datetime, *, limit: int) -> list[str]:
        query = {"status": {"$in": list(codec.TERMINAL_STATUSES)}, "finished_at": {"$lt": before}}
        with _unavailable_on_connection_errors():
            cursor = self._jobs.find(query, {"_id": 1}, sort=[("finished_at", ASCENDING)], limit=limit)
            ids = [str(doc["_id"]) for doc in await cursor.to_list()]
            if ids:
                await self._jobs.delete_many(
                    {"_id": {"$in": ids}, "status": {"$in": list(codec.TERMINAL_STATUSES)}}
                )
        return ids

    async def finish_job(self, job_id: str, attempt: int, outcome: JobOutcome) -> bool:
        """Record how a run ended; False when `attempt` is not current or the job is not running."""
        update = {
            "$set": {
                "status": outcome.status.value,
                "finished_at": outcome.finished_at,
                "duration_ms": outcome.duration_ms,
                "error_category": outcome.error_category.value if outcome.error_category else None,
                "error_message": outcome.error_message,
                "result": outcome.result,
            },
            "$inc": {"app_failures": int(outcome.app_failure), "interruptions": int(outcome.interruption)},
        }
        return await self._update_run(job_id, attempt, update)

    async def cancel_job(self, job_id: str, *, at: datetime) -> bool:
        """Mark a non-terminal job cancelled; False when it is unknown or already terminal."""
        update = {"$set": {"status": JobStatus.CANCELLED.value, "finished_at": at}}
        with _unavailable_on_connection_errors():
            written = await self._jobs.update_one({"_id": job_id, "status": _NOT_TERMINAL}, update)
        return written.matched_count == 1

    # the fleet's workers

    async def register_worker(self, worker: WorkerRegistration) -> None:
        doc = worker.model_dump(exclude={"worker_id", "seen_at"})
        with _unavailable_on_connection_errors():
            await self._workers.update_one(
                {"_id": worker.worker_id},
                {"$setOnInsert": doc, "$set": {"seen_at": worker.seen_at}},
                upsert=True,
            )

    async def known_workers(self, worker_ids: Collection[str]) -> set[str]:
        if not worker_ids:
            return set()
        with _unavailable_on_connection_errors():
            docs = await self._workers.find({"_id": {"$in": list(worker_ids)}}, {"_id": 1}).to_list()
        return {str(doc["_id"]) for doc in docs}

    async def _update_run(self, job_id: str, attempt: int, update: Document) -> bool:
        """Apply `update` only while run `attempt` is the current, running one."""
        with _unavailable_on_connection_errors():
            written = await self._jobs.update_one(
                {"_id": job_id, "attempt": attempt, "status": _RUNNING}, update
            )
        return written.matched_count == 1


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


def _insert_op(key: str, doc: Document) -> UpdateOne:
    return UpdateOne({"_id": key}, {"$setOnInsert": doc}, upsert=True)


async def _insert_many(collection: AsyncCollection[Document], ops: list[UpdateOne]) -> int:
    """Run idempotent upserts; return how many documents they created."""
    if not ops:
        return 0
    with _unavailable_on_connection_errors():
        try:
            written = await collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # Losing a race to a concurrent insert of the same key means "already there".
            if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
                raise
            if exc.details.get("writeConcernErrors"):
                raise
            return int(exc.details.get("nUpserted", 0))
    return written.upserted_count


@contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    try:
        yield
    except ConnectionFailure as exc:  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
        raise StoreUnavailable(f"MongoDB store unavailable: {type(exc).__name__}") from exc
    except PyMongoError as exc:
        if exc.timeout:  # an operation that ran out of its time budget (CSOT / maxTimeMS)
            raise StoreUnavailable(f"MongoDB store timed out: {type(exc).__name__}") from exc
        raise


def _appointment_ops(appointments: Sequence[Appointment]) -> list[UpdateOne]:
    return [_insert_op(a.id, codec.appointment_doc(a)) for a in appointments]


def _before(field: str, position: tuple[datetime, str]) -> dict[str, Any]:
    """Documents after `position` (a time and an id) in the newest-first, id-descending order."""
    at, key = position
    return {"$or": [{field: {"$lt": at}}, {field: at, "_id": {"$lt": key}}]}
