"""The exact commands the MongoDB adapter sends (filters, updates, indexes), against a recording fake.

No MongoDB server runs here: the behaviour against a real one is the contract suite's job
(`MONGODB_TEST_URL`). These tests pin the conditions that make writes idempotent and fenced.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from pymongo.results import BulkWriteResult, UpdateResult

from src.domain.appointments import Batch, BatchCounts, KindResult, NormalizationStatus
from src.domain.jobs import ErrorCategory, JobClaim, JobOutcome, JobProgress, JobStatus
from src.errors import StoreUnavailable
from src.infrastructure import mongo_repository
from src.infrastructure.mongo_repository import MongoRepository, build_mongo_repository, hosts_of
from src.infrastructure.store_codec import appointment_doc, job_doc
from tests.contract.conftest import (
    NORMALIZED_ADDRESS,
    NORMALIZED_DOCUMENT,
    T0,
    make_appointment,
    make_job,
    make_result,
)

JOB = "normalize:appt-1:1"
NOT_TERMINAL = {"$nin": ["succeeded", "failed", "cancelled", "superseded"]}


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class FakeCursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.sorted_by: Any = None
        self.limited_to: int | None = None

    def sort(self, key_or_list: Any) -> FakeCursor:
        self.sorted_by = key_or_list
        return self

    def limit(self, limit: int) -> FakeCursor:
        self.limited_to = limit
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        return list(self.docs)


@dataclass
class FakeCollection:
    """Records every call; answers with the queued replies (an exception reply is raised)."""

    name: str
    codec_options: Any
    calls: list[Call] = field(default_factory=list)
    replies: deque[Any] = field(default_factory=deque)
    cursors: list[FakeCursor] = field(default_factory=list)

    def reply(self, *values: Any) -> None:
        self.replies.extend(values)

    def _answer(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(Call(method, args, kwargs))
        value = self.replies.popleft() if self.replies else None
        if isinstance(value, BaseException):
            raise value
        return value

    async def create_indexes(self, indexes: list[Any]) -> Any:
        return self._answer("create_indexes", indexes)

    async def bulk_write(self, requests: list[Any], ordered: bool = True) -> Any:
        return self._answer("bulk_write", list(requests), ordered=ordered)

    async def update_one(self, filter: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> Any:
        return self._answer("update_one", filter, update, upsert=upsert)

    async def update_many(self, filter: dict[str, Any], update: dict[str, Any]) -> Any:
        return self._answer("update_many", filter, update)

    async def find_one_and_update(self, filter: dict[str, Any], update: dict[str, Any], **kwargs: Any) -> Any:
        return self._answer("find_one_and_update", filter, update, **kwargs)

    async def find_one(self, filter: dict[str, Any], **kwargs: Any) -> Any:
        return self._answer("find_one", filter, **kwargs)

    async def drop_index(self, name: str) -> Any:
        return self._answer("drop_index", name)

    def find(self, filter: dict[str, Any], *args: Any, **kwargs: Any) -> FakeCursor:
        cursor = FakeCursor(self._answer("find", filter, *args, **kwargs) or [])
        self.cursors.append(cursor)
        return cursor

    async def aggregate(self, pipeline: list[dict[str, Any]]) -> FakeCursor:
        return FakeCursor(self._answer("aggregate", pipeline) or [])

    @property
    def only_call(self) -> Call:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


class FakeClient:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class FakeDatabase:
    def __init__(self, name: str = "clinic") -> None:
        self.name = name
        self.client = FakeClient()
        self.collections: dict[str, FakeCollection] = {}
        self.commands: list[Any] = []
        self.command_replies: deque[Any] = deque()

    def get_collection(self, name: str, codec_options: Any = None) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection(name, codec_options))

    async def command(self, command: Any) -> Any:
        self.commands.append(command)
        value = self.command_replies.popleft() if self.command_replies else {"ok": 1}
        if isinstance(value, BaseException):
            raise value
        return value

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections[name]


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def repo(db: FakeDatabase) -> MongoRepository:
    return MongoRepository(cast(AsyncDatabase[dict[str, Any]], db), hosts="db1:27017,db2:27017")


def bulk_result(**counts: int) -> BulkWriteResult:
    return BulkWriteResult({"nUpserted": 0, "nMatched": 0, "nModified": 0, "upserted": [], **counts}, True)


def update_result(matched: int, upserted_id: str | None = None) -> UpdateResult:
    raw: dict[str, Any] = {"n": matched, "nModified": matched}
    if upserted_id is not None:
        raw["upserted"] = upserted_id
    return UpdateResult(raw, True)


# lifecycle


async def test_init_creates_the_indexes_and_the_marker(db: FakeDatabase, repo: MongoRepository) -> None:
    """init() of a new store (no marker: nothing to migrate) creates the batch/seq, ledger and
    listing indexes and upserts one init marker."""
    db["meta"].reply(
        None, update_result(0, upserted_id="store"), update_result(0), {"_id": "store", "store_id": "abc123"}
    )
    await repo.init()

    appointment_indexes = [i.document for i in db["appointments"].only_call.args[0]]
    assert appointment_indexes == [
        {
            "key": {"batch_id": 1, "seq": 1},
            "name": "batch_seq",
            "unique": True,
            "partialFilterExpression": {"batch_id": {"$type": "string"}},
        },
        {"key": {"batch_id": 1, "results.normalization.status": 1}, "name": "batch_normalization"},
        {
            "key": {"results.normalization.data.endereco_normalizado.source": 1, "_id": 1},
            "name": "normalization_rules_fallback",
            "partialFilterExpression": {
                "results.normalization.data.endereco_normalizado.source": "rules_fallback"
            },
        },
    ]
    job_indexes = [i.document for i in db["jobs"].only_call.args[0]]
    assert job_indexes == [
        {"key": {"logical_key": 1, "generation": -1}, "name": "key_generation", "unique": True},
        {"key": {"status": 1, "enqueued_at": -1}, "name": "status_enqueued"},
        {"key": {"status": 1, "heartbeat_at": 1}, "name": "status_heartbeat"},
        {"key": {"status": 1, "finished_at": -1}, "name": "status_finished"},
        {"key": {"enqueued_at": -1}, "name": "enqueued"},
    ]
    before, upsert, migrate, read = db["meta"].calls
    assert (before.method, before.args) == ("find_one", ({"_id": "store"},))
    assert migrate.args == ({"_id": "store", "schema_version": {"$lt": 3}}, {"$set": {"schema_version": 3}})
    assert (
        upsert.method == "update_one"
        and upsert.args[0] == {"_id": "store"}
        and upsert.kwargs == {"upsert": True}
    )
    marker = upsert.args[1]["$setOnInsert"]
    assert set(marker) == {"store_id", "initialized_at", "schema_version"}
    assert marker["initialized_at"].tzinfo is not None and len(marker["store_id"]) == 32
    assert (read.method, read.args) == ("find_one", ({"_id": "store"},))
    assert repo.identity() == "mongodb:db1:27017,db2:27017/clinic#abc123"


async def test_collections_decode_datetimes_as_aware_utc(db: FakeDatabase, repo: MongoRepository) -> None:
    """Every collection is opened with tz-aware UTC codec options."""
    assert set(db.collections) == {"appointments", "batches", "jobs", "meta", "workers"}
    for collection in db.collections.values():
        assert collection.codec_options.tz_aware is True and collection.codec_options.tzinfo is UTC


async def test_ping_and_close(db: FakeDatabase, repo: MongoRepository) -> None:
    """ping() runs the ping command; close() closes the client."""
    await repo.ping()
    assert db.commands == ["ping"]
    await repo.close()
    assert db.client.closed


# idempotent inserts


async def test_only_large_inserts_build_their_documents_off_the_loop(
    db: FakeDatabase, repo: MongoRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import's thousands of documents are built on a thread (the API's loop stays free); one
    API create's document is built in place (a thread hop would cost more)."""
    offloaded: list[int] = []
    real_to_thread = mongo_repository.asyncio.to_thread

    async def counting_to_thread(fn: Any, appointments: Any) -> Any:
        offloaded.append(len(appointments))
        return await real_to_thread(fn, appointments)

    monkeypatch.setattr(mongo_repository.asyncio, "to_thread", counting_to_thread)
    many = [make_appointment(n) for n in range(mongo_repository.OFF_LOOP_MIN_DOCS)]
    db["appointments"].reply(bulk_result(nUpserted=1), bulk_result(nUpserted=len(many)))
    assert await repo.insert_appointments([make_appointment(1)]) == 1
    assert await repo.insert_appointments(many) == len(many)
    assert offloaded == [len(many)]


