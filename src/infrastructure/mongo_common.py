"""What the MongoDB store's modules share: the codec options, idempotent inserts, the mapping of
connection failures to `StoreUnavailable`, and keyset paging."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from src.errors import StoreUnavailable

Document = dict[str, Any]

DUPLICATE_KEY = 11000
# Datetimes come back aware, in UTC (BSON dates are UTC milliseconds).
CODEC_OPTIONS: CodecOptions[Document] = CodecOptions(document_class=dict, tz_aware=True, tzinfo=UTC)


def insert_op(key: str, doc: Document) -> UpdateOne:
    return UpdateOne({"_id": key}, {"$setOnInsert": doc}, upsert=True)


async def insert_many(collection: AsyncCollection[Document], ops: list[UpdateOne]) -> int:
    """Run idempotent upserts; return how many documents they created."""
    if not ops:
        return 0
    with unavailable_on_connection_errors():
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
def unavailable_on_connection_errors() -> Iterator[None]:
    try:
        yield
    except ConnectionFailure as exc:  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
        raise StoreUnavailable(f"MongoDB store unavailable: {type(exc).__name__}") from exc
    except PyMongoError as exc:
        if exc.timeout:  # an operation that ran out of its time budget (CSOT / maxTimeMS)
            raise StoreUnavailable(f"MongoDB store timed out: {type(exc).__name__}") from exc
        raise


def after_position(field: str, position: tuple[datetime, str]) -> dict[str, Any]:
    """Documents after `position` (a time and an id) in the newest-first, id-descending order."""
    at, key = position
    return {"$or": [{field: {"$lt": at}}, {field: at, "_id": {"$lt": key}}]}
