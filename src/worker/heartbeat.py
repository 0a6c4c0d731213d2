"""The worker's heartbeat: every `WORKER_HEARTBEAT_INTERVAL` it decides whether this worker may claim
jobs, publishes its registry record, renews its job leases and the ledger heartbeats of its runs, and
starts a drain when the worker should be recycled.

A worker claims only when its code version is allowed and its data fingerprint equals the one the
API published; otherwise it claims nothing, says why on every beat, and fails its health check.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from src.domain.workers import LLMStats, WorkerCounters, WorkerRecord, WorkerRegistration, WorkerState
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_problems import RedisProblemLog
from src.worker.state_files import write_state_file

log = structlog.get_logger(__name__)

SUMMARY_EVERY_S = 60.0
REGISTER_EVERY_S = 3600.0  # how often the store's record of this worker is refreshed
STARTUP_GRACE_S = 60.0  # waiting for the API this long after a start is normal, not an error


@dataclass(frozen=True)
class LifecycleConfig:
    version: str
    beat_interval_s: float
    lease_s: float
    max_jobs_before_restart: int
    max_rss_mb: int
    state_dir: str
    state_scope: str = "default"  # which deployment's workers these are (src/worker/state_files.py)
    direct_handoff: bool = True  # WORKER_DIRECT_HANDOFF: idle workers wait for jobs handed to them

    @property
    def record_ttl_ms(self) -> int:
        """A worker record expires after three missed beats."""
        return int(self.beat_interval_s * 3 * 1000)


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc, else the peak from getrusage)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BeatingWorker(Protocol):
    """What the heartbeat reads and steers of its worker (`AppWorker`): declared here, so the
    heartbeat does not import the worker that owns it."""

    lifecycle: LifecycleConfig
    ctx: dict[Any, Any]
    burst: bool
    worker_id: str
    queue_name: str
    allow_pick_jobs: bool
    tasks: dict[str, asyncio.Task[None]]
    functions: dict[str, Any]
    max_jobs: int
    pool: ArqRedis

    @property
    def jobs_complete(self) -> int: ...

    @property
    def jobs_failed(self) -> int: ...

    @property
    def jobs_retried(self) -> int: ...

    def drain(self, reason: str) -> None: ...

    def release_running_jobs(self, reason: str) -> int: ...


class Heartbeat:
    def __init__(self, worker: BeatingWorker) -> None:
        self.worker = worker
        self.config = worker.lifecycle
        self.registry = DeploymentRegistry(worker.pool)
        self.state = WorkerState.WAITING
        self.reason: str | None = "starting"
        self.draining = False
        self.started_at = datetime.now(UTC)
        self._task: asyncio.Task[None] | None = None
        self._state_file: Path | None = None
        self._last_summary = time.monotonic()
        self._done_at_last_summary = 0
        self._registered_at = float("-inf")
        self._ever_ok = False

    @property
    def ctx(self) -> dict[Any, Any]:
        return self.worker.ctx

    async def start(self) -> None:
        """Called after the start-up hook: allow a first version, beat once, then keep beating."""
        if await self.registry.allow_first_version(self.config.version):
            log.warning("first version on an empty deployment: allowed", version=self.config.version)
        await self._register()  # in the store before any claim: what it writes is never a stranger's
        await self.beat()
        self._write_state_file()
        if self.worker.burst and self.state is not WorkerState.OK:
            raise RuntimeError(f"refusing to run in burst mode: {self.state.value} ({self.reason})")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)
        try:
            await self.registry.remove_worker(self.worker.worker_id)
        except Exception as exc:  # noqa: BLE001 - Redis may be gone at shutdown; the record expires anyway
            log.warning("could not remove the registry record", error=type(exc).__name__)

    async def _loop(self) -> None:
        redis_problems = RedisProblemLog("heartbeat")
        while True:
            await asyncio.sleep(self.config.beat_interval_s)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:  # named once per change, not on every beat
                redis_problems.failed(exc)
            except Exception as exc:  # noqa: BLE001 - a failed beat must not kill the worker; say so
                log.error("heartbeat failed", error=f"{type(exc).__name__}: {exc}")
            else:
                redis_problems.succeeded()

    async def beat(self) -> None:
        allowed, published, queued = await self.registry.read_policy(
            self.config.version, self.worker.queue_name
        )
        previous, previous_reason = self.state, self.reason
        self.state, self.reason = self._decide(allowed, published)
        self.worker.allow_pick_jobs = self.state is WorkerState.OK
        self._ever_ok = self._ever_ok or self.state is WorkerState.OK
        if self.state is WorkerState.WAITING and self._starting():
            # A normal start: in one container the workers come up before the API publishes.
            if previous is not self.state or self.reason != previous_reason:
                log.info("waiting for the API before claiming", state=self.state.value, reason=self.reason)
        elif self.state in (WorkerState.FENCED, WorkerState.MISMATCH, WorkerState.WAITING):
            log.error("worker not claiming jobs", state=self.state.value, reason=self.reason)
            if self.state is not WorkerState.WAITING:
                self.worker.release_running_jobs(self.reason or self.state.value)
        elif previous is not self.state:
            log.info("worker state", state=self.state.value)
        running = [job_id for job_id, task in self.worker.tasks.items() if not task.done()]
        record = self._record(running)
        await self.registry.publish(
            record,
            ttl_ms=self.config.record_ttl_ms,
            job_ids=running,
            lease_ms=int(self.config.lease_s * 1000),
            queue_key=self.worker.queue_name,
        )
        await self._beat_ledger()
        runner = self.ctx.get("runner")
        if runner is not None:
            runner.lines.flush()
        if time.monotonic() - self._registered_at > REGISTER_EVERY_S:
            await self._register()
        self._maybe_log_summary(record, queued)
        self._maybe_recycle(record)

    def _starting(self) -> bool:
        """Not yet claimed since it started, and within `STARTUP_GRACE_S` of its start."""
        return not self._ever_ok and (datetime.now(UTC) - self.started_at).total_seconds() < STARTUP_GRACE_S

    def _decide(self, allowed: bool, published: str | None) -> tuple[WorkerState, str | None]:
        mine = self.ctx.get("fingerprint")
        if self.draining:
            return WorkerState.DRAINING, "stopping"
        if mine is None:
            return WorkerState.WAITING, "start-up hook has not finished"
        if published is None:
            return WorkerState.WAITING, "no API has published its data fingerprint in this Redis database"
        if published != mine:
            return WorkerState.MISMATCH, (
                f"data fingerprint {mine} differs from the API's {published}: this worker uses another "
                "store or Redis database (check MONGODB_URL / DATABASE_NAME / SQLITE_PATH / REDIS_URL)"
            )
        if not allowed:
            return WorkerState.FENCED, (
                f"code version {self.config.version} is not allowed (allow it with "
                f"`python -m src.cli allow-version {self.config.version}`, or retire this worker)"
            )
        return WorkerState.OK, None

    def _record(self, running: list[str]) -> WorkerRecord:
        w = self.worker
        return WorkerRecord(
            worker_id=w.worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            version=self.config.version,
            queue=w.queue_name,
            tasks=sorted(name for name in w.functions),
            fingerprint=str(self.ctx.get("fingerprint") or ""),
            started_at=self.started_at,
            last_beat_at=datetime.now(UTC),
            state=self.state,
            reason=self.reason,
            counters=WorkerCounters(complete=w.jobs_complete, failed=w.jobs_failed, retried=w.jobs_retried),
            current_jobs=running,
            max_jobs=w.max_jobs,
            rss_mb=round(rss_mb(), 1),
            task_stats=self.ctx.get("task_stats", {}),
            llm=self._llm_stats(),
        )

    def _llm_stats(self) -> LLMStats | None:
        counters = getattr(self.ctx.get("address_normalizer"), "counters", None)
        stats = getattr(counters, "stats", None)
        return stats() if callable(stats) else None

    async def _register(self) -> None:
        """Record this worker in the store (Redis's registry forgets it when it dies or Redis is
        wiped; the store tells its results from a stranger's for as long as they are kept)."""
        repository = self.ctx.get("repository")
        if repository is None:
            return
        now = datetime.now(UTC)
        await repository.register_worker(
            WorkerRegistration(
                worker_id=self.worker.worker_id,
                version=self.config.version,
                hostname=socket.gethostname(),
                queue=self.worker.queue_name,
                started_at=self.started_at,
                seen_at=now,
            )
        )
        self._registered_at = time.monotonic()

    async def _beat_ledger(self) -> None:
        runs: dict[str, int] = self.ctx.get("active_runs", {})
        repository = self.ctx.get("repository")
        if runs and repository is not None:
            await repository.heartbeat_jobs(list(runs.items()), at=datetime.now(UTC))

    def _maybe_log_summary(self, record: WorkerRecord, queued: int) -> None:
        """One INFO line a minute per worker (per-job lines are DEBUG), so logs stay readable at
        full throughput; when idle it is the "alive, queue empty" line of the railway guide."""
        now = time.monotonic()
        if now - self._last_summary < SUMMARY_EVERY_S:
            return
        self._last_summary = now
        c = record.counters
        done = c.complete + c.failed + c.retried
        if not record.current_jobs and done == self._done_at_last_summary:
            log.info(
                f"alive, queue empty (queued={queued}, in_progress={len(record.current_jobs)})",
                state=self.state.value,
            )
        else:
            log.info("worker summary", queued=queued, in_progress=len(record.current_jobs),
                     jobs_since_last=done - self._done_at_last_summary, complete=c.complete, failed=c.failed,
                     retried=c.retried, rss_mb=record.rss_mb, state=self.state.value)  # fmt: skip
        self._done_at_last_summary = done

    def _maybe_recycle(self, record: WorkerRecord) -> None:
        """Drain past `WORKER_MAX_RSS_MB` (the job-count limit is checked as each job ends)."""
        if self.config.max_rss_mb and (record.rss_mb or 0) > self.config.max_rss_mb:
            self.worker.drain(
                f"WORKER_MAX_RSS_MB exceeded ({record.rss_mb} MB > {self.config.max_rss_mb} MB)"
            )

    def _write_state_file(self) -> None:
        """Let `python workers.py --check` in this container find this process's worker id."""
        try:
            self._state_file = write_state_file(
                self.config.state_dir, self.config.state_scope, self.worker.worker_id
            )
        except OSError as exc:
            log.warning("cannot write the health-check state file", error=str(exc))