async def test_insert_appointments_upserts_with_set_on_insert(
    db: FakeDatabase, repo: MongoRepository
) -> None:
    """Each appointment is an unordered upsert keyed by _id whose fields are only set on insert."""
    appointments = [make_appointment(1), make_appointment(2)]
    db["appointments"].reply(bulk_result(nUpserted=1, nMatched=1))
    assert await repo.insert_appointments(appointments) == 1

    call = db["appointments"].only_call
    assert call.kwargs == {"ordered": False}
    assert call.args[0] == [
        UpdateOne({"_id": a.id}, {"$setOnInsert": appointment_doc(a)}, upsert=True) for a in appointments
    ]
    fields = call.args[0][0]._doc["$setOnInsert"]
    assert "_id" not in fields and "id" not in fields
    assert fields["data_hora"] == appointments[0].data_hora and fields["data_hora"].tzinfo is not None


async def test_create_jobs_upserts_with_set_on_insert(db: FakeDatabase, repo: MongoRepository) -> None:
    """Ledger records are unordered upserts keyed by job id, set only on insert."""
    records = [make_job("normalize:appt-1"), make_job("normalize:appt-2")]
    db["jobs"].reply(bulk_result(nUpserted=2))
    assert await repo.create_jobs(records) == 2
    call = db["jobs"].only_call
    assert call.kwargs == {"ordered": False}
    assert call.args[0] == [
        UpdateOne({"_id": r.job_id}, {"$setOnInsert": job_doc(r)}, upsert=True) for r in records
    ]


