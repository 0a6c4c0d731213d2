"""Fill `documento_normalizado` and `endereco_normalizado` of one appointment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from src.domain.jobs import JobProgress
from src.jobs.context import JobContext, run_info


class NormalizeAppointment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    appointment_id: str


async def normalize_appointment(ctx: JobContext, payload: NormalizeAppointment) -> dict[str, Any]:
    run = run_info(ctx)
    repository = ctx["repository"]

    async def still_current(progress: JobProgress) -> bool:
        return await repository.heartbeat_job(
            run.job_id, run.attempt, at=datetime.now(UTC), progress=progress
        )

    return await ctx["normalization"].normalize_appointment(
        payload.appointment_id, run, still_current=still_current
    )
