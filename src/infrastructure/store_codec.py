"""How domain models are laid out in the stores; shared by the SQLite and MongoDB adapters.

SQLite rows keep the columns that are queried or changed in place (ids, batch_id + seq, statuses,
the fencing fields, the job ledger's mutable fields) and the rest of the model as a JSON column; an
appointment's results are rows of their own, one per (appointment, job kind) (`sqlite_schema`).
MongoDB documents are the model itself (`id` / `job_id` stored as `_id`, the results by kind under
`results`), datetimes as BSON dates.
Both return aware UTC datetimes (naive input is taken as UTC); SQLite keeps microseconds, BSON
milliseconds, so callers must not rely on sub-millisecond precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from src.domain.appointments import (
    NORMALIZATION_VIEWS,
    Appointment,
    BatchCounts,
    KindResult,
    NormalizationResult,
    NormalizationStatus,
    Provenance,
)
from src.domain.jobs import JobEnvelope, JobRecord, JobStatus
from src.errors import PolicyError

# 2: the ledger's lease_losses and superseded_by; 3: results by (appointment, job kind)
SCHEMA_VERSION = 3
TERMINAL_STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus if s.terminal)
# Runs that ended (what `finished_since` lists): a superseded generation was replaced, not finished.
FINISHED_STATUSES: tuple[str, ...] = tuple(s for s in TERMINAL_STATUSES if s != JobStatus.SUPERSEDED)

_RESULT_JSON = TypeAdapter(dict[str, Any] | None)
_TEXT_JSON = json.JSONEncoder(
    ensure_ascii=False
).encode  # one encoder: json.dumps(…, ensure_ascii=False) makes one per call
_ZERO = timedelta(0)
ModelT = TypeVar("ModelT", bound=BaseModel)


def to_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is UTC:  # the usual case (datetime.now(UTC)): no conversion to make
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime | None) -> str | None:
    """Fixed-width ISO text in UTC, so that text order is time order (SQLite columns)."""
    return None if value is None else to_utc(value).isoformat(timespec="microseconds")


def json_time(value: datetime) -> str:
    """A time as the models' JSON holds it (UTC, `Z`), for in-place edits of a JSON column."""
    return to_utc(value).isoformat().replace("+00:00", "Z")


def with_utc(model: ModelT, *names: str) -> ModelT:
    """`model` with the named datetime fields in UTC (naive ones taken as UTC, as BSON does);
    `model` itself when they already are, which is the common and cheap case."""
    changes: dict[str, datetime] = {}
    for name in names:
        value = getattr(model, name)
        if value is not None and (value.tzinfo is None or value.utcoffset() != _ZERO):
            changes[name] = to_utc(value)
    return model.model_copy(update=changes) if changes else model


def check_schema_version(found: int, store: str) -> None:
    """Refuse a store that a newer release has migrated: its records may hold statuses and fields
    this code cannot read or would mishandle (a rolling deploy that runs both must retire the old
    workers first: docs/operations.md)."""
    if found > SCHEMA_VERSION:
        raise PolicyError(
            f"store {store} has schema version {found}, written by a newer release; this code knows "
            f"version {SCHEMA_VERSION}: run the newer release (or retire this one)"
        )


def lost_lease_message(max_losses: int) -> str:
    """The ledger's message on a job put back after a lost lease."""
    return (
        "its worker stopped renewing the lease mid-run (died or froze): re-delivered with backoff, "
        f"quarantined after {max_losses} such losses"
    )


def quarantine_message(max_losses: int) -> str:
    """The ledger's message on a job quarantined after `max_losses` lost leases."""
    return (
        f"quarantined: its workers lost the lease {max_losses} times while running it (a crash loop: "
        "out of memory, a crash in native code, a kill); worker_id names the last holder. Fix the "
        "cause, then retry it"
    )


def check_provenance(provenances: Iterable[tuple[str, Provenance]], job_id: str, attempt: int) -> None:
    """Refuse results whose provenance, given as (appointment id, provenance), names another run than
    the one writing them."""
    for appointment_id, provenance in provenances:
        if provenance.job_id != job_id or provenance.attempt != attempt:
            raise ValueError(f"provenance of {appointment_id!r} is not run {job_id!r}#{attempt}")