async def test_inserting_nothing_sends_nothing(db: FakeDatabase, repo: MongoRepository) -> None:
    """Empty inserts return 0 without a round trip (bulk_write refuses an empty list)."""
    assert await repo.insert_appointments([]) == 0
    assert await repo.create_jobs([]) == 0
    assert await repo.save_normalizations([], job_id=JOB, attempt=1) == 0
    assert db["appointments"].calls == db["jobs"].calls == []


async def test_a_lost_insert_race_counts_as_already_there(db: FakeDatabase, repo: MongoRepository) -> None:
    """Duplicate-key errors of a concurrent upsert are not failures; the real upserts are counted."""
    duplicate = BulkWriteError(
        {
            "writeErrors": [{"index": 1, "code": 11000, "errmsg": "E11000"}],
            "writeConcernErrors": [],
            "nUpserted": 1,
        }
    )
    db["appointments"].reply(duplicate)
    assert await repo.insert_appointments([make_appointment(1), make_appointment(2)]) == 1

    invalid = BulkWriteError(
        {
            "writeErrors": [{"index": 0, "code": 121, "errmsg": "validation"}],
            "writeConcernErrors": [],
            "nUpserted": 0,
        }
    )
    db["appointments"].reply(invalid)
    with pytest.raises(BulkWriteError):
        await repo.insert_appointments([make_appointment(1)])


