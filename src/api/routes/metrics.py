"""`GET /metrics`: Prometheus text for the whole fleet, for the operator token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from src.api.deps import HealthDep, OperatorDep, QueueAdminDep, RegistryDep, RepositoryDep
from src.api.metrics import FleetSnapshot
from src.api.problems import problem_responses

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses=problem_responses(401, 403, 429, 503))
async def metrics(
    admin: QueueAdminDep, repository: RepositoryDep, registry: RegistryDep, health: HealthDep, _: OperatorDep
) -> Response:
    """The health model's checks, queue depth and age, ledger counts, the last hour's alarms, live
    and lost workers per queue, heartbeat age, task outcomes (per worker) and durations, LLM calls,
    fallbacks and latency."""
    model = await health.check()
    snapshot = FleetSnapshot(
        await admin.info(), await repository.count_jobs(), await registry.list_workers(), model
    )
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(snapshot)
    return Response(generate_latest(collectors), media_type=CONTENT_TYPE_LATEST)
