"""The worker's context: what every job handler gets (`JobContext`) plus the worker's own parts,
built once in the startup hook (`src/worker/hooks.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from src.domain.workers import TaskStats
from src.jobs.context import JobContext
from src.worker.job_runner import JobRunner

if TYPE_CHECKING:  # the SDK (and its aiohttp) costs tens of MB: imported only in LLM mode
    from openai import AsyncOpenAI


class WorkerContext(JobContext):
    runner: JobRunner
    openai_client: AsyncOpenAI | None
    fingerprint: str
    active_runs: dict[str, int]  # job_id → attempt of the runs in progress (ledger heartbeats)
    task_stats: dict[str, TaskStats]  # published with every heartbeat, summed by /metrics