async def test_insert_batch_is_an_upsert(db: FakeDatabase, repo: MongoRepository) -> None:
    """insert_batch upserts with $setOnInsert: True when it inserted, False when the id existed."""
    batch = Batch(
        id="batch-1", filename="agenda.xlsx", total=3, chunk_size=500, created_at=T0, job_ids=["a:1"]
    )
    db["batches"].reply(update_result(0, upserted_id="batch-1"), update_result(1))
    assert await repo.insert_batch(batch) is True
    assert await repo.insert_batch(batch) is False
    first = db["batches"].calls[0]
    assert first.args == ({"_id": "batch-1"}, {"$setOnInsert": batch.model_dump(exclude={"id"})})
    assert first.kwargs == {"upsert": True}


# fenced job writes


async def test_claim_increments_attempt_of_waiting_jobs(db: FakeDatabase, repo: MongoRepository) -> None:
    """claim_job is one find_one_and_update: queued-or-interrupted filter, $inc attempt, AFTER document."""
    db["jobs"].reply({"_id": JOB, "attempt": 3}, None)
    claim = JobClaim(worker_id="worker-a", version="1.2.3", started_at=T0)
    assert await repo.claim_job(JOB, claim) == 3
    assert await repo.claim_job(JOB, claim) is None

    call = db["jobs"].calls[0]
    assert call.method == "find_one_and_update"
    assert call.args[0] == {"_id": JOB, "status": {"$in": ["queued", "interrupted"]}}
    assert call.args[1] == {
        "$inc": {"attempt": 1},
        "$set": {
            "status": "running",
            "worker_id": "worker-a",
            "version": "1.2.3",
            "started_at": T0,
            "heartbeat_at": T0,
            "finished_at": None,
            "duration_ms": None,
            "error_category": None,
            "error_message": None,
            "result": None,
        },
    }
    assert call.kwargs["return_document"] is ReturnDocument.AFTER


async def test_heartbeat_is_conditioned_on_the_attempt(db: FakeDatabase, repo: MongoRepository) -> None:
    """heartbeat_job updates only the running document of that attempt; progress only when given."""
    db["jobs"].reply(update_result(1), update_result(0))
    progress = JobProgress(done=5, total=10, cursor=5)
    assert await repo.heartbeat_job(JOB, 2, at=T0, progress=progress) is True
    assert await repo.heartbeat_job(JOB, 1, at=T0) is False
    with_progress, without = db["jobs"].calls
    assert with_progress.args == (
        {"_id": JOB, "attempt": 2, "status": "running"},
        {"$set": {"heartbeat_at": T0, "progress": {"done": 5, "total": 10, "cursor": 5}}},
    )
    assert without.args == ({"_id": JOB, "attempt": 1, "status": "running"}, {"$set": {"heartbeat_at": T0}})


@pytest.mark.parametrize(
    ("status", "app_failure", "interruption"),
    [
        (JobStatus.QUEUED, True, False),
        (JobStatus.INTERRUPTED, False, True),
        (JobStatus.SUCCEEDED, False, False),
    ],
)
async def test_finish_sets_the_outcome_and_counts(
    db: FakeDatabase, repo: MongoRepository, status: JobStatus, app_failure: bool, interruption: bool
) -> None:
    """finish_job is conditioned on attempt + running, sets the outcome and $inc's the counters."""
    db["jobs"].reply(update_result(1))
    done = JobOutcome(
        status=status,
        finished_at=T0,
        duration_ms=120,
        error_category=ErrorCategory.TRANSIENT if app_failure else None,
        error_message="llm down" if app_failure else None,
        result={"written": 1},
        app_failure=app_failure,
        interruption=interruption,
    )
    assert await repo.finish_job(JOB, 4, done) is True
    assert db["jobs"].only_call.args == (
        {"_id": JOB, "attempt": 4, "status": "running"},
        {
            "$set": {
                "status": status.value,
                "finished_at": T0,
                "duration_ms": 120,
                "error_category": "transient" if app_failure else None,
                "error_message": "llm down" if app_failure else None,
                "result": {"written": 1},
            },
            "$inc": {"app_failures": int(app_failure), "interruptions": int(interruption)},
        },
    )


