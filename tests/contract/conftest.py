"""The stores every `Repository` adapter is checked against, and builders of the models they hold.

SQLite always runs (a file under tmp_path); MongoDB runs when `MONGODB_TEST_URL` names a real server,
each test in a database of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from src.application.ports import Repository
from src.domain.addresses import AddressSource, NormalizedAddress
from src.domain.appointments import Appointment, NormalizationResult, NormalizationStatus, Provenance
from src.domain.documents import DocumentKind, NormalizedDocument
from src.domain.jobs import JobEnvelope, JobRecord, job_id_for
from src.infrastructure.mongo_repository import build_mongo_repository
from src.infrastructure.sqlite_repository import SQLiteRepository

MONGODB_TEST_URL = os.environ.get("MONGODB_TEST_URL")
MONGODB_SKIP_REASON = (
    "MONGODB_TEST_URL is not set: the MongoDB contract tests need a real MongoDB server at that URL"
)
# Millisecond precision: what every store keeps (BSON dates are milliseconds).
T0 = datetime(2026, 3, 2, 12, 30, 15, 123000, tzinfo=UTC)


@dataclass
class Store:
    """One store under test; `open()` returns a new, not yet initialized repository on it.
    `location`: the SQLite file's path, or the MongoDB database's name (at `MONGODB_TEST_URL`)."""

    kind: str
    factory: Callable[[], Repository]
    location: str
    opened: list[Repository] = field(default_factory=list)

    def open(self) -> Repository:
        repository = self.factory()
        self.opened.append(repository)
        return repository


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "mongodb",
            marks=[
                pytest.mark.mongodb,
                pytest.mark.skipif(MONGODB_TEST_URL is None, reason=MONGODB_SKIP_REASON),
            ],
        ),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind: str = request.param
    if kind == "sqlite":
        path = str(tmp_path / "store.sqlite3")
        under_test = Store(kind, lambda: SQLiteRepository(path), path)
        database_name = ""
    else:
        assert MONGODB_TEST_URL is not None
        url = MONGODB_TEST_URL
        database_name = f"contract_{uuid.uuid4().hex[:16]}"
        under_test = Store(
            kind,
            lambda: build_mongo_repository(url, database_name, 10, server_selection_timeout_ms=5000),
            database_name,
        )
    try:
        yield under_test
    finally:
        for repository in under_test.opened:
            await repository.close()
        if database_name:
            client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_TEST_URL)
            try:
                await client.drop_database(database_name)
            finally:
                await client.close()


@pytest.fixture
async def repo(store: Store) -> Repository:
    """An initialized repository on the store (closed by the `store` fixture)."""
    repository = store.open()
    await repository.init()
    return repository


def make_appointment(number: int, *, batch_id: str | None = "batch-1", **changes: object) -> Appointment:
    values: dict[str, object] = {
        "id": f"appt-{number}",
        "batch_id": batch_id,
        "seq": number,
        "paciente": f"Paciente {number}",
        "documento": "529.982.247-25",
        "endereco": "R. Augusta 123 ap 4, Consolação, São Paulo SP 01305000",
        "data_hora": T0 + timedelta(days=number),
        "created_at": T0,
    }
    values.update(changes)
    return Appointment.model_validate(values)


def make_job(
    logical_key: str, generation: int = 1, *, enqueued_at: datetime = T0, **changes: object
) -> JobRecord:
    envelope = JobEnvelope(task="normalize_appointment", logical_key=logical_key, generation=generation)
    values: dict[str, object] = {
        "job_id": job_id_for(logical_key, generation),
        "logical_key": logical_key,
        "generation": generation,
        "task": "normalize_appointment",
        "queue": "normalization",
        "envelope": envelope,
        "enqueued_at": enqueued_at,
    }
    values.update(changes)
    return JobRecord.model_validate(values)


def make_provenance(job_id: str, attempt: int, worker_id: str = "worker-a") -> Provenance:
    return Provenance(
        job_id=job_id,
        attempt=attempt,
        worker_id=worker_id,
        version="1.2.3",
        started_at=T0,
        finished_at=T0 + timedelta(milliseconds=250),
        duration_ms=250,
    )


def make_result(
    appointment_id: str,
    job_id: str,
    attempt: int,
    status: NormalizationStatus = NormalizationStatus.NORMALIZED,
    worker_id: str = "worker-a",
) -> NormalizationResult:
    normalized = status is NormalizationStatus.NORMALIZED
    return NormalizationResult(
        appointment_id=appointment_id,
        status=status,
        documento_normalizado=NORMALIZED_DOCUMENT if normalized else None,
        endereco_normalizado=NORMALIZED_ADDRESS if normalized else None,
        error=None if normalized else "endereco: cidade is missing",
        provenance=make_provenance(job_id, attempt, worker_id),
    )


NORMALIZED_DOCUMENT = NormalizedDocument(
    kind=DocumentKind.CPF, canonical="52998224725", formatted="529.982.247-25", valid=True
)
NORMALIZED_ADDRESS = NormalizedAddress(
    logradouro="Rua Augusta",
    numero="123",
    complemento="Apto 4",
    bairro="Consolação",
    cidade="São Paulo",
    uf="SP",
    cep="01305-000",
    formatted="Rua Augusta, 123, Apto 4 - Consolação, São Paulo - SP, 01305-000",
    confidence=0.875,
    source=AddressSource.LLM,
)
