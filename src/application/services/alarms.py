"""Alarms: the queue-integrity faults the ledger has recorded recently, named for an operator.

- `foreign_consumer`: a consumer outside the fleet took jobs off our queue (the ghost-worker
  incident); the reconciler ran them again and kept what the stranger left.
- `quarantined`: a job's workers kept dying while running it (a crash loop); it waits for an
  operator's retry.
- `timeout`: jobs gave up after running out of `ARQ_JOB_TIMEOUT` on every try.
Doctor, `GET /api/v1/queue/health` and the dashboard all read them from here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from src.application.ports import Repository
from src.domain.jobs import ErrorCategory

ALARM_WINDOW = timedelta(hours=1)
MAX_IDS = 20  # job ids listed per alarm (the count says how many there were)
MAX_COUNTED = 1000  # jobs counted per alarm kind ("1000" then reads "at least 1000")

_WHAT = {
    ErrorCategory.FOREIGN_CONSUMER: (
        "taken off our queue by a consumer outside the fleet (a worker that is not ours reads "
        "{queue}): each was run again as its next generation; find and stop that consumer"
    ),
    ErrorCategory.QUARANTINED: (
        "quarantined: the workers running it kept dying (a crash loop); last held by {worker}. "
        "Fix the cause, then POST /api/v1/queue/job/{{job_id}}/retry"
    ),
    ErrorCategory.TIMEOUT: "failed after running out of ARQ_JOB_TIMEOUT on every try",
}


ALARM_KINDS = tuple(_WHAT)


class Alarm(BaseModel):
    kind: ErrorCategory
    count: int
    job_ids: list[str]
    last_at: datetime
    message: str
    evidence: dict[str, Any] | None = None  # the latest one's: what the stranger left, the last holder


async def recent_alarms(repository: Repository, *, window: timedelta = ALARM_WINDOW) -> list[Alarm]:
    """The alarms of the last `window`, one per kind, the most recent job first."""
    since = datetime.now(UTC) - window
    alarms: list[Alarm] = []
    for kind, template in _WHAT.items():  # one query per kind: a flood of one never hides another
        mine = await repository.finished_since(since, limit=MAX_COUNTED, categories=(kind,))
        if not mine:
            continue
        latest = mine[0]
        worker = latest.worker_id or "an unknown worker"
        evidence = latest.result if kind is ErrorCategory.FOREIGN_CONSUMER else {"last_worker_id": worker}
        alarms.append(
            Alarm(
                kind=kind,
                count=len(mine),
                job_ids=[r.job_id for r in mine[:MAX_IDS]],
                last_at=latest.finished_at or since,
                message=f"{len(mine)} job(s) in the last {_span(window)} "
                + template.format(queue=latest.queue, worker=worker),
                evidence=evidence,
            )
        )
    return alarms


def _span(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
