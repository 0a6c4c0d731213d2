"""Appointments, import batches and the provenance of their normalization (pure, no I/O)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field
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
    documento_normalizado: NormalizedDocument | None = None
    endereco_normalizado: NormalizedAddress | None = None
    normalization_status: NormalizationStatus = NormalizationStatus.PENDING
    normalization_error: str | None = None
    provenance: Provenance | None = None


class NormalizationResult(BaseModel):
    """What a job writes back for one appointment."""

    appointment_id: str
    status: NormalizationStatus
    documento_normalizado: NormalizedDocument | None = None
    endereco_normalizado: NormalizedAddress | None = None
    error: str | None = None
    provenance: Provenance


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
