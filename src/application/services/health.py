"""One health model: what is wrong with the deployment, read the same way by everything that tells.

`GET /api/v1/queue/health`, `python -m src.cli queue-health`, doctor, the dashboard and the metrics
(hence the alert rules) all show these checks, computed here once, so no two of them can disagree:

| check | degraded when |
|---|---|
| `redis` | Redis refuses writes (out of memory, named as such) or cannot be reached |
| `store` | the store does not answer (`down`: nothing can be accepted) |
| `consumers` | a queue holds work and no worker in state ok consumes it |
| `maintenance` | no maintenance worker runs (nothing re-enqueues lost jobs) |
| `llm` | a circuit breaker not closed; over `LLM_DEGRADED_FALLBACK_SHARE` of 20+ asked in 5 min fell back |
| `workers-lost` | a worker stopped beating without a clean stop in the last ten minutes |
| `stuck-jobs` | a running job's heartbeat is older than three beats and a lease |
| `alarms` | a stranger took jobs, a job was quarantined, or jobs failed by timeout (last hour) |

`down` means this process cannot accept work (the store is unreachable); everything else is
`degraded`, so a platform never pulls a healthy API out of service for a fleet problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel

from src.application.ports import Repository, WorkerDirectory
from src.application.services.alarms import Alarm, recent_alarms
from src.application.services.task_service import TaskService
from src.domain.jobs import MAINTENANCE_QUEUE, JobStatus, queue_key
from src.domain.workers import BreakerState, LostWorker, WorkerRecord, WorkerState

LOST_WINDOW = timedelta(minutes=10)
LLM_MIN_ASKED = 20  # fewer addresses asked than this in the window: too few to call the LLM degraded


class Level(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


class Check(BaseModel):
    name: str
    level: Level
    message: str


class Health(BaseModel):
    status: Level
    checks: list[Check]
    queues: dict[str, int]  # jobs ready to run now, per queue
    alarms: list[Alarm]
    lost_workers: list[LostWorker] = []  # stopped beating without a clean stop, last 10 minutes

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.level is not Level.OK]


CHECK_NAMES = ("redis", "store", "consumers", "maintenance", "llm", "workers-lost", "stuck-jobs", "alarms")


@dataclass(frozen=True)
class HealthConfig:
    heartbeat_interval_s: float
    lease_s: float
    queues: tuple[str, ...]  # the registry's (`src/jobs/registry.py`)
    llm_degraded_share: float = 0.5


class HealthService:
    def __init__(
        self, repository: Repository, tasks: TaskService, directory: WorkerDirectory, config: HealthConfig
    ) -> None:
        self._repository = repository
        self._tasks = tasks
        self._directory = directory
        self._config = config

    async def check(self) -> Health:
        """Every check, each on its own: one that cannot run says so instead of hiding the others."""
        workers: list[WorkerRecord] = []
        queues: dict[str, int] = {}
        alarms: list[Alarm] = []
        lost_workers: list[LostWorker] = []

        async def redis() -> Check:
            problem = await self._directory.write_problem()
            return _check("redis", problem, "Redis takes writes")

        async def store() -> Check:
            try:
                await self._repository.ping()
            except Exception as exc:  # noqa: BLE001 - whatever it is, the store does not answer
                return Check(
                    name="store", level=Level.DOWN, message=f"store unreachable: {type(exc).__name__}"
                )
            return Check(name="store", level=Level.OK, message=f"store {self._repository.identity()} answers")

        async def fleet() -> list[Check]:
            workers.extend(await self._directory.list_workers())
            for queue in self._config.queues:
                ready, _, _ = await self._tasks.queue_depth(queue)
                queues[queue] = ready
            return [await self._consumers(workers, queues), _maintenance(workers), self._llm(workers)]

        async def lost() -> Check:
            found = await self._directory.lost_workers(datetime.now(UTC) - LOST_WINDOW)
            lost_workers.extend(found)
            names = ", ".join(
                f"{w.worker_id} ({w.queue or '?'}, last beat {w.last_beat_at:%H:%M:%S})" for w in found[:5]
            )
            problem = (
                f"{len(found)} worker(s) stopped beating without a clean stop: {names}" if found else None
            )
            return _check("workers-lost", problem, "no worker lost in the last 10 minutes")

        async def stuck() -> Check:
            now = datetime.now(UTC)
            cutoff = now - timedelta(seconds=max(3 * self._config.heartbeat_interval_s, self._config.lease_s))
            stale = await self._repository.find_stale_jobs(
                running_heartbeat_before=cutoff, waiting_enqueued_before=now - timedelta(days=3650), limit=20
            )
            running = [r for r in stale if r.status is JobStatus.RUNNING and r.heartbeat_at is not None]
            problem = "; ".join(
                f"job {r.job_id} runs with no heartbeat since {r.heartbeat_at:%H:%M:%S} UTC (worker "
                f"{r.worker_id}, version {r.version}, cursor {r.progress.cursor})"
                for r in running[:5]
            )
            if running:
                problem += "; the reconciler takes them over if a maintenance worker runs"
            return _check("stuck-jobs", problem or None, "no running job without a heartbeat")

        async def alarmed() -> Check:
            alarms.extend(await recent_alarms(self._repository))
            problem = "; ".join(_described(a) for a in alarms) or None
            return _check("alarms", problem, "no intrusion, quarantine or timeout in the last hour")

        probes: list[tuple[tuple[str, ...], Callable[[], Awaitable[Check | list[Check]]]]] = [
            (("redis",), redis), (("store",), store), (("consumers", "maintenance", "llm"), fleet),
            (("workers-lost",), lost), (("stuck-jobs",), stuck), (("alarms",), alarmed),
        ]  # fmt: skip
        results = await asyncio.gather(*(probe() for _, probe in probes), return_exceptions=True)
        checks: list[Check] = []
        for (names, _), result in zip(probes, results, strict=True):
            if isinstance(result, BaseException):
                message = f"could not be checked: {type(result).__name__}: {str(result)[:120]}"
                checks.extend(Check(name=n, level=Level.DEGRADED, message=message) for n in names)
            else:
                checks.extend(result if isinstance(result, list) else [result])
        status = max((c.level for c in checks), key=_rank, default=Level.OK)
        return Health(status=status, checks=checks, queues=queues, alarms=alarms, lost_workers=lost_workers)

    async def _consumers(self, workers: list[WorkerRecord], ready: dict[str, int]) -> Check:
        waiting = {
            c.queue: c.count for c in await self._repository.count_jobs() if c.status is JobStatus.QUEUED
        }
        idle = []
        for queue in dict.fromkeys([*self._config.queues, *waiting]):  # the ledger's queues too
            if queue == MAINTENANCE_QUEUE:
                continue  # its cron jobs are its own work: the `maintenance` check covers it
            work = max(ready.get(queue, 0), waiting.get(queue, 0))
            if work and not _consuming(workers, queue):
                idle.append(f"queue {queue}: {work} job(s) waiting and no worker consuming it")
        return _check("consumers", "; ".join(idle) or None, "every queue with work has a worker")

    def _llm(self, workers: list[WorkerRecord]) -> Check:
        with_llm = [w for w in workers if w.llm is not None]
        stats = [w.llm for w in with_llm if w.llm is not None]
        if not stats:
            return Check(name="llm", level=Level.OK, message="no worker uses the LLM (rules mode)")
        asked = sum(s.recent_asked for s in stats)
        fell_back = sum(s.recent_fallbacks for s in stats)
        window = max(s.recent_window_s for s in stats) // 60
        share = fell_back / asked if asked else 0.0
        tripped = [w for w in with_llm if w.llm is not None and w.llm.breaker is not BreakerState.CLOSED]
        if not tripped and (asked < LLM_MIN_ASKED or share <= self._config.llm_degraded_share):
            message = (
                f"{fell_back} of {asked} address(es) asked of the LLM in the last {window} min fell back"
            )
            return Check(name="llm", level=Level.OK, message=message)
        reasons: dict[str, int] = {}
        for s in stats:
            for reason, n in s.fallbacks.items():
                reasons[reason] = reasons.get(reason, 0) + n
        top = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        parts = [_breakers(tripped, len(stats))] if tripped else []
        parts.append(
            f"{fell_back} of {asked} addresses ({share:.0%}) fell back to the rules in the last {window} min "
            f"(LLM_DEGRADED_FALLBACK_SHARE {self._config.llm_degraded_share:.0%})"
        )
        return Check(name="llm", level=Level.DEGRADED, message=(
            f"LLM degraded: {'; '.join(parts)}; reasons since the workers started: {top}"))  # fmt: skip


def _breakers(tripped: list[WorkerRecord], total: int) -> str:
    """Which workers' circuit breakers are not closed, since when and why (at most three named)."""
    named = []
    for w in tripped[:3]:
        assert w.llm is not None
        since = f" since {w.llm.breaker_since:%H:%M:%S} UTC" if w.llm.breaker_since else ""
        named.append(f"{w.worker_id} {w.llm.breaker.value}{since} ({w.llm.breaker_reason or '?'})")
    return f"circuit breaker not closed on {len(tripped)} of {total} worker(s): {', '.join(named)}"


