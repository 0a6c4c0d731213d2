"""Creating appointments and importing spreadsheets: store first, then enqueue normalization.

Appointments are stored at once (nothing accepted is lost even if Redis is down: the ledger keeps
the queued records for the reconciler); normalization follows in the worker. Imports are split into
chunk jobs of `chunk_size` rows, each resumable from its checkpoint.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, tzinfo

import structlog
from pydantic import BaseModel, EmailStr, Field, field_validator

from src.application.ports import IdempotencyStore, Repository
from src.application.services import idempotent
from src.application.services.spreadsheet_parser import ParsedSheet, RowError, parse_spreadsheet
from src.application.services.task_service import EnqueueResult, TaskService
from src.domain.appointments import (
    Appointment,
    Batch,
    BatchCounts,
    FieldLimits,
    local_moment,
    lone_surrogate_at,
    new_appointment_id,
)
from src.domain.jobs import JobEnvelope
from src.errors import InvalidInput, NotFound

# The jobs this service enqueues, by their registry names (src/jobs/registry.py): TaskService checks
# each name against the registry, and the worker validates each payload against the job's model.
NORMALIZE_APPOINTMENT = "normalize_appointment"
NORMALIZE_BATCH_CHUNK = "normalize_batch_chunk"

log = structlog.get_logger(__name__)


class NewAppointment(BaseModel):
    """A new appointment as the API receives it. `data_hora` without an offset is a wall clock time
    in `APP_TIMEZONE`; text fields are checked against the MAX_*_CHARS limits by the service."""

    paciente: str = Field(description="at most MAX_PACIENTE_CHARS characters (200 by default)")
    documento: str = Field(description="CPF or CNPJ; at most MAX_DOCUMENTO_CHARS characters (32)")
    endereco: str = Field(description="at most MAX_ENDERECO_CHARS characters (500)")
    data_hora: datetime = Field(
        description="ISO 8601; without an offset it is a wall clock time in APP_TIMEZONE (America/Sao_Paulo)"
    )
    telefone: str | None = Field(default=None, description="at most MAX_TELEFONE_CHARS characters (40)")
    email: EmailStr | None = Field(default=None, description="at most MAX_EMAIL_CHARS characters (254)")

    @field_validator("*", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        """JSON may carry an unpaired surrogate (`"\\ud800"`), which Python decodes but no store can
        encode: refused here, naming the field, instead of failing as the row is written."""
        if isinstance(value, str) and (at := lone_surrogate_at(value)) is not None:
            raise ValueError(f"contains an unpaired UTF-16 surrogate at character {at}, which is not text")
        return value


class CreatedAppointment(BaseModel):
    appointment_id: str
    job_id: str
    enqueue_status: str


class ImportReport(BaseModel):
    batch_id: str
    accepted: int
    rejected: int
    blank: int = 0  # empty rows, skipped: accepted + rejected + blank = the file's data rows
    errors: list[RowError]
    job_ids: list[str]


class BatchProgress(BaseModel):
    batch_id: str
    filename: str
    created_at: datetime
    total: int
    done: int
    failed: int
    pending: int
    rejected: int
    finished: bool


def normalize_key(appointment_id: str) -> str:
    return f"normalize:{appointment_id}"


def chunk_key(batch_id: str, seq_from: int) -> str:
    return f"batch:{batch_id}:{seq_from}"


class AppointmentService:
    def __init__(
        self,
        repository: Repository,
        tasks: TaskService,
        *,
        producer_version: str,
        chunk_size: int,
        max_import_rows: int,
        timezone: tzinfo,
        limits: FieldLimits | None = None,
    ) -> None:
        self._repository = repository
        self._tasks = tasks
        self._version = producer_version
        self._chunk_size = chunk_size
        self._max_rows = max_import_rows
        self._zone = timezone
        self._limits = limits or FieldLimits()

    @property
    def timezone(self) -> tzinfo:
        """`APP_TIMEZONE`: zone-less input times are in it, and answers give times in it."""
        return self._zone

    async def create(self, data: NewAppointment, *, request_id: str | None) -> CreatedAppointment:
        fields = {"paciente": data.paciente, "documento": data.documento, "endereco": data.endereco,
                  "telefone": data.telefone, "email": data.email}  # fmt: skip
        exceeded = self._limits.first_exceeded(fields)
        if exceeded is not None:
            name, limit, length = exceeded
            raise InvalidInput(
                f"{name} is {length} characters long, over its limit of {limit}",
                field=name,
                max_chars=limit,
            )
        appointment = Appointment(
            id=new_appointment_id(),
            paciente=data.paciente,
            documento=data.documento,
            endereco=data.endereco,
            data_hora=local_moment(data.data_hora, self._zone),
            telefone=data.telefone,
            email=data.email,
            created_at=datetime.now(UTC),
        )
        await self._repository.insert_appointments([appointment])
        result = await self.enqueue_normalization(appointment.id, request_id=request_id)
        log.info("appointment created", appointment_id=appointment.id, job_id=result.job_id)
        return CreatedAppointment(
            appointment_id=appointment.id, job_id=result.job_id, enqueue_status=result.status
        )

    async def enqueue_normalization(
        self, appointment_id: str, *, request_id: str | None, generation: int = 1
    ) -> EnqueueResult:
        envelope = JobEnvelope(
            task=NORMALIZE_APPOINTMENT,
            logical_key=normalize_key(appointment_id),
            generation=generation,
            ids={"appointment_id": appointment_id},
            request_id=request_id,
            producer_version=self._version,
        )
        return await self._tasks.enqueue(envelope)

    async def create_once(
        self,
        data: NewAppointment,
        *,
        request_id: str | None,
        idempotency: IdempotencyStore,
        scope: str,
        wait_s: float = 10.0,
    ) -> CreatedAppointment:
        """`create` at most once per idempotency scope: every request with the key gets the first
        one's answer (see `idempotent.once` for a different payload, and one still running)."""

        async def work() -> str:
            return (await self.create(data, request_id=request_id)).model_dump_json()

        answer = await idempotent.once(
            idempotency, scope, data.model_dump_json().encode(), work, wait_s=wait_s
        )
        return CreatedAppointment.model_validate_json(answer)

    async def import_once(
        self,
        content: bytes,
        filename: str,
        *,
        request_id: str | None,
        idempotency: IdempotencyStore,
        scope: str,
        wait_s: float = 0.0,
    ) -> ImportReport:
        """Import at most once per idempotency scope: a repeat with the same file gets the first
        one's report (same batch); with another file, 422; while the first still runs, 409."""

        async def work() -> str:
            return (await self.import_spreadsheet(content, filename, request_id=request_id)).model_dump_json()

        answer = await idempotent.once(idempotency, scope, content, work, wait_s=wait_s)
        return ImportReport.model_validate_json(answer)

    async def import_spreadsheet(
        self, content: bytes, filename: str, *, request_id: str | None
    ) -> ImportReport:
        """Parse, store every valid row under a new batch, then enqueue one job per chunk of rows."""
        batch_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        # Parsing 50,000 rows takes seconds of CPU, and building their models about half a second:
        # both off the event loop, so that it (and /healthz) stays responsive.
        sheet, appointments = await asyncio.to_thread(self._read_rows, content, filename, batch_id, now)
        envelopes = [
            JobEnvelope(
                task=NORMALIZE_BATCH_CHUNK,
                logical_key=chunk_key(batch_id, start),
                ids={
                    "batch_id": batch_id,
                    "seq_from": start,
                    "seq_to": min(start + self._chunk_size, len(appointments)),
                },
                request_id=request_id,
                batch_id=batch_id,
                producer_version=self._version,
            )
            for start in range(0, len(appointments), self._chunk_size)
        ]
        batch = Batch(
            id=batch_id,
            filename=filename,
            total=len(appointments),
            rejected=sheet.rejected,
            chunk_size=self._chunk_size,
            request_id=request_id,
            created_at=now,
            job_ids=[e.job_id for e in envelopes],
        )
        await self._repository.insert_batch(batch)
        await self._repository.insert_appointments(appointments)
        await self._tasks.enqueue_many(envelopes)
        log.info(
            "import accepted",
            batch_id=batch_id,
            accepted=len(appointments),
            rejected=sheet.rejected,
            chunks=len(envelopes),
        )
        return ImportReport(
            batch_id=batch_id,
            accepted=len(appointments),
            rejected=sheet.rejected,
            blank=sheet.blank,
            errors=sheet.errors,
            job_ids=batch.job_ids,
        )

    def _read_rows(
        self, content: bytes, filename: str, batch_id: str, now: datetime
    ) -> tuple[ParsedSheet, list[Appointment]]:
        sheet = parse_spreadsheet(
            content, filename, max_rows=self._max_rows, timezone=self._zone, limits=self._limits
        )
        appointments = [
            Appointment(
                id=f"{batch_id}-{seq:06d}",
                batch_id=batch_id,
                seq=seq,
                paciente=row.paciente,
                documento=row.documento,
                endereco=row.endereco,
                data_hora=row.data_hora,
                telefone=row.telefone,
                email=row.email,
                created_at=now,
            )
            for seq, row in enumerate(sheet.rows)
        ]
        return sheet, appointments

    async def get(self, appointment_id: str) -> Appointment:
        appointment = await self._repository.get_appointment(appointment_id)
        if appointment is None:
            raise NotFound(f"appointment {appointment_id} not found")
        return appointment

    async def recent_batches(
        self, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[BatchProgress]:
        """The newest imports first (after `before`, a batch's created_at and id, when given)."""
        batches = await self._repository.recent_batches(limit=limit, before=before)
        return [await self._progress(b) for b in batches]

    async def count_batches(self) -> int:
        return await self._repository.count_batches()

    async def batch_progress(self, batch_id: str) -> BatchProgress:
        batch = await self._repository.get_batch(batch_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found")
        return await self._progress(batch)

    async def _progress(self, batch: Batch) -> BatchProgress:
        counts: BatchCounts = await self._repository.count_batch(batch.id)
        return BatchProgress(
            batch_id=batch.id,
            filename=batch.filename,
            created_at=batch.created_at,
            total=counts.total,
            done=counts.normalized,
            failed=counts.failed,
            pending=counts.pending,
            rejected=batch.rejected,
            finished=counts.pending == 0,
        )
