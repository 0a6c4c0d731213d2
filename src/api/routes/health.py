"""`/healthz` touches nothing (is the process serving?); `/readyz` says whether this process can
accept work. Fleet problems (no worker, Redis refusing writes, the LLM failing) are not this API's
unreadiness: they show as `degraded` in `GET /api/v1/queue/health`, so a platform never pulls a
healthy API out of service for them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from src.api.deps import RepositoryDep, TaskServiceDep
from src.api.errors import problem
from src.api.problems import PROBLEM_TYPES, problem_responses
from src.api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])
NOT_READY = "not ready: the store does not answer (`store` and `redis` name each one's state)"


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse, responses=problem_responses(503, s503=NOT_READY))
async def readyz(tasks: TaskServiceDep, repository: RepositoryDep, request: Request) -> Response:
    """200 when this API can accept work: the store answers within 2 s (with Redis down, creates are
    stored and their jobs deferred). 503 (a `not-ready` problem) when the store does not. Both name
    the state of `redis` and `store`."""

    async def probe(coro: object) -> str:
        try:
            await asyncio.wait_for(coro, 2.0)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return "unavailable"
        return "ok"

    pool = await tasks.get_pool()
    redis_state, store_state = await asyncio.gather(probe(pool.ping()), probe(repository.ping()))
    if store_state != "ok":
        detail = "the store does not answer: this process cannot accept work"
        return problem(request, PROBLEM_TYPES["not-ready"], detail, redis=redis_state, store=store_state)
    return JSONResponse(ReadyResponse(status="ready", redis=redis_state, store=store_state).model_dump())
