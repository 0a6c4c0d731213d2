"""The worker registry: who is consuming, on which host and code version, and in which state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from src.api.deps import CallerDep, OperatorDep, RegistryDep, SettingsDep
from src.api.pagination import CursorQuery, page_by_id
from src.api.problems import AUTHENTICATED, problem_responses
from src.api.schemas import WorkersResponse, WorkerView
from src.domain.workers import WorkerState

router = APIRouter(prefix="/api/v1/workers", tags=["workers"], responses=problem_responses(*AUTHENTICATED))


@router.get("", response_model=WorkersResponse)
async def list_workers(
    registry: RegistryDep,
    settings: SettingsDep,
    _: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: CursorQuery = None,
) -> WorkersResponse:
    """Live workers (by worker id) with version skew and fenced workers flagged, each with the age of
    its last beat (an overdue beat: its state may be out of date) and the jobs it holds leases on
    now; `versions`, `allowed_versions` and `skew` are about the whole fleet."""
    now = datetime.now(UTC)
    records = sorted(await registry.list_workers(), key=lambda r: r.worker_id)
    leases = await registry.lease_counts(sorted({r.queue for r in records}))
    versions = sorted({r.version for r in records})
    views = [
        WorkerView(
            worker=r,
            heartbeat_age_s=round(age := (now - r.last_beat_at).total_seconds(), 3),
            beat_overdue=age > 2 * settings.worker_heartbeat_interval,
            leases=leases.get(r.worker_id, 0),
            version_skew=r.version != settings.app_version,
            fenced=r.state is WorkerState.FENCED,
        )
        for r in records
    ]
    page = page_by_id(views, lambda v: v.worker.worker_id, kind="workers", limit=limit, cursor=cursor)
    return WorkersResponse(
        **dict(page),
        api_version=settings.app_version,
        versions=versions,
        allowed_versions=sorted(await registry.allowed_versions()),
        skew=len(versions) > 1 or any(v.version_skew for v in views),
    )


@router.post("/versions/{version}/allow", response_model=list[str])
async def allow_version(version: str, registry: RegistryDep, _: OperatorDep) -> list[str]:
    """Allow a code version to claim jobs (before its workers roll out); returns the allowed set."""
    await registry.allow_version(version)
    return sorted(await registry.allowed_versions())


@router.post("/versions/{version}/retire", response_model=list[str])
async def retire_version(version: str, registry: RegistryDep, _: OperatorDep) -> list[str]:
    """Fence a code version (after its workers drained); returns the allowed set."""
    await registry.retire_version(version)
    return sorted(await registry.allowed_versions())
