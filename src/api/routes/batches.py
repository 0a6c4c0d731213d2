"""Import batches: progress counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from src.api.deps import AppointmentServiceDep, CallerDep
from src.application.services.appointment_service import BatchProgress

router = APIRouter(prefix="/api/v1/batches", tags=["batches"])


@router.get("", response_model=list[BatchProgress])
async def list_batches(
    service: AppointmentServiceDep, _: CallerDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[BatchProgress]:
    """The most recent imports with their progress."""
    return await service.recent_batches(limit=limit)


@router.get("/{batch_id}", response_model=BatchProgress)
async def get_batch(batch_id: str, service: AppointmentServiceDep, _: CallerDep) -> BatchProgress:
    """Total, done, failed and pending appointments of an import."""
    return await service.batch_progress(batch_id)
