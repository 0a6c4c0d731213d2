"""Appointments: create one, import a spreadsheet, read one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Header, UploadFile, status

from src.api.deps import AppointmentServiceDep, CallerDep, IdempotencyDep, RequestIdDep, WriterDep
from src.application.services.appointment_service import CreatedAppointment, ImportReport, NewAppointment
from src.domain.appointments import Appointment
from src.errors import InvalidInput

UPLOAD_HELP = "a .xlsx or .csv with paciente, documento, endereco, data_hora (telefone, email optional)"
IDEMPOTENCY_HELP = (
    "A key for this one request (1-128 of A-Z a-z 0-9 . _ : -), kept 24 h per token: a repeat with "
    "the same key and payload gets the first answer and creates nothing; the same key with another "
    "payload is 422; a repeat while the first is still being processed is 409 (Retry-After)."
)
IdempotencyKey = Annotated[
    str | None,
    Header(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$", description=IDEMPOTENCY_HELP),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "the first request with this Idempotency-Key is still being processed"},
    413: {"description": "the body is over MAX_UPLOAD_BYTES (or a spreadsheet over MAX_IMPORT_ROWS)"},
    422: {"description": "invalid input: a field over its limit, not text, a bad time; or an "
          "Idempotency-Key already used with a different payload"},
}  # fmt: skip
router = APIRouter(prefix="/api/v1/appointments", tags=["appointments"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CreatedAppointment, responses=ERRORS)
async def create_appointment(
    body: NewAppointment,
    service: AppointmentServiceDep,
    request_id: RequestIdDep,
    idempotency: IdempotencyDep,
    caller: WriterDep,
    idempotency_key: IdempotencyKey = None,
) -> CreatedAppointment:
    """Store the appointment and enqueue its normalization. `data_hora` without an offset is a wall
    clock time in `APP_TIMEZONE`; each text field has a length limit (422 naming the field)."""
    if idempotency_key is None:
        return await service.create(body, request_id=request_id)
    return await service.create_once(
        body,
        request_id=request_id,
        idempotency=idempotency,
        scope=f"{caller.name}:create:{idempotency_key}",
    )


@router.post("/import", status_code=status.HTTP_202_ACCEPTED, response_model=ImportReport, responses=ERRORS)
async def import_appointments(
    service: AppointmentServiceDep,
    request_id: RequestIdDep,
    idempotency: IdempotencyDep,
    caller: WriterDep,
    file: Annotated[UploadFile, File(description=UPLOAD_HELP)],
    idempotency_key: IdempotencyKey = None,
) -> ImportReport:
    """Store every valid row at once under a new batch; normalization follows in the worker."""
    content = await file.read()
    if not content:
        raise InvalidInput("the uploaded file is empty")
    filename = file.filename or "upload"
    if idempotency_key is None:
        return await service.import_spreadsheet(content, filename, request_id=request_id)
    scope = f"{caller.name}:import:{idempotency_key}"
    return await service.import_once(
        content, filename, request_id=request_id, idempotency=idempotency, scope=scope
    )


@router.get("/{appointment_id}", response_model=Appointment)
async def get_appointment(appointment_id: str, service: AppointmentServiceDep, _: CallerDep) -> Appointment:
    """The appointment, its normalization and provenance; `data_hora` in `APP_TIMEZONE`, with its
    offset (e.g. `2026-12-10T14:30:00-03:00`)."""
    appointment = await service.get(appointment_id)
    return appointment.model_copy(update={"data_hora": appointment.data_hora.astimezone(service.timezone)})
