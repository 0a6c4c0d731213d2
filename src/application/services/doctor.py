"""`doctor`: find what is wrong with a deployment and name the culprit.

Each check returns findings; a finding that is a problem makes `doctor` exit non-zero. The health
model's checks come first, exactly as `/api/v1/queue/health` shows them (Redis writable, the store,
consumers, the maintenance worker, the LLM, lost workers, stuck jobs, alarms); doctor adds what only
an investigation needs: a ghost worker (another version, results from a worker nobody knows,
finishing implausibly fast), workers pointed at other data, the error rate, Redis' limits.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from src.application.ports import Repository, WorkerDirectory
from src.application.services.health import HealthConfig, HealthService, Level
from src.application.services.task_service import TaskService
from src.domain.jobs import JobStatus
from src.domain.workers import WorkerState


class Finding(BaseModel):
    check: str
    ok: bool
    message: str


def problem(check: str, message: str) -> Finding:
    return Finding(check=check, ok=False, message=message)


class DoctorConfig(BaseModel):
    heartbeat_interval_s: float
    lease_s: float
    queues: tuple[str, ...]  # the registry's (`src/jobs/registry.py`)
    queued_too_long_s: float = 60.0
    consumption_window_s: float = 300.0
    error_rate_threshold: float = 0.10
    too_fast_ratio: float = 0.10  # a worker whose median is under 10% of the fleet's is suspicious
    too_fast_floor_ms: float = 50.0  # ...when the fleet's median is at least this (0 ms vs 1 ms is noise)
    min_samples: int = 20  # jobs of that worker (and twice as many of the fleet) before judging
    llm_degraded_share: float = 0.5


class Doctor:
    def __init__(
        self, repository: Repository, tasks: TaskService, directory: WorkerDirectory, config: DoctorConfig
    ) -> None:
        self._repository = repository
        self._tasks = tasks
        self._directory = directory
        self._config = config
        self._health_model = HealthService(
            repository,
            tasks,
            directory,
            HealthConfig(
                heartbeat_interval_s=config.heartbeat_interval_s,
                lease_s=config.lease_s,
                queues=config.queues,
                llm_degraded_share=config.llm_degraded_share,
            ),
        )

    async def run(self) -> list[Finding]:
        findings: list[Finding] = []
        checks: list[Callable[[], Awaitable[list[Finding]]]] = [
            self._health, self._fleet, self._error_rate, self._redis_limits, self._unknown_writers,
            self._too_fast,
        ]  # fmt: skip
        for check in checks:
            try:
                findings.extend(await check())
            except Exception as exc:  # noqa: BLE001 - one failing check must not hide the others
                findings.append(
                    Finding(check=check.__name__.strip("_"), ok=False, message=f"check failed: {exc}")
                )
        return findings

    async def _health(self) -> list[Finding]:
        health = await self._health_model.check()
        return [Finding(check=c.name, ok=c.level is Level.OK, message=c.message) for c in health.checks]

    async def _fleet(self) -> list[Finding]:
        workers = await self._directory.list_workers()
        published = await self._directory.published_fingerprint()
        fingerprint = None if published is None else str(published.get("fingerprint"))
        found = []
        if fingerprint is None:
            found.append(
                Finding(check="fingerprint", ok=False, message="no API published its data fingerprint")
            )
        now = datetime.now(UTC)
        stale_after = 3 * self._config.heartbeat_interval_s
        versions_by_queue: dict[str, set[str]] = defaultdict(set)
        for w in workers:
            where = f"worker {w.worker_id} (host {w.hostname}, pid {w.pid}, version {w.version})"
            if fingerprint is not None and w.fingerprint and w.fingerprint != fingerprint:
                found.append(Finding(check="fingerprint", ok=False, message=(
                    f"{where} works on other data: fingerprint {w.fingerprint} != API's {fingerprint} "
                    "(different store or Redis database)")))  # fmt: skip
            if w.state in (WorkerState.FENCED, WorkerState.MISMATCH, WorkerState.WAITING):
                found.append(
                    Finding(check="worker-state", ok=False, message=f"{where} is {w.state.value}: {w.reason}")
                )
            age = (now - w.last_beat_at).total_seconds()
            if age > stale_after:
                found.append(
                    Finding(check="heartbeat", ok=False, message=f"{where} last beat {age:.1f}s ago")
                )
            if w.state.healthy:
                versions_by_queue[w.queue].add(w.version)
        for queue, versions in versions_by_queue.items():
            if len(versions) > 1:
                listed = ", ".join(sorted(versions))
                found.append(problem("versions", f"{len(versions)} code versions consume {queue}: {listed}"))
        if not found:
            found.append(Finding(check="fleet", ok=True, message=f"{len(workers)} worker(s), all healthy"))
        return found

    async def _error_rate(self) -> list[Finding]:
        since = datetime.now(UTC) - timedelta(hours=1)
        recent = await self._repository.finished_since(since, limit=10_000)
        if not recent:
            return [Finding(check="errors", ok=True, message="no job finished in the last hour")]
        by_category: dict[str, int] = defaultdict(int)
        for r in recent:
            if r.status is JobStatus.FAILED:
                by_category[r.error_category.value if r.error_category else "unknown"] += 1
        failed = sum(by_category.values())
        rate = failed / len(recent)
        detail = ", ".join(f"{k}={v}" for k, v in sorted(by_category.items())) or "none"
        ok = rate <= self._config.error_rate_threshold
        message = f"{failed}/{len(recent)} jobs failed in the last hour ({rate:.0%}; by category: {detail})"
        return [Finding(check="errors", ok=ok, message=message)]

    async def _redis_limits(self) -> list[Finding]:
        facts = await self._tasks.redis_facts()
        found = []
        policy = facts["maxmemory_policy"]
        warning = "" if policy == "noeviction" else ": Redis may silently evict queued jobs; set noeviction"
        found.append(
            Finding(check="redis-eviction", ok=not warning, message=f"maxmemory-policy is {policy}{warning}")
        )
        clients, maxclients = int(facts["connected_clients"]), int(facts["maxclients"] or 0)
        ok = not maxclients or clients < 0.8 * maxclients
        found.append(
            Finding(check="redis-clients", ok=ok, message=f"{clients} connected clients of {maxclients}")
        )
        return found

    async def _unknown_writers(self) -> list[Finding]:
        now = datetime.now(UTC)
        recent = await self._repository.finished_since(now - timedelta(hours=1), limit=5000)
        known = await self._directory.seen_workers(now - timedelta(days=1))
        writers = {r.worker_id for r in recent if r.worker_id} - known
        if writers:  # Redis forgets dead workers (and all of them when wiped); the store does not
            known |= await self._repository.known_workers(writers)
        strangers: dict[str, int] = defaultdict(int)
        for r in recent:
            if r.worker_id and r.worker_id not in known:
                strangers[r.worker_id] += 1
        found = [
            Finding(
                check="unknown-writers",
                ok=False,
                message=(
                    f"{n} result(s) in the last hour written by worker {worker_id}, which never registered: "
                    "a worker outside the fleet (old code?) is consuming"
                ),
            )  # fmt: skip
            for worker_id, n in sorted(strangers.items())
        ]
        return found or [
            Finding(check="unknown-writers", ok=True, message="every result came from a known worker")
        ]

    async def _too_fast(self) -> list[Finding]:
        recent = await self._repository.finished_since(datetime.now(UTC) - timedelta(hours=1), limit=5000)
        by_task: dict[str, list[float]] = defaultdict(list)
        by_task_worker: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in recent:
            if r.status is JobStatus.SUCCEEDED and r.duration_ms is not None and r.worker_id:
                by_task[r.task].append(r.duration_ms)
                by_task_worker[(r.task, r.worker_id)].append(r.duration_ms)
        found = []
        for (task, worker_id), durations in sorted(by_task_worker.items()):
            fleet = by_task[task]
            if len(durations) < self._config.min_samples or len(fleet) < 2 * self._config.min_samples:
                continue
            mine, typical = statistics.median(durations), statistics.median(fleet)
            if typical >= self._config.too_fast_floor_ms and mine < self._config.too_fast_ratio * typical:
                found.append(Finding(check="too-fast", ok=False, message=(
                    f"worker {worker_id} finishes {task} in {mine:.0f} ms (median) while the fleet takes "
                    f"{typical:.0f} ms: it is probably not doing the work")))  # fmt: skip
        return found or [
            Finding(check="too-fast", ok=True, message="job durations are consistent across workers")
        ]
