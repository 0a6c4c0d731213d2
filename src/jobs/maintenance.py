"""The maintenance queue's crons: the reconciler and the cleaner."""

from __future__ import annotations

from typing import Any

from src.application.services.queue_admin import QueueAdmin
from src.config import Settings
from src.jobs.context import JobContext
from src.jobs.spec import Cron, NoPayload


async def reconcile(ctx: JobContext, payload: NoPayload) -> dict[str, Any]:
    """Re-enqueue stale running and vanished jobs."""
    report = await ctx["reconciler"].run()
    return report.model_dump()


async def cleanup(ctx: JobContext, payload: NoPayload) -> dict[str, Any]:
    """Drop ledger records and results past the retention."""
    admin = QueueAdmin(ctx["repository"], ctx["tasks"])
    report = await admin.cleanup(older_than_s=ctx["settings"].ledger_retention_seconds)
    return report.model_dump()


def reconcile_schedule(settings: Settings) -> Cron:
    """Every `RECONCILE_EVERY_SECONDS`, and once at start."""
    return Cron.every(settings.reconcile_every_seconds, run_at_startup=True)


def reconcile_timeout_s(settings: Settings) -> float:
    return float(max(60, settings.reconcile_every_seconds))  # never longer than its interval (over 60 s)
