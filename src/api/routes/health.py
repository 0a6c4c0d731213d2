"""`/healthz` touches nothing (is the process serving?); `/readyz` checks Redis and the store."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from src.api.deps import RepositoryDep, TaskServiceDep
from src.api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def readyz(tasks: TaskServiceDep, repository: RepositoryDep) -> JSONResponse:
    """200 when Redis and the store answer within 2 s; 503 naming which one does not (no details)."""

    async def probe(coro: object) -> str:
        try:
            await asyncio.wait_for(coro, 2.0)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return "unavailable"
        return "ok"

    pool = await tasks.get_pool()
    redis_state, store_state = await asyncio.gather(probe(pool.ping()), probe(repository.ping()))
    ready = redis_state == store_state == "ok"
    body = ReadyResponse(status="ready" if ready else "not ready", redis=redis_state, store=store_state)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