async def test_a_stale_finish_is_reported_as_not_written(db: FakeDatabase, repo: MongoRepository) -> None:
    """finish_job returns False when its filter matched nothing (another attempt is current)."""
    db["jobs"].reply(update_result(0))
    assert (
        await repo.finish_job(JOB, 1, JobOutcome(status=JobStatus.SUCCEEDED, finished_at=T0, duration_ms=1))
        is False
    )


async def test_cancel_applies_to_non_terminal_jobs_only(db: FakeDatabase, repo: MongoRepository) -> None:
    """cancel_job filters out terminal statuses and sets cancelled + finished_at."""
    db["jobs"].reply(update_result(1), update_result(0))
    assert await repo.cancel_job(JOB, at=T0) is True
    assert await repo.cancel_job(JOB, at=T0) is False
    assert db["jobs"].calls[0].args == (
        {"_id": JOB, "status": NOT_TERMINAL},
        {"$set": {"status": "cancelled", "finished_at": T0}},
    )


async def test_save_normalizations_is_fenced_by_provenance(db: FakeDatabase, repo: MongoRepository) -> None:
    """Each result is an UpdateOne that skips documents a newer attempt of the same job wrote."""
    results = [make_result("appt-1", JOB, 2), make_result("appt-2", JOB, 2, NormalizationStatus.FAILED)]
    db["appointments"].reply(bulk_result(nMatched=1, nModified=1))
    assert await repo.save_normalizations(results, job_id=JOB, attempt=2) == 1

    call = db["appointments"].only_call
    assert call.kwargs == {"ordered": False}
    fence = {
        "$or": [
            {"results.normalization.provenance.job_id": {"$ne": JOB}},
            {"results.normalization.provenance.attempt": {"$lte": 2}},
        ]
    }
    assert call.args[0] == [
        UpdateOne(
            {"_id": "appt-1", **fence},
            {
                "$set": {
                    "results.normalization": {
                        "status": "normalized",
                        "data": {
                            "documento_normalizado": NORMALIZED_DOCUMENT.model_dump(mode="json"),
                            "endereco_normalizado": NORMALIZED_ADDRESS.model_dump(mode="json"),
                        },
                        "error": None,
                        "provenance": results[0].provenance.model_dump(),
                    }
                }
            },
        ),
        UpdateOne(
            {"_id": "appt-2", **fence},
            {
                "$set": {
                    "results.normalization": {
                        "status": "failed",
                        "data": {"documento_normalizado": None, "endereco_normalizado": None},
                        "error": "endereco: cidade is missing",
                        "provenance": results[1].provenance.model_dump(),
                    }
                }
            },
        ),
    ]
    # the document the codec writes is the domain's result of the normalization kind, as is
    assert KindResult.model_validate(call.args[0][0]._doc["$set"]["results.normalization"]) == (
        results[0].kind_result()
    )


async def test_a_kind_writes_and_fences_its_own_result_only(db: FakeDatabase, repo: MongoRepository) -> None:
    """save_results sets `results.<kind>` alone, fenced on that kind's provenance; a kind that is not
    an identifier is refused before anything is sent."""
    result = KindResult(status="done", data={"n": 1}, provenance=make_result("appt-1", JOB, 2).provenance)
    db["appointments"].reply(bulk_result(nMatched=1, nModified=1))
    assert await repo.save_results("audit", {"appt-1": result}, job_id=JOB, attempt=2) == 1
    (op,) = db["appointments"].only_call.args[0]
    assert op._filter == {
        "_id": "appt-1",
        "$or": [
            {"results.audit.provenance.job_id": {"$ne": JOB}},
            {"results.audit.provenance.attempt": {"$lte": 2}},
        ],
    }
    assert op._doc == {"$set": {"results.audit": result.model_dump()}}
    with pytest.raises(ValueError, match="identifier"):
        await repo.save_results("a.b", {"appt-1": result}, job_id=JOB, attempt=2)
    assert len(db["appointments"].calls) == 1


