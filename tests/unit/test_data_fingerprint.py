"""The data fingerprint names the data, not the route to it (issue: workers fenced themselves on
harmless URL differences): one store reached by another path, host order, an SRV URL or a private
endpoint gives one fingerprint; another store, or another Redis database, gives another."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from src.domain.workers import data_fingerprint
from src.infrastructure.mongo_repository import MongoRepository
from src.infrastructure.sqlite_repository import SQLiteRepository
from src.infrastructure.store_codec import SCHEMA_VERSION
from tests.unit.test_mongo_repository import FakeDatabase, update_result


async def test_a_relative_and_an_absolute_sqlite_path_to_one_file_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`var/clinic.sqlite3` from the checkout and its absolute path are one store; a copy-free
    other file is another."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("var")
    relative, absolute = (
        SQLiteRepository("var/clinic.sqlite3"),
        SQLiteRepository(str(tmp_path / "var" / "clinic.sqlite3")),
    )
    other = SQLiteRepository(str(tmp_path / "other.sqlite3"))
    try:
        for repo in (relative, absolute, other):
            await repo.init()
        assert relative.data_key() == absolute.data_key() != other.data_key()
        assert data_fingerprint(0, relative.data_key()) == data_fingerprint(0, absolute.data_key())
        assert data_fingerprint(0, relative.data_key()) != data_fingerprint(1, relative.data_key())
        assert data_fingerprint(0, relative.data_key()) != data_fingerprint(0, other.data_key())
    finally:
        for repo in (relative, absolute, other):
            await repo.close()


def mongo(hosts: str, store_id: str) -> MongoRepository:
    db = FakeDatabase()
    marker = {"_id": "store", "store_id": store_id, "schema_version": SCHEMA_VERSION}
    db.get_collection("meta").reply(marker, update_result(1), update_result(0), marker)
    return MongoRepository(cast(AsyncDatabase[dict[str, Any]], db), hosts=hosts)


@pytest.mark.parametrize(
    ("route_a", "route_b"),
    [
        ("db1:27017,db2:27017", "db2:27017,db1:27017"),  # the same replica set, listed another way
        ("cluster0.abcde.mongodb.net", "cluster0-shard-00-00.abcde.mongodb.net:27017"),  # SRV vs seed list
        ("cluster0.abcde.mongodb.net", "pl-0-us-east-1.abcde.mongodb.net:1024"),  # a private endpoint
    ],
)
async def test_routes_to_one_mongodb_store_match(route_a: str, route_b: str) -> None:
    """Whatever the hosts say, the store's own id decides: one fingerprint, two identities."""
    a, b, elsewhere = mongo(route_a, "abc123"), mongo(route_b, "abc123"), mongo(route_a, "zzz999")
    for repo in (a, b, elsewhere):
        await repo.init()
    assert a.identity() != b.identity()  # shown to people as reached
    assert data_fingerprint(0, a.data_key()) == data_fingerprint(0, b.data_key())
    assert data_fingerprint(0, a.data_key()) != data_fingerprint(0, elsewhere.data_key())


def test_data_key_needs_init() -> None:
    """Before init() the store's id is unknown: asking is a bug, said plainly."""
    with pytest.raises(RuntimeError, match="init"):
        SQLiteRepository("/nonexistent/x.sqlite3").data_key()
