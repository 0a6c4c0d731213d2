"""The health model's configuration, from the one Settings object (used by the API and the CLI)."""

from __future__ import annotations

from src.application.services.health import HealthConfig
from src.config import Settings
from src.jobs.registry import REGISTRY


def health_config(settings: Settings) -> HealthConfig:
    return HealthConfig(
        heartbeat_interval_s=settings.worker_heartbeat_interval,
        lease_s=settings.job_lease_seconds,
        queues=REGISTRY.queues,
        llm_degraded_share=settings.llm_degraded_fallback_share,
    )
