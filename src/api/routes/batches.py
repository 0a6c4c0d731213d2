"""Import batches: progress counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from src.api.deps import AppointmentServiceDep, CallerDep
from src.api.pagination import CursorQuery, Page, decode_cursor, keyset_page, time_position
from src.api.problems import AUTHENTICATED, problem_responses
from src.application.services.appointment_service import BatchProgress

router = APIRouter(prefix="/api/v1/batches", tags=["batches"], responses=problem_responses(*AUTHENTICATED))


@router.get("", response_model=Page[BatchProgress])
async def list_batches(
    service: AppointmentServiceDep,
    _: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: CursorQuery = None,
) -> Page[BatchProgress]:
    """The most recent imports with their progress, newest first."""
    before = time_position(decode_cursor(cursor, "batches", {})) if cursor else None
    rows = await service.recent_batches(limit=limit + 1, before=before)
    return keyset_page(
        rows, limit=limit, total=await service.count_batches(), kind="batches", filters={},
        at="created_at", key="batch_id",
    )  # fmt: skip


@router.get("/{batch_id}", response_model=BatchProgress, responses=problem_responses(404))
async def get_batch(batch_id: str, service: AppointmentServiceDep, _: CallerDep) -> BatchProgress:
    """Total, done, failed and pending appointments of an import."""
    return await service.batch_progress(batch_id)