def _described(alarm: Alarm) -> str:
    """An alarm with its latest jobs and evidence: what an operator acts on."""
    ids = ", ".join(alarm.job_ids[:5]) + (", …" if alarm.count > 5 else "")
    evidence = f"; evidence: {alarm.evidence}" if alarm.evidence else ""
    return f"{alarm.message} (last at {alarm.last_at:%H:%M:%S} UTC: {ids}){evidence}"


def _maintenance(workers: list[WorkerRecord]) -> Check:
    problem = (
        None
        if _consuming(workers, MAINTENANCE_QUEUE)
        else "no maintenance worker runs: lost jobs are not re-enqueued, dead runs not recovered, old "
        "records not cleaned (start `python workers.py --queue maintenance`)"
    )
    return _check("maintenance", problem, "a maintenance worker runs")


def _consuming(workers: list[WorkerRecord], queue: str) -> bool:
    return any(w.queue == queue_key(queue) and w.state is WorkerState.OK for w in workers)


def _rank(level: Level) -> int:
    return (Level.OK, Level.DEGRADED, Level.DOWN).index(level)


def _check(name: str, problem: str | None, fine: str) -> Check:
    if problem is None:
        return Check(name=name, level=Level.OK, message=fine)
    return Check(name=name, level=Level.DEGRADED, message=problem)
