"""Appointments: create one, import a spreadsheet, read one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, File, Header, Request, Response, UploadFile, status

from src.api.deps import AppointmentServiceDep, CallerDep, IdempotencyDep, RequestIdDep, WriterDep
from src.api.problems import AUTHENTICATED, problem_responses
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
ERRORS = problem_responses(
    400,
    409,
    413,
    s409="the first request with this Idempotency-Key is still being processed (Retry-After)",
    s413="the body is over MAX_UPLOAD_BYTES (or a spreadsheet over MAX_IMPORT_ROWS)",
)
ERRORS[422] = {
    **problem_responses(422)[422],
    "description": "invalid input: a field over its limit, not text, a bad time; or an Idempotency-Key "
    "already used with a different payload",
}
EXAMPLE_BODY = {
    "paciente": "Ana Pereira",
    "documento": "529.982.247-25",
    "endereco": "Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
    "data_hora": "2026-12-10T14:30:00-03:00",
    "telefone": "+55 11 91234-5678",
}
CREATED_EXAMPLE = {
    "appointment_id": "apt_01JEXAMPLE",
    "job_id": "normalize:apt_01JEXAMPLE:1",
    "enqueue_status": "queued",
}
IMPORTED_EXAMPLE = {
    "batch_id": "bat_01JEXAMPLE",
    "accepted": 2,
    "rejected": 1,
    "blank": 0,
    "errors": [{"row": 4, "column": "documento", "message": "documento: not a valid CPF or CNPJ"}],
    "job_ids": ["normalize:bat_01JEXAMPLE:0:1"],
}

router = APIRouter(
    prefix="/api/v1/appointments", tags=["appointments"], responses=problem_responses(*AUTHENTICATED)
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedAppointment,
    responses={201: {"content": {"application/json": {"example": CREATED_EXAMPLE}}}, **ERRORS},
)
async def create_appointment(
    body: Annotated[NewAppointment, Body(openapi_examples={"appointment": {"value": EXAMPLE_BODY}})],
    service: AppointmentServiceDep,
    request_id: RequestIdDep,
    idempotency: IdempotencyDep,
    caller: WriterDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CreatedAppointment:
    """Store the appointment and enqueue its normalization (`Location`: the appointment). `data_hora`
    without an offset is a wall clock time in `APP_TIMEZONE`; each text field has a length limit
    (422 naming the field)."""
    if idempotency_key is None:
        created = await service.create(body, request_id=request_id)
    else:
        created = await service.create_once(
            body,
            request_id=request_id,
            idempotency=idempotency,
            scope=f"{caller.name}:create:{idempotency_key}",
        )
    response.headers["Location"] = request.app.url_path_for(
        "get_appointment", appointment_id=created.appointment_id
    )
    return created


@router.post(
    "/import",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImportReport,
    responses={202: {"content": {"application/json": {"example": IMPORTED_EXAMPLE}}}, **ERRORS},
)
async def import_appointments(
    service: AppointmentServiceDep,
    request_id: RequestIdDep,
    idempotency: IdempotencyDep,
    caller: WriterDep,
    file: Annotated[UploadFile, File(description=UPLOAD_HELP)],
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ImportReport:
    """Store every valid row at once under a new batch; normalization follows in the worker
    (`Location`: the batch's progress)."""
    content = await file.read()
    if not content:
        raise InvalidInput("the uploaded file is empty")
    filename = file.filename or "upload"
    if idempotency_key is None:
        report = await service.import_spreadsheet(content, filename, request_id=request_id)
    else:
        scope = f"{caller.name}:import:{idempotency_key}"
        report = await service.import_once(
            content, filename, request_id=request_id, idempotency=idempotency, scope=scope
        )
    response.headers["Location"] = request.app.url_path_for("get_batch", batch_id=report.batch_id)
    return report


@router.get("/{appointment_id}", response_model=Appointment, responses=problem_responses(404))
async def get_appointment(appointment_id: str, service: AppointmentServiceDep, _: CallerDep) -> Appointment:
    """The appointment, its normalization and provenance; `data_hora` in `APP_TIMEZONE`, with its
    offset (e.g. `2026-12-10T14:30:00-03:00`)."""
    appointment = await service.get(appointment_id)
    return appointment.model_copy(update={"data_hora": appointment.data_hora.astimezone(service.timezone)})
