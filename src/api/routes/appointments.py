"""Appointments: create one, import a spreadsheet, read one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Header, UploadFile, status

from src.api.deps import AppointmentServiceDep, CallerDep, IdempotencyDep, RequestIdDep, WriterDep
from src.application.services.appointment_service import CreatedAppointment, ImportReport, NewAppointment
from src.domain.appointments import Appointment
from src.errors import InvalidInput

UPLOAD_HELP = "a .xlsx or .csv with paciente, documento, endereco, data_hora (telefone, email optional)"
IDEMPOTENCY_HELP = "resubmitting with the same key returns the first import's batch instead of a new one"
router = APIRouter(prefix="/api/v1/appointments", tags=["appointments"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CreatedAppointment)
async def create_appointment(
    body: NewAppointment, service: AppointmentServiceDep, request_id: RequestIdDep, _: WriterDep
) -> CreatedAppointment:
    """Store the appointment and enqueue its normalization."""
    return await service.create(body, request_id=request_id)


@router.post("/import", status_code=status.HTTP_202_ACCEPTED, response_model=ImportReport)
async def import_appointments(
    service: AppointmentServiceDep,
    request_id: RequestIdDep,
    idempotency: IdempotencyDep,
    caller: WriterDep,
    file: Annotated[UploadFile, File(description=UPLOAD_HELP)],
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$", description=IDEMPOTENCY_HELP),
    ] = None,
) -> ImportReport:
    """Store every valid row at once under a new batch; normalization follows in the worker."""
    content = await file.read()
    if not content:
        raise InvalidInput("the uploaded file is empty")
    filename = file.filename or "upload"
    if idempotency_key is None:
        return await service.import_spreadsheet(content, filename, request_id=request_id)
    scope = f"{caller.name}:{idempotency_key}"
    return await service.import_once(
        content, filename, request_id=request_id, idempotency=idempotency, scope=scope
    )


@router.get("/{appointment_id}", response_model=Appointment)
async def get_appointment(appointment_id: str, service: AppointmentServiceDep, _: CallerDep) -> Appointment:
    return await service.get(appointment_id)
