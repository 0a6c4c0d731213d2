"""Creating appointments and importing spreadsheets: store first, then enqueue normalization.

Appointments are stored at once (nothing accepted is lost even if Redis is down: the ledger keeps
the queued records for the reconciler); normalization follows in the worker. Imports are split into
chunk jobs of `chunk_size` rows, each resumable from its checkpoint.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import structlog
from pydantic import BaseModel, EmailStr

from src.application.ports import IdempotencyStore, Repository
from src.application.services.spreadsheet_parser import ParsedSheet, RowError, parse_spreadsheet
from src.application.services.task_service import EnqueueResult, TaskService
from src.domain.appointments import Appointment, Batch, BatchCounts, new_appointment_id
from src.domain.jobs import JobEnvelope, JobName
from src.errors import Conflict, NotFound

log = structlog.get_logger(__name__)


class NewAppointment(BaseModel):
    paciente: str
    documento: str
    endereco: str
    data_hora: datetime
    telefone: str | None = None
    email: EmailStr | None = None


class CreatedAppointment(BaseModel):
    appointment_id: str
    job_id: str
    enqueue_status: str


class ImportReport(BaseModel):
    batch_id: str
    accepted: int
    rejected: int
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
    ) -> None:
        self._repository = repository
        self._tasks = tasks
        self._version = producer_version
        self._chunk_size = chunk_size
        self._max_rows = max_import_rows

    async def create(self, data: NewAppointment, *, request_id: str | None) -> CreatedAppointment:
        appointment = Appointment(
            id=new_appointment_id(),
            paciente=data.paciente,
            documento=data.documento,
            endereco=data.endereco,
            data_hora=data.data_hora if data.data_hora.tzinfo else data.data_hora.replace(tzinfo=UTC),
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
            task=JobName.NORMALIZE_APPOINTMENT,
            logical_key=normalize_key(appointment_id),
            generation=generation,
            ids={"appointment_id": appointment_id},
            request_id=request_id,
            producer_version=self._version,
        )
        return await self._tasks.enqueue(envelope)

    async def import_once(
        self,
        content: bytes,
        filename: str,
        *,
        request_id: str | None,
        idempotency: IdempotencyStore,
        scope: str,
        wait_s: float = 15.0,
    ) -> ImportReport:
        """Import at most once per idempotency scope: concurrent or repeated submissions with the same
        key get the first one's report (same batch); Conflict if it is still running after `wait_s`."""
        deadline = time.monotonic() + wait_s
        while True:
            stored = await idempotency.reserve(scope)
            if stored is None:
                break
            if stored != "pending":
                return ImportReport.model_validate_json(stored)
            if time.monotonic() > deadline:
                raise Conflict("an import with this Idempotency-Key is still being processed; retry shortly")
            await asyncio.sleep(0.1)
        try:
            report = await self.import_spreadsheet(content, filename, request_id=request_id)
        except BaseException:
            await idempotency.release(scope)  # a failed import may be retried with the same key
            raise
        await idempotency.complete(scope, report.model_dump_json())
        return report

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
                task=JobName.NORMALIZE_BATCH_CHUNK,
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
            errors=sheet.errors,
            job_ids=batch.job_ids,
        )

    def _read_rows(
        self, content: bytes, filename: str, batch_id: str, now: datetime
    ) -> tuple[ParsedSheet, list[Appointment]]:
        sheet = parse_spreadsheet(content, filename, max_rows=self._max_rows)
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

    async def recent_batches(self, *, limit: int) -> list[BatchProgress]:
        return [await self._progress(b) for b in await self._repository.recent_batches(limit=limit)]

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
