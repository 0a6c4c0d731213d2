"""Normalize one chunk of an imported batch, resuming from the ledger's checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from src.domain.jobs import JobProgress
from src.jobs.context import JobContext, run_info


class NormalizeBatchChunk(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: str
    seq_from: int
    seq_to: int


async def normalize_batch_chunk(ctx: JobContext, payload: NormalizeBatchChunk) -> dict[str, Any]:
    run = run_info(ctx)
    repository = ctx["repository"]
    record = await repository.get_job(run.job_id)  # its checkpoint: resume where a killed run stopped
    cursor = record.progress.cursor if record is not None else None

    async def checkpoint(progress: JobProgress) -> bool:
        return await repository.heartbeat_job(
            run.job_id, run.attempt, at=datetime.now(UTC), progress=progress
        )

    return await ctx["normalization"].normalize_batch_range(
        payload.batch_id, payload.seq_from, payload.seq_to, run, resume_from=cursor, checkpoint=checkpoint
    )
