"""`GET /metrics`: Prometheus text for the whole fleet, for the operator token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from src.api.deps import OperatorDep, QueueAdminDep, RegistryDep, RepositoryDep
from src.api.metrics import FleetSnapshot
from src.application.services.alarms import recent_alarms

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(
    admin: QueueAdminDep, repository: RepositoryDep, registry: RegistryDep, _: OperatorDep
) -> Response:
    """Queue depth and age, ledger counts, the last hour's alarms, live workers by version, heartbeat
    age, task outcomes and durations, LLM calls, fallbacks and latency."""
    snapshot = FleetSnapshot(
        await admin.info(),
        await repository.count_jobs(),
        await registry.list_workers(),
        await recent_alarms(repository),
    )
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(snapshot)
    return Response(generate_latest(collectors), media_type=CONTENT_TYPE_LATEST)
