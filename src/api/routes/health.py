"""`/healthz` touches nothing (is the process serving?); `/readyz` says whether this process can
accept work. Fleet problems (no worker, Redis refusing writes, the LLM failing) are not this API's
unreadiness: they show as `degraded` in `GET /api/v1/queue/health`, so a platform never pulls a
healthy API out of service for them."""

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
    """200 when this API can accept work: the store answers within 2 s (with Redis down, creates are
    stored and their jobs deferred). 503 when the store does not. Both states are named."""

    async def probe(coro: object) -> str:
        try:
            await asyncio.wait_for(coro, 2.0)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return "unavailable"
        return "ok"

    pool = await tasks.get_pool()
    redis_state, store_state = await asyncio.gather(probe(pool.ping()), probe(repository.ping()))
    ready = store_state == "ok"
    body = ReadyResponse(status="ready" if ready else "not ready", redis=redis_state, store=store_state)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