async def test_save_normalizations_refuses_results_of_another_run(
    db: FakeDatabase, repo: MongoRepository
) -> None:
    """Results whose provenance names another attempt raise before anything is sent."""
    with pytest.raises(ValueError):
        await repo.save_normalizations([make_result("appt-1", JOB, 1)], job_id=JOB, attempt=2)
    assert db["appointments"].calls == []


# reads


async def test_reads_decode_documents(db: FakeDatabase, repo: MongoRepository) -> None:
    """Documents keyed by _id come back as the domain models."""
    appointment = make_appointment(1)
    record = make_job("normalize:appt-1", 3)
    db["appointments"].reply({"_id": appointment.id, **appointment_doc(appointment)}, None)
    db["jobs"].reply({"_id": record.job_id, **job_doc(record)}, {"_id": record.job_id, **job_doc(record)})
    assert await repo.get_appointment("appt-1") == appointment
    assert await repo.get_appointment("appt-2") is None
    assert await repo.get_job(record.job_id) == record
    assert await repo.latest_job("normalize:appt-1") == record
    latest = db["jobs"].calls[1]
    assert latest.args == ({"logical_key": "normalize:appt-1"},)
    assert latest.kwargs == {"sort": [("generation", -1)]}


async def test_list_batch_appointments_queries_a_seq_window(db: FakeDatabase, repo: MongoRepository) -> None:
    """The window is batch_id + seq in [from, to), sorted by seq, limited."""
    rows = [make_appointment(n) for n in (3, 4)]
    db["appointments"].reply([{"_id": a.id, **appointment_doc(a)} for a in rows])
    assert await repo.list_batch_appointments("batch-1", seq_from=3, seq_to=9, limit=2) == rows
    collection = db["appointments"]
    assert collection.only_call.args == ({"batch_id": "batch-1", "seq": {"$gte": 3, "$lt": 9}},)
    assert (collection.cursors[0].sorted_by, collection.cursors[0].limited_to) == ([("seq", 1)], 2)


async def test_count_batch_groups_by_status(db: FakeDatabase, repo: MongoRepository) -> None:
    """count_batch is one aggregation grouped by the normalization's status; no result is pending."""
    db["appointments"].reply([{"_id": "normalized", "count": 3}, {"_id": None, "count": 4}])
    assert await repo.count_batch("batch-1") == BatchCounts(total=7, normalized=3, failed=0, pending=4)
    assert db["appointments"].only_call.args == (
        [
            {"$match": {"batch_id": "batch-1"}},
            {"$group": {"_id": "$results.normalization.status", "count": {"$sum": 1}}},
        ],
    )


async def test_list_jobs_filters_and_sorts_newest_first(db: FakeDatabase, repo: MongoRepository) -> None:
    """list_jobs filters by status when given and sorts by enqueued_at then id, descending; a page
    after a position asks for what is older, or as old with a lower id."""
    at = datetime(2026, 12, 1, 10, tzinfo=UTC)
    await repo.list_jobs(status=JobStatus.RUNNING, limit=5)
    await repo.list_jobs()
    await repo.list_jobs(limit=3, before=(at, "normalize:b:1"))
    jobs = db["jobs"]
    after = {"$or": [{"enqueued_at": {"$lt": at}}, {"enqueued_at": at, "_id": {"$lt": "normalize:b:1"}}]}
    assert [call.args for call in jobs.calls] == [({"status": "running"},), ({},), (after,)]
    newest_first = [("enqueued_at", -1), ("_id", -1)]
    assert [(c.sorted_by, c.limited_to) for c in jobs.cursors] == [
        (newest_first, 5),
        (newest_first, 100),
        (newest_first, 3),
    ]


