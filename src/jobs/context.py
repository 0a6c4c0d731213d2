"""The context every job handler receives: clients built once when the worker starts (its startup
hook, `src/worker/hooks.py`), plus the job's id and try. Every key is always there."""

from __future__ import annotations

from typing import TypedDict

from arq.connections import ArqRedis

from src.application.ports import AddressNormalizer, Repository
from src.application.services.normalization_service import NormalizationService, RunInfo
from src.application.services.reconciler import Reconciler
from src.application.services.task_service import TaskService
from src.config import Settings


class JobContext(TypedDict):
    redis: ArqRedis
    job_id: str
    job_try: int  # the ledger's attempt of this run (every claim counts one); arq's own count for a cron
    settings: Settings
    worker_id: str
    version: str
    repository: Repository
    normalization: NormalizationService
    tasks: TaskService
    reconciler: Reconciler
    address_normalizer: AddressNormalizer  # the LLM with the rules as fallback, or the rules alone


def run_info(ctx: JobContext) -> RunInfo:
    """Who runs this job, in which attempt: what the services' fenced writes need."""
    return RunInfo(
        job_id=ctx["job_id"], attempt=ctx["job_try"], worker_id=ctx["worker_id"], version=ctx["version"]
    )
