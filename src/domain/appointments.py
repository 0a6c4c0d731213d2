"""Appointments, import batches, and the results job kinds record for them, each with its own
provenance (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, computed_field
from uuid6 import uuid7

from src.domain.addresses import NormalizedAddress
from src.domain.documents import NormalizedDocument


class NormalizationStatus(StrEnum):
    PENDING = "pending"
    NORMALIZED = "normalized"
    FAILED = "failed"


class Provenance(BaseModel):
    """Which job run wrote a normalization, on which worker and code version, and when."""

    job_id: str
    attempt: int
    worker_id: str
    version: str
    started_at: datetime
    finished_at: datetime
    duration_ms: int


# The job kind whose result is the normalization itself (`documento_normalizado`,
# `endereco_normalizado`, the status): a kind is named after the job that writes it
# (`renormalize_addresses`), but two jobs write this one, `normalize_appointment` and
# `normalize_batch_chunk` (one appointment, or a batch's rows by chunks), and either may overwrite
# the other's (a later generation, a re-import), so they share one kind, named after their queue.
NORMALIZATION = "normalization"


class KindResult(BaseModel):
    """What one job kind recorded for an appointment, with its own provenance: one per (appointment,
    kind), so no kind overwrites another's. `status` is the kind's own word for the outcome (the
    normalization's: `normalized` or `failed`), `data` its result as JSON, `error` why it failed."""

    status: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    provenance: Provenance


def local_moment(value: datetime, zone: tzinfo) -> datetime:
    """The one time rule of every input path (JSON, spreadsheet): a time without a zone is a wall
    clock time in `APP_TIMEZONE` (`zone`); a time with an offset is kept as given."""
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def retimed_as_local(stored: datetime, zone: tzinfo) -> datetime:
    """A time that was stored by taking a zone-less input as UTC, as it should have been taken: the
    same wall clock time in `zone` (the one-off correction of `python -m src.cli retime-naive`)."""
    return stored.astimezone(UTC).replace(tzinfo=zone)


def lone_surrogate_at(text: str) -> int | None:
    """The index of the first unpaired UTF-16 surrogate (`"\\ud800"` in JSON), which is not text and
    cannot be stored; None when there is none."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            return index
    return None


@dataclass(frozen=True)
class FieldLimits:
    """The longest text accepted per appointment field, in characters (MAX_*_CHARS settings)."""

    paciente: int = 200
    documento: int = 32
    endereco: int = 500
    telefone: int = 40
    email: int = 254

    def first_exceeded(self, values: dict[str, str | None]) -> tuple[str, int, int] | None:
        """(field, limit, length) of the first field longer than its limit, or None."""
        for name, value in values.items():
            limit = getattr(self, name, None)
            if limit is not None and value is not None and len(value) > limit:
                return name, limit, len(value)
        return None


def new_appointment_id() -> str:
    """A new appointment id: a UUIDv7 (RFC 9562) as 32 hex digits. Time-ordered, so the rows and
    ledger records of appointments created one after another land next to each other in the
    stores' B-trees (random UUIDv4 ids scatter every insert: a bulk enqueue of 50,000 spent three
    times as long in the ledger's indexes)."""
    return uuid7().hex


class Appointment(BaseModel):
    id: str
    batch_id: str | None = None
    seq: int = 0  # row order inside its batch; the cursor of chunk jobs
    paciente: str
    documento: str
    endereco: str
    data_hora: datetime
    telefone: str | None = None
    email: str | None = None
    created_at: datetime
    results: dict[str, KindResult] = Field(default_factory=dict)  # by job kind

    # The normalization as clients read it before results were kept by kind: views of
    # `results["normalization"]`, pending (all None) while there is none.

    @computed_field  # type: ignore[prop-decorator]
    @property
    def documento_normalizado(self) -> NormalizedDocument | None:
        value = self._normalization_data("documento_normalizado")
        return None if value is None else NormalizedDocument.model_validate(value)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def endereco_normalizado(self) -> NormalizedAddress | None:
        value = self._normalization_data("endereco_normalizado")
        return None if value is None else NormalizedAddress.model_validate(value)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def normalization_status(self) -> NormalizationStatus:
        result = self.results.get(NORMALIZATION)
        status = None if result is None else result.status
        return NormalizationStatus.PENDING if status is None else NormalizationStatus(status)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def normalization_error(self) -> str | None:
        result = self.results.get(NORMALIZATION)
        return None if result is None else result.error

    @computed_field  # type: ignore[prop-decorator]
    @property
    def provenance(self) -> Provenance | None:
        """The normalization's provenance (each kind's own is in its result)."""
        result = self.results.get(NORMALIZATION)
        return None if result is None else result.provenance

    def _normalization_data(self, name: str) -> Any:
        result = self.results.get(NORMALIZATION)
        return None if result is None else result.data.get(name)


# The views above: never stored, never taken from input.
NORMALIZATION_VIEWS = frozenset(Appointment.model_computed_fields)


class NormalizationResult(BaseModel):
    """What a job writes back for one appointment."""

    appointment_id: str
    status: NormalizationStatus
    documento_normalizado: NormalizedDocument | None = None
    endereco_normalizado: NormalizedAddress | None = None
    error: str | None = None
    provenance: Provenance

    def kind_result(self) -> KindResult:
        """The result as the normalization kind's entry in `Appointment.results`."""
        return KindResult(
            status=self.status.value,
            data={
                "documento_normalizado": _json(self.documento_normalizado),
                "endereco_normalizado": _json(self.endereco_normalizado),
            },
            error=self.error,
            provenance=self.provenance,
        )


def _json(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json")


class Batch(BaseModel):
    id: str
    filename: str
    total: int
    rejected: int = 0
    chunk_size: int
    request_id: str | None = None
    created_at: datetime
    job_ids: list[str] = Field(default_factory=list)


class BatchCounts(BaseModel):
    total: int
    normalized: int
    failed: int
    pending: int