# errors


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection reset"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no servers"),
        ExecutionTimeout("operation exceeded time limit", code=50),
    ],
)
async def test_connection_errors_become_store_unavailable(
    db: FakeDatabase, repo: MongoRepository, error: Exception
) -> None:
    """Connection failures and timeouts are raised as StoreUnavailable, on reads and writes alike."""
    db["jobs"].reply(error, error)
    with pytest.raises(StoreUnavailable):
        await repo.get_job(JOB)
    with pytest.raises(StoreUnavailable):
        await repo.claim_job(JOB, JobClaim(worker_id="w", version="1", started_at=T0))
    db.command_replies.append(error)
    with pytest.raises(StoreUnavailable):
        await repo.ping()


async def test_other_mongo_errors_propagate(db: FakeDatabase, repo: MongoRepository) -> None:
    """A server-side refusal that is not about connectivity is not disguised as a transient error."""
    db["jobs"].reply(OperationFailure("not authorized", code=13))
    with pytest.raises(OperationFailure):
        await repo.get_job(JOB)


# the factory


def test_hosts_of_drops_credentials_path_and_options() -> None:
    """hosts_of keeps only the host list of a URL."""
    assert (
        hosts_of("mongodb://user:p%40ss@db1:27017,db2:27018/clinic?replicaSet=rs0") == "db1:27017,db2:27018"
    )
    assert (
        hosts_of("mongodb+srv://user:secret@cluster0.example.net/?retryWrites=true") == "cluster0.example.net"
    )
    assert hosts_of("mongodb://localhost") == "localhost"


async def test_factory_configures_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client gets the pool size and selection timeout; the database is the named one, not the URL's."""
    built: list[tuple[str, dict[str, Any]]] = []

    class RecordingClient:
        def __init__(self, url: str, **options: Any) -> None:
            built.append((url, options))

        def get_database(self, name: str) -> FakeDatabase:
            return FakeDatabase(name)

    monkeypatch.setattr(mongo_repository, "AsyncMongoClient", RecordingClient)
    repo = build_mongo_repository(
        "mongodb://app:secret@db1:27017/other", "clinic", 25, server_selection_timeout_ms=900
    )
    url, options = built[0]
    assert url == "mongodb://app:secret@db1:27017/other"
    assert options["maxPoolSize"] == 25 and options["serverSelectionTimeoutMS"] == 900
    assert options["tz_aware"] is True
    assert repo.identity() == "mongodb:db1:27017/clinic"


async def test_an_unreachable_server_is_store_unavailable_without_leaking_credentials() -> None:
    """With a real client and no server, ping raises StoreUnavailable; identity has no password."""
    # An unresolvable host (RFC 6761 `.invalid`), not a closed port: PyMongo 4.20 leaks the socket of
    # a connect that `close()` cancels (PYTHON-5867), which `filterwarnings = error` would report.
    repo = build_mongo_repository(
        "mongodb://app:s3cret@mongo.invalid:27017/other", "clinic", 5, server_selection_timeout_ms=200
    )
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await repo.ping()
        assert "s3cret" not in str(caught.value)
        assert repo.identity() == "mongodb:mongo.invalid:27017/clinic"
    finally:
        await repo.close()


async def test_identity_defaults_to_the_client_seed_list() -> None:
    """Without an explicit host list, identity() names the client's seeds, in a stable order."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://db1:27017,db2:27018/", connect=False
    )
    try:
        repo = MongoRepository(client.get_database("clinic"))
        assert repo.identity() == "mongodb:db1:27017,db2:27018/clinic"
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mongodb://db1:27017,db2:27017/?replicaSet=rs0", {"w": "majority"}),
        ("mongodb://db1:27017/?w=1", {"w": 1}),  # an explicit choice in the URL is kept
    ],
)
async def test_writes_wait_for_a_majority_unless_the_url_says_otherwise(
    url: str, expected: dict[str, Any]
) -> None:
    """A write a failover could roll back would be a job lost or run twice: majority by default."""
    repo = build_mongo_repository(url, "clinic", 5)
    try:
        assert repo._database.client.write_concern.document == expected
    finally:
        await repo.close()