def batch_counts(by_status: Iterable[tuple[str | None, int]]) -> BatchCounts:
    """Fold (normalization status, count) pairs into `BatchCounts`; None is pending (no result)."""
    counts = dict.fromkeys(NormalizationStatus, 0)
    for status, count in by_status:
        counts[NormalizationStatus(status or NormalizationStatus.PENDING)] += count
    return BatchCounts(
        total=sum(counts.values()),
        normalized=counts[NormalizationStatus.NORMALIZED],
        failed=counts[NormalizationStatus.FAILED],
        pending=counts[NormalizationStatus.PENDING],
    )


# --- SQLite rows -------------------------------------------------------------------------------


_BODY_EXCLUDES = {"id", "batch_id", "seq", "results", *NORMALIZATION_VIEWS}

APPOINTMENT_COLUMNS = "id, batch_id, seq, body"
# An appointment's results by kind, as one JSON object (NULL when it has none); pasted together, as
# each body is JSON already (json_group_object would parse every one again).
_RESULTS_OF_ROW = """(
    SELECT '{' || group_concat(json_quote(kind) || ':' || appointment_results.body, ',') || '}'
    FROM appointment_results WHERE appointment_id = appointments.id)"""
APPOINTMENT_SELECT = f"appointments.id, appointments.batch_id, seq, appointments.body, {_RESULTS_OF_ROW}"
RESULT_COLUMNS = "appointment_id, kind, batch_id, status, job_id, attempt, body"
JOB_COLUMNS = (
    "job_id, logical_key, generation, task, queue, status, attempt, app_failures, interruptions,"
    " worker_id, version, enqueued_at, started_at, heartbeat_at, finished_at, duration_ms, progress,"
    " error_category, error_message, result, envelope, lease_losses, superseded_by"
)
_JOB_COLUMN_NAMES = [name.strip() for name in JOB_COLUMNS.split(",")]


def appointment_row(appointment: Appointment) -> tuple[Any, ...]:
    """The values of `APPOINTMENT_COLUMNS` for an appointment (its results: `result_rows`)."""
    appointment = with_utc(appointment, "data_hora", "created_at")
    body = appointment.model_dump_json(exclude=_BODY_EXCLUDES)
    return appointment.id, appointment.batch_id, appointment.seq, body


def result_rows(appointment: Appointment) -> list[tuple[Any, ...]]:
    """The values of `RESULT_COLUMNS` for each of an appointment's results."""
    return [
        (appointment.id, kind, appointment.batch_id, result.status, result.provenance.job_id,
         result.provenance.attempt, kind_result_json(result))
        for kind, result in appointment.results.items()
    ]  # fmt: skip


def kind_result_json(result: KindResult) -> str:
    """A kind's result as its row's body, the provenance's times in UTC."""
    provenance = with_utc(result.provenance, "started_at", "finished_at")
    if provenance is not result.provenance:
        result = result.model_copy(update={"provenance": provenance})
    return result.model_dump_json()


def checked_kind(kind: str) -> str:
    """`kind`, a job name: an identifier, so a safe MongoDB field name (`results.<kind>`) too;
    anything else is refused, in both stores alike."""
    if not kind.isidentifier():
        raise ValueError(f"a job kind is an identifier, got {kind!r}")
    return kind


def appointment_from_row(row: Sequence[Any]) -> Appointment:
    """Inverse of `appointment_row` and `result_rows`, from a row of `APPOINTMENT_SELECT`: one JSON
    text, the body's members and the columns', parsed by pydantic at once (a quarter faster than
    json.loads, then validating the dicts)."""
    appointment_id, batch_id, seq, body, results = row
    return Appointment.model_validate_json(
        f'{body[:-1]},"results":{results or "{}"},"id":{_TEXT_JSON(appointment_id)},'
        f'"batch_id":{_text(batch_id)},"seq":{int(seq)}}}'
    )


