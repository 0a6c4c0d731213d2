"""The in-place migration of a MongoDB store an older release wrote (its `meta` marker says which).

Schema 2 → 3 (results by kind): an appointment's normalization was the document's own fields
(`normalization_status`, `documento_normalizado`, `endereco_normalizado`, `normalization_error`,
`provenance`); it becomes `results.normalization`, next to the other kinds' results, which were
already there. One update pipeline, run by the server, filtered on the documents that still have the
old fields: each document is migrated atomically, and a run that was interrupted (a crash, a start-up
timeout) is continued by the next start, as the marker is raised only once every document is done.
"""

from __future__ import annotations

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from src.domain.appointments import NORMALIZATION
from src.infrastructure.mongo_common import Document

RESULTS_BY_KIND = 3
OLD_NORMALIZATION_FIELDS = [
    "normalization_status",
    "documento_normalizado",
    "endereco_normalizado",
    "normalization_error",
    "provenance",
]
# Indexes on the old fields, replaced by ones on `results.normalization` (other names: an index of
# the same name with other keys cannot be created while the old one exists).
OLD_APPOINTMENT_INDEXES = ("batch_status", "rules_fallback")
NOT_MIGRATED: Document = {"normalization_status": {"$exists": True}}
_NORMALIZATION = f"results.{NORMALIZATION}"
_OLD_NORMALIZATION: Document = {
    "status": "$normalization_status",
    "data": {
        "documento_normalizado": "$documento_normalizado",
        "endereco_normalizado": "$endereco_normalizado",
    },
    "error": "$normalization_error",
    "provenance": "$provenance",
}
TO_RESULTS_BY_KIND: list[Document] = [
    {
        "$set": {
            _NORMALIZATION: {
                "$cond": {
                    # a result a new release already wrote there (during a rolling start) is kept
                    "if": {"$ne": [{"$type": f"${_NORMALIZATION}"}, "missing"]},
                    "then": f"${_NORMALIZATION}",
                    # without provenance it was never normalized (pending): no result at all
                    "else": {
                        "$cond": {
                            "if": {"$eq": [{"$type": "$provenance"}, "object"]},
                            "then": _OLD_NORMALIZATION,
                            "else": "$$REMOVE",
                        }
                    },
                }
            }
        }
    },
    {"$unset": OLD_NORMALIZATION_FIELDS},
]
_INDEX_NOT_FOUND = 27


async def migrate_appointments(appointments: AsyncCollection[Document], found_version: int) -> None:
    """Bring the appointments of a store at schema `found_version` to this release's layout (nothing
    to do for a new store, or one at the current version)."""
    if found_version >= RESULTS_BY_KIND:
        return
    await appointments.update_many(NOT_MIGRATED, TO_RESULTS_BY_KIND)
    for name in OLD_APPOINTMENT_INDEXES:
        try:
            await appointments.drop_index(name)
        except OperationFailure as exc:
            if exc.code != _INDEX_NOT_FOUND:  # dropped already, by an earlier or concurrent run
                raise
