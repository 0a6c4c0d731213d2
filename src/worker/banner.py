"""The start-up banner of the Coolify guide: what runs, where, with which limits (no secrets)."""

from __future__ import annotations

from collections.abc import Sequence

from src.config import Settings

RULE = "=" * 60


def render_banner(settings: Settings, *, queue_name: str, tasks: Sequence[str], worker_id: str) -> str:
    lines = [
        RULE,
        "Starting ARQ Background Worker",
        RULE,
        "Tasks registered:",
        *(f"  - {t}" for t in tasks),
        f"Redis: {settings.redis_display}",
        f"Queue: {queue_name}",
        f"Max concurrent jobs: {settings.arq_max_jobs}",
        f"Job timeout: {settings.arq_job_timeout} seconds",
        f"Result retention: {settings.arq_keep_result} seconds",
        f"Address normalization: {'llm' if settings.llm_enabled else 'rules'}"
        f" ({'on' if settings.address_normalization_enabled else 'off'}),"
        f" documents: {'on' if settings.document_normalization_enabled else 'off'}",
        f"Code version: {settings.app_version}",
        f"Worker id: {worker_id}",
        RULE,
    ]
    return "\n".join(lines)
