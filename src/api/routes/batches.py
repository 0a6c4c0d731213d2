"""Import batches: progress counts."""

from __future__ import annotations

from fastapi import APIRouter

from src.api.deps import AppointmentServiceDep, CallerDep
from src.application.services.appointment_service import BatchProgress

router = APIRouter(prefix="/api/v1/batches", tags=["batches"])


@router.get("/{batch_id}", response_model=BatchProgress)
async def get_batch(batch_id: str, service: AppointmentServiceDep, _: CallerDep) -> BatchProgress:
    """Total, done, failed and pending appointments of an import."""
    return await service.batch_progress(batch_id)
