"""The typed job context: clients built once in the startup hook, read by every task."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from arq.connections import ArqRedis

from src.application.ports import AddressNormalizer, Repository
from src.application.services.normalization_service import NormalizationService
from src.application.services.reconciler import Reconciler
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.workers import TaskStats
from src.worker.job_runner import JobRunner

if TYPE_CHECKING:  # the SDK (and its aiohttp) costs tens of MB: imported only in LLM mode
    from openai import AsyncOpenAI


class WorkerContext(TypedDict, total=False):
    # set by arq
    redis: ArqRedis
    job_id: str
    job_try: int
    # set by our startup hook
    settings: Settings
    worker_id: str
    version: str
    repository: Repository
    normalization: NormalizationService
    runner: JobRunner
    openai_client: AsyncOpenAI | None
    fingerprint: str
    tasks: TaskService
    reconciler: Reconciler
    active_runs: dict[str, int]
    task_stats: dict[str, TaskStats]  # published with every heartbeat, summed by /metrics
    address_normalizer: AddressNormalizer  # job_id → attempt of the runs in progress (ledger heartbeats)
