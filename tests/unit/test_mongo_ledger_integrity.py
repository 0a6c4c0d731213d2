"""The MongoDB commands behind the ledger's integrity operations (lost leases, jobs taken without a
run of ours, superseded generations, the fleet's workers), against the recording fake."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from src.domain.jobs import ErrorCategory, JobEnvelope, JobProgress, JobStatus
from src.domain.workers import WorkerRegistration
from src.infrastructure.mongo_repository import MongoRepository
from tests.contract.conftest import T0
from tests.unit.test_mongo_repository import (
    NOT_TERMINAL,
    FakeCursor,
    FakeDatabase,
    bulk_result,
    update_result,
)

JOB = "normalize:appt-1:1"


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def repo(db: FakeDatabase) -> MongoRepository:
    return MongoRepository(cast(AsyncDatabase[dict[str, Any]], db), hosts="db1:27017")


LEASE_FIELDS = {"status": True, "attempt": True, "lease_losses": True, "worker_id": True}


async def test_a_lost_lease_requeues_while_under_the_limit(db: FakeDatabase, repo: MongoRepository) -> None:
    """One conditioned update: running (at the attempt), fewer losses than the limit allows."""
    db["jobs"].reply({"_id": JOB, "status": "queued", "attempt": 4, "lease_losses": 1, "worker_id": "w-a"})
    lost = await repo.record_lost_lease(JOB, at=T0, max_losses=3, attempt=3)
    assert lost is not None and (lost.status, lost.attempt, lost.lease_losses, lost.worker_id) == (
        JobStatus.QUEUED,
        4,
        1,
        "w-a",
    )
    call = db["jobs"].only_call
    assert call.method == "find_one_and_update"
    assert call.args[0] == {
        "_id": JOB,
        "status": "running",
        "attempt": 3,
        "lease_losses": {"$not": {"$gte": 2}},
    }
    assert call.args[1]["$inc"] == {"attempt": 1, "lease_losses": 1}
    assert call.args[1]["$set"]["status"] == "queued" and call.args[1]["$set"]["error_category"] is None
    assert call.kwargs == {"projection": LEASE_FIELDS, "return_document": ReturnDocument.AFTER}


async def test_the_last_allowed_loss_quarantines(db: FakeDatabase, repo: MongoRepository) -> None:
    """When the requeue matches nothing, a second update quarantines a job that is still running."""
    db["jobs"].reply(
        None, {"_id": JOB, "status": "failed", "attempt": 7, "lease_losses": 3, "worker_id": "w-c"}
    )
    lost = await repo.record_lost_lease(JOB, at=T0, max_losses=3)
    assert lost is not None and lost.quarantined and lost.worker_id == "w-c"
    requeue, quarantine = db["jobs"].calls
    assert requeue.args[0] == {"_id": JOB, "status": "running", "lease_losses": {"$not": {"$gte": 2}}}
    assert quarantine.args[0] == {"_id": JOB, "status": "running"}
    assert quarantine.args[1]["$set"]["status"] == "failed"
    assert quarantine.args[1]["$set"]["error_category"] == "quarantined"
    assert quarantine.args[1]["$set"]["finished_at"] == T0

    db["jobs"].reply(None, None)
    assert await repo.record_lost_lease(JOB, at=T0, max_losses=3) is None  # not running


async def test_fail_waiting_job_matches_queued_or_interrupted_only(
    db: FakeDatabase, repo: MongoRepository
) -> None:
    """A job taken without a run of ours is failed only while it waits."""
    db["jobs"].reply(update_result(1), update_result(0))
    evidence = {"foreign_result": {"format": "json"}}
    args = {"at": T0, "category": ErrorCategory.FOREIGN_CONSUMER, "message": "taken", "result": evidence}
    assert await repo.fail_waiting_job(JOB, **args) is True  # type: ignore[arg-type]
    assert await repo.fail_waiting_job(JOB, **args) is False  # type: ignore[arg-type]
    assert db["jobs"].calls[0].args == (
        {"_id": JOB, "status": {"$in": ["queued", "interrupted"]}},
        {"$set": {"status": "failed", "finished_at": T0, "error_category": "foreign_consumer",
                  "error_message": "taken", "result": evidence}},
    )  # fmt: skip


async def test_a_later_generation_supersedes_the_earlier_ones(
    db: FakeDatabase, repo: MongoRepository
) -> None:
    """After the insert, waiting or running earlier generations end superseded; terminal ones are marked."""
    db["jobs"].reply(bulk_result(nUpserted=1), update_result(1), update_result(1))
    successor = JobEnvelope(task="normalize_appointment", logical_key="normalize:appt-1", generation=2)
    at = T0 + timedelta(minutes=1)
    await repo.create_queued_jobs([successor], "normalization", enqueued_at=at, progress=JobProgress())
    insert, ended, marked = db["jobs"].calls
    assert insert.method == "bulk_write"
    earlier = {"logical_key": "normalize:appt-1", "generation": {"$lt": 2}, "superseded_by": None}
    assert ended.method == marked.method == "update_many"
    assert ended.args == (
        {**earlier, "status": NOT_TERMINAL},
        {"$set": {"superseded_by": "normalize:appt-1:2", "status": "superseded", "finished_at": at}},
    )
    assert marked.args == (
        {**earlier, "status": {"$ne": "succeeded"}},
        {"$set": {"superseded_by": "normalize:appt-1:2"}},
    )


async def test_a_first_generation_supersedes_nothing(db: FakeDatabase, repo: MongoRepository) -> None:
    """The bulk path of an import (generation 1 only) is one insert, nothing more."""
    db["jobs"].reply(bulk_result(nUpserted=2))
    envelopes = [JobEnvelope(task="normalize_appointment", logical_key=f"normalize:appt-{n}") for n in (1, 2)]
    await repo.create_queued_jobs(envelopes, "normalization", enqueued_at=T0, progress=JobProgress())
    assert [c.method for c in db["jobs"].calls] == ["bulk_write"]


async def test_workers_are_upserted_and_looked_up_by_id(db: FakeDatabase, repo: MongoRepository) -> None:
    """register_worker upserts by id (seen_at refreshed); known_workers asks for the ids at once."""
    worker = WorkerRegistration(
        worker_id="h:1:abc",
        version="1",
        hostname="h",
        queue="jobs:v1:normalization",
        started_at=T0,
        seen_at=T0,
    )
    await repo.register_worker(worker)
    call = db["workers"].only_call
    assert call.args == (
        {"_id": "h:1:abc"},
        {"$setOnInsert": {"version": "1", "hostname": "h", "queue": "jobs:v1:normalization",
                          "started_at": T0}, "$set": {"seen_at": T0}},
    )  # fmt: skip
    assert call.kwargs == {"upsert": True}

    db["workers"].reply([{"_id": "h:1:abc"}])
    assert await repo.known_workers(["h:1:abc", "stranger"]) == {"h:1:abc"}
    lookup = db["workers"].calls[-1]
    assert lookup.args == ({"_id": {"$in": ["h:1:abc", "stranger"]}}, {"_id": 1})
    assert await repo.known_workers([]) == set()
    assert isinstance(db["workers"].cursors[-1], FakeCursor)


async def test_retime_pages_single_appointments_and_moves_each_once(
    db: FakeDatabase, repo: MongoRepository
) -> None:
    """Singles not yet retimed, by id after the last page; each update requires "not retimed yet"."""
    await repo.single_appointments_to_retime(after_id="a-2", limit=500)
    find = db["appointments"].only_call
    assert find.args[0] == {"batch_id": None, "retimed": {"$exists": False}, "_id": {"$gt": "a-2"}}
    assert db["appointments"].cursors[-1].limited_to == 500

    db["appointments"].reply(bulk_result(nMatched=1, nModified=1))
    assert await repo.retime_appointments([("a-1", T0)]) == 1
    (op,) = db["appointments"].calls[-1].args[0]
    assert op._filter == {"_id": "a-1", "retimed": {"$exists": False}}
    assert op._doc == {"$set": {"data_hora": T0, "retimed": True}}


async def test_rules_fallback_pages_follow_the_partial_index(db: FakeDatabase, repo: MongoRepository) -> None:
    """The query is the partial index's condition plus the page's id bound, sorted by id."""
    await repo.rules_fallback_appointments(after_id="a-2", limit=200)
    find = db["appointments"].only_call
    assert find.args[0] == {
        "results.normalization.data.endereco_normalizado.source": "rules_fallback",
        "_id": {"$gt": "a-2"},
    }
    assert db["appointments"].cursors[-1].limited_to == 200
