"""The MongoDB commands of the migration to results by kind (schema 2 → 3), against the recording
fake: what runs, in which order, and only when the marker asks for it. What the pipeline does to real
documents is the contract suite's (`tests/contract/test_store_migration.py`, `MONGODB_TEST_URL`)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from src.errors import PolicyError
from src.infrastructure.mongo_migration import NOT_MIGRATED, OLD_NORMALIZATION_FIELDS, TO_RESULTS_BY_KIND
from src.infrastructure.mongo_repository import MongoRepository
from tests.unit.test_mongo_repository import FakeDatabase, update_result


def store_at(version: int) -> tuple[FakeDatabase, MongoRepository]:
    """A store whose marker says `version`; init's own meta calls answered."""
    db = FakeDatabase()
    marker = {"_id": "store", "store_id": "abc123", "schema_version": version}
    db.get_collection("meta").reply(
        marker, update_result(0), update_result(1), {**marker, "schema_version": 3}
    )
    return db, MongoRepository(cast(AsyncDatabase[dict[str, Any]], db), hosts="db1:27017")


async def test_a_schema_2_store_is_migrated_before_its_indexes_and_its_marker() -> None:
    """Schema 2: one update pipeline on the documents that still have the old fields, then the old
    indexes dropped, then the new ones built; the marker is raised last, so a migration cut short is
    run again by the next start."""
    db, repo = store_at(2)
    await repo.init()

    migrate, drop_status, drop_fallback, create = db["appointments"].calls
    assert (migrate.method, migrate.args) == ("update_many", (NOT_MIGRATED, TO_RESULTS_BY_KIND))
    assert NOT_MIGRATED == {"normalization_status": {"$exists": True}}
    assert [(drop_status.method, drop_status.args), (drop_fallback.method, drop_fallback.args)] == [
        ("drop_index", ("batch_status",)),
        ("drop_index", ("rules_fallback",)),
    ]
    assert create.method == "create_indexes"
    read, upsert, raise_version, _ = db["meta"].calls
    assert read.method == "find_one" and upsert.kwargs == {"upsert": True}
    assert raise_version.args[1] == {"$set": {"schema_version": 3}}


def test_the_pipeline_moves_the_old_fields_under_the_normalization_kind() -> None:
    """The pipeline builds `results.normalization` from the old fields, keeps one already there,
    gives none to a never-normalized appointment, then removes every old field."""
    set_stage, unset_stage = TO_RESULTS_BY_KIND
    kind = set_stage["$set"]["results.normalization"]["$cond"]
    assert kind["if"] == {"$ne": [{"$type": "$results.normalization"}, "missing"]}
    assert kind["then"] == "$results.normalization"
    from_old = kind["else"]["$cond"]
    assert from_old["if"] == {"$eq": [{"$type": "$provenance"}, "object"]} and from_old["else"] == "$$REMOVE"
    assert from_old["then"] == {
        "status": "$normalization_status",
        "data": {
            "documento_normalizado": "$documento_normalizado",
            "endereco_normalizado": "$endereco_normalizado",
        },
        "error": "$normalization_error",
        "provenance": "$provenance",
    }
    assert unset_stage == {"$unset": OLD_NORMALIZATION_FIELDS}
    assert set(OLD_NORMALIZATION_FIELDS) == {
        "normalization_status", "documento_normalizado", "endereco_normalizado", "normalization_error",
        "provenance",
    }  # fmt: skip


async def test_a_store_at_this_schema_is_not_scanned() -> None:
    """A migrated store: no update, no index dropped; only the indexes are ensured."""
    db, repo = store_at(3)
    await repo.init()
    assert [call.method for call in db["appointments"].calls] == ["create_indexes"]


async def test_a_new_store_has_nothing_to_migrate() -> None:
    """No marker yet: a new store; nothing is scanned or dropped."""
    db = FakeDatabase()
    db.get_collection("meta").reply(None, update_result(0, upserted_id="store"), update_result(0),
                                    {"_id": "store", "store_id": "abc123", "schema_version": 3})  # fmt: skip
    await MongoRepository(cast(AsyncDatabase[dict[str, Any]], db), hosts="db1:27017").init()
    assert [call.method for call in db["appointments"].calls] == ["create_indexes"]


async def test_an_index_dropped_already_is_fine_any_other_failure_is_not() -> None:
    """An old index already gone (an earlier or concurrent run) is skipped; another failure of the
    drop propagates, and the marker stays at 2."""
    db, repo = store_at(2)
    db["appointments"].reply(None, OperationFailure("index not found", code=27))
    await repo.init()
    assert [call.method for call in db["appointments"].calls][-1] == "create_indexes"

    db, repo = store_at(2)
    db["appointments"].reply(None, OperationFailure("not authorized", code=13))
    with pytest.raises(OperationFailure):
        await repo.init()
    assert [call.method for call in db["meta"].calls] == ["find_one"]


async def test_a_store_a_newer_release_migrated_is_refused_before_any_write() -> None:
    """A marker above this release's schema: refused, nothing sent to the appointments."""
    db, repo = store_at(4)
    with pytest.raises(PolicyError, match="newer release"):
        await repo.init()
    assert db["appointments"].calls == []