def normalization_write(result: NormalizationResult) -> tuple[Any, ...]:
    """(appointment id, status, job id, attempt, body) of one normalization result; the body is its
    `kind_result()`'s JSON, assembled from its parts' (a chunk's hot path: 6 µs a result, against
    11 µs to build a model of it and dump that)."""
    provenance = with_utc(result.provenance, "started_at", "finished_at")
    status = result.status.value
    body = (
        f'{{"status":{_text(status)},"data":{{"documento_normalizado":{_model(result.documento_normalizado)},'
        f'"endereco_normalizado":{_model(result.endereco_normalizado)}}},"error":{_text(result.error)},'
        f'"provenance":{provenance.model_dump_json()}}}'
    )
    return result.appointment_id, status, provenance.job_id, provenance.attempt, body


def _model(model: BaseModel | None) -> str:
    return "null" if model is None else model.model_dump_json()


def _text(text: str | None) -> str:
    return "null" if text is None else _TEXT_JSON(text)


def kind_result_write(appointment_id: str, result: KindResult) -> tuple[Any, ...]:
    """`normalization_write` of any kind's result."""
    provenance = result.provenance
    return appointment_id, result.status, provenance.job_id, provenance.attempt, kind_result_json(result)


def job_row(record: JobRecord) -> tuple[Any, ...]:
    """The values of `JOB_COLUMNS` for a ledger record."""
    return (
        record.job_id,
        record.logical_key,
        record.generation,
        record.task,
        record.queue,
        record.status.value,
        record.attempt,
        record.app_failures,
        record.interruptions,
        record.worker_id,
        record.version,
        iso_utc(record.enqueued_at),
        iso_utc(record.started_at),
        iso_utc(record.heartbeat_at),
        iso_utc(record.finished_at),
        record.duration_ms,
        record.progress.model_dump_json(),
        record.error_category.value if record.error_category else None,
        record.error_message,
        result_json(record.result),
        record.envelope.model_dump_json(),
        record.lease_losses,
        record.superseded_by,
    )


def queued_job_row(envelope: JobEnvelope, queue: str, enqueued_at: str, progress: str) -> tuple[Any, ...]:
    """`job_row` of a freshly enqueued job's record, from its envelope (queue, time and progress
    already in their column form): the bulk-enqueue path, about ten times cheaper."""
    return (
        envelope.job_id,
        envelope.logical_key,
        envelope.generation,
        envelope.task,
        queue,
        "queued",
        0,
        0,
        0,
        None,
        None,
        enqueued_at,
        None,
        None,
        None,
        None,
        progress,
        None,
        None,
        None,
        envelope.model_dump_json(),
        0,
        None,
    )


def job_from_row(row: Sequence[Any]) -> JobRecord:
    """Inverse of `job_row`."""
    data = dict(zip(_JOB_COLUMN_NAMES, row, strict=True))
    data["envelope"] = json.loads(data["envelope"])
    data["progress"] = json.loads(data["progress"])
    data["result"] = None if data["result"] is None else json.loads(data["result"])
    return JobRecord.model_validate(data)


def result_json(result: dict[str, Any] | None) -> str | None:
    """A job result as JSON text (datetimes and other pydantic-known types allowed)."""
    return None if result is None else _RESULT_JSON.dump_json(result).decode()


# --- MongoDB documents -------------------------------------------------------------------------


def appointment_doc(appointment: Appointment) -> dict[str, Any]:
    """The document of an appointment, without `_id` (the caller keys it); its results by kind are
    its `results`."""
    return appointment.model_dump(exclude={"id", *NORMALIZATION_VIEWS})


def appointment_from_doc(doc: Mapping[str, Any]) -> Appointment:
    return Appointment.model_validate({**doc, "id": doc["_id"]})


def normalization_doc(result: NormalizationResult) -> dict[str, Any]:
    """The normalization kind's result as `results.normalization` holds it (the `KindResult`)."""
    return {
        "status": result.status.value,
        "data": {
            "documento_normalizado": _dump(result.documento_normalizado),
            "endereco_normalizado": _dump(result.endereco_normalizado),
        },
        "error": result.error,
        "provenance": result.provenance.model_dump(),
    }


def job_doc(record: JobRecord) -> dict[str, Any]:
    """The document of a ledger record, without `_id` (the caller keys it)."""
    return record.model_dump(exclude={"job_id"})


def job_from_doc(doc: Mapping[str, Any]) -> JobRecord:
    return JobRecord.model_validate({**doc, "job_id": doc["_id"]})


def _dump(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json")
