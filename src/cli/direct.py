"""The commands run with direct access to Redis and the store (REDIS_URL and the store's settings),
over the same services as the API."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from src.api.schemas import job_response
from src.application.services.doctor import Doctor, DoctorConfig
from src.application.services.health import HealthService, Level
from src.application.services.queue_admin import QueueAdmin
from src.application.services.retime import retime_naive_times
from src.application.services.task_service import TaskService
from src.cli.outcome import Exit, Outcome, failure
from src.config import Settings
from src.domain.jobs import JobRecord
from src.errors import AppError, TransientError
from src.infrastructure.health_config import health_config
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository
from src.jobs.registry import REGISTRY


def _refused(exc: Exception) -> Outcome:
    if isinstance(exc, AppError):
        code = Exit.UNAVAILABLE if isinstance(exc, TransientError) else Exit.ATTENTION
        return failure(type(exc).__name__, f"{type(exc).__name__}: {exc.message}", code)
    return failure(
        "Unavailable", f"Redis or the store did not answer: {type(exc).__name__}: {exc}", Exit.UNAVAILABLE
    )


async def with_registry(
    settings: Settings, action: Callable[[DeploymentRegistry], Awaitable[Outcome]]
) -> Outcome:
    pool = create_redis_pool(settings, max_connections=2)
    try:
        return await action(DeploymentRegistry(pool))
    except (RedisError, OSError) as exc:
        return _refused(exc)
    finally:
        await pool.aclose(close_connection_pool=True)


async def with_admin(
    settings: Settings, action: Callable[[QueueAdmin, TaskService], Awaitable[Outcome]]
) -> Outcome:
    """Run `action` with the same services the API uses; a refusal or an outage is its outcome."""
    pool = create_redis_pool(settings, max_connections=4)
    repository = build_repository(settings)
    try:
        await repository.init()
        tasks = TaskService(
            RedisJobQueue(pool, max_payload_bytes=settings.max_job_payload_bytes),
            repository,
            producer_version=settings.app_version,
            catalog=REGISTRY,
        )
        return await action(QueueAdmin(repository, tasks, REGISTRY.queues), tasks)
    except (AppError, RedisError, OSError) as exc:
        return _refused(exc)
    finally:
        await pool.aclose(close_connection_pool=True)
        await repository.close()


async def allow_version(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(registry: DeploymentRegistry) -> Outcome:
        await registry.allow_version(args.version)
        allowed = sorted(await registry.allowed_versions())
        line = f"allowed {args.version}; allowed versions: {', '.join(allowed)}"
        return Outcome({"version": args.version, "allowed_versions": allowed}, [line])

    return await with_registry(settings, act)


async def retire_version(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(registry: DeploymentRegistry) -> Outcome:
        removed = await registry.retire_version(args.version)
        remaining = sorted(await registry.allowed_versions())
        return retired(args.version, removed, remaining)

    return await with_registry(settings, act)


def retired(version: str, removed: bool, remaining: list[str]) -> Outcome:
    verb = "retired" if removed else "was not allowed:"
    line = f"{verb} {version}; allowed versions: {', '.join(remaining)}"
    document = {"version": version, "retired": removed, "allowed_versions": remaining}
    return Outcome(document, [line], Exit.OK if removed else Exit.ATTENTION)


async def versions(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(registry: DeploymentRegistry) -> Outcome:
        allowed = sorted(await registry.allowed_versions())
        return Outcome({"allowed_versions": allowed}, allowed)

    return await with_registry(settings, act)


def workers_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'WORKER':40} {'HOST':16} {'VERSION':14} {'STATE':9} {'BEAT':>7} JOBS  REASON"]
    for r in rows:
        # a beat overdue by two intervals: the state shown is its last word, maybe no longer true
        beat = f"{r['heartbeat_age_s']:5.1f}s" + ("!" if r["beat_overdue"] else " ")
        where = f"{r['worker_id']:40} {r['hostname']:16} {r['version']:14}"
        lines.append(f"{where} {r['state']:9} {beat:>7} {r['leases']:4}  {r['reason'] or ''}")
    return lines


async def workers(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(registry: DeploymentRegistry) -> Outcome:
        records = await registry.list_workers()
        leases = await registry.lease_counts(sorted({r.queue for r in records}))
        now = datetime.now(UTC)
        rows = []
        for r in sorted(records, key=lambda r: r.worker_id):
            age = (now - r.last_beat_at).total_seconds()
            rows.append({
                "worker_id": r.worker_id, "hostname": r.hostname, "version": r.version,
                "state": r.state.value, "queue": r.queue, "heartbeat_age_s": round(age, 3),
                "beat_overdue": age > 2 * settings.worker_heartbeat_interval,
                "leases": leases.get(r.worker_id, 0), "reason": r.reason,
            })  # fmt: skip
        return Outcome({"workers": rows}, workers_table(rows))

    return await with_registry(settings, act)


def generation_summary(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("job_id", "status", "attempt", "app_failures", "interruptions", "worker_id", "version",
            "started_at", "finished_at", "duration_ms", "error_category", "error_message")  # fmt: skip
    return {k: r.get(k) for k in keys}


def story(job: dict[str, Any], logical_key: str, generations: list[dict[str, Any]]) -> Outcome:
    """The whole story of a job: every generation of its logical key, who ran it, on which version,
    when, how often, and how it ended; grep the logs for its request_id to see every line."""
    lines = [*_json_lines(job), "", f"story of {logical_key} (request_id={job.get('request_id')}):"]
    for r in generations:
        duration = r["duration_ms"] if r["duration_ms"] is not None else "-"
        error = f"; {r['error_category']}: {r['error_message']}" if r["error_category"] else ""
        lines.append(
            f"  {r['job_id']}: {r['status']} after {r['attempt']} attempt(s) (app failures "
            f"{r['app_failures']}, interruptions {r['interruptions']}); last run by {r['worker_id'] or '-'} "
            f"on version {r['version'] or '-'}, started {r['started_at']}, finished {r['finished_at']}, "
            f"{duration} ms{error}"
        )
    document = {"job": job, "logical_key": logical_key, "generations": generations}
    return Outcome(document, lines)


def _json_lines(value: dict[str, Any]) -> list[str]:
    return json.dumps(value, indent=2, default=str).splitlines()


async def job(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(admin: QueueAdmin, tasks: TaskService) -> Outcome:
        view = await tasks.get_job(args.job_id)
        record = view.record
        latest = await admin.repository.latest_job(record.logical_key)
        found: list[JobRecord] = []
        for generation in range(1, (latest.generation if latest else record.generation) + 1):
            r = await admin.repository.get_job(f"{record.logical_key}:{generation}")
            if r is not None:
                found.append(r)
        generations = [generation_summary(r.model_dump(mode="json")) for r in found]
        return story(job_response(view).model_dump(mode="json"), record.logical_key, generations)

    return await with_admin(settings, act)


def queue_lines(queues: list[dict[str, Any]]) -> list[str]:
    lines = []
    for q in queues:
        age = "-" if q["oldest_queued_age_s"] is None else f"{q['oldest_queued_age_s']:.1f}s"
        lines.append(
            f"{q['name']:14} length={q['length']} deferred={q['deferred']} in_progress={q['in_progress']} "
            f"failed={q['failed']} finished={q['finished']} cancelled={q['cancelled']} "
            f"interrupted={q['interrupted']} oldest={age}"
        )
    return lines


async def queue_info(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(admin: QueueAdmin, tasks: TaskService) -> Outcome:
        queues = [q.model_dump(mode="json") for q in sorted(await admin.info(), key=lambda q: q.name)]
        return Outcome({"queues": queues}, queue_lines(queues))

    return await with_admin(settings, act)


def health_outcome(health: dict[str, Any]) -> Outcome:
    lines = [f"{c['level']:9} {c['name']:13} {c['message']}" for c in health["checks"]]
    lines.append(f"status: {health['status']}")
    return Outcome(health, lines, Exit.OK if health["status"] == Level.OK.value else Exit.ATTENTION)


async def queue_health(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(admin: QueueAdmin, tasks: TaskService) -> Outcome:
        registry = DeploymentRegistry(await tasks.get_pool())
        health = await HealthService(admin.repository, tasks, registry, health_config(settings)).check()
        return health_outcome(health.model_dump(mode="json"))

    return await with_admin(settings, act)


async def cancel(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(admin: QueueAdmin, tasks: TaskService) -> Outcome:
        record = await admin.cancel(args.job_id)
        document = {"job_id": record.job_id, "status": record.status.value}
        return Outcome(document, [f"{record.job_id}: {record.status.value}"])

    return await with_admin(settings, act)


def retried(report: dict[str, Any]) -> Outcome:
    return Outcome(report, [f"{report['previous_job_id']} → {report['job_id']}: {report['status']}"])


async def retry(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(admin: QueueAdmin, tasks: TaskService) -> Outcome:
        return retried((await admin.retry(args.job_id, request_id=None)).model_dump(mode="json"))

    return await with_admin(settings, act)


def cleaned(report: dict[str, Any]) -> Outcome:
    line = (
        f"deleted {report['ledger_records_deleted']} ledger records and {report['results_deleted']} "
        f"results of jobs finished more than {report['older_than_s']:.0f}s ago"
    )
    return Outcome(report, [line])


async def cleanup(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(admin: QueueAdmin, tasks: TaskService) -> Outcome:
        older = settings.arq_keep_result if args.older_than is None else args.older_than
        return cleaned((await admin.cleanup(older_than_s=older)).model_dump(mode="json"))

    return await with_admin(settings, act)


async def doctor(settings: Settings, args: argparse.Namespace) -> Outcome:
    async def act(admin: QueueAdmin, tasks: TaskService) -> Outcome:
        config = DoctorConfig(
            heartbeat_interval_s=settings.worker_heartbeat_interval,
            lease_s=settings.job_lease_seconds,
            queues=REGISTRY.queues,
            llm_degraded_share=settings.llm_degraded_fallback_share,
        )
        registry = DeploymentRegistry(await tasks.get_pool())
        findings = await Doctor(admin.repository, tasks, registry, config).run()
        lines = [f"{'ok     ' if f.ok else 'PROBLEM'} {f.check:16} {f.message}" for f in findings]
        problems = sum(not f.ok for f in findings)
        lines.append(f"{problems} problem(s) found" if problems else "no problems found")
        document = {"findings": [f.model_dump() for f in findings], "problems": problems}
        return Outcome(document, lines, Exit.ATTENTION if problems else Exit.OK)

    return await with_admin(settings, act)


async def retime_naive(settings: Settings, args: argparse.Namespace) -> Outcome:
    """The one-off correction of times stored by the JSON path before APP_TIMEZONE (see
    src/application/services/retime.py): a dry run unless `--apply`."""
    try:
        cutoff = datetime.fromisoformat(args.created_before)
    except ValueError:
        return failure("usage", "--created-before is not an ISO 8601 time", Exit.USAGE)
    if cutoff.tzinfo is None:
        return failure("usage", "--created-before needs an offset (e.g. 2026-12-06T12:00:00Z)", Exit.USAGE)
    repository = build_repository(settings)
    try:
        await repository.init()
        report = await retime_naive_times(
            repository, zone=settings.timezone, created_before=cutoff, apply=args.apply
        )
    except AppError as exc:
        return _refused(exc)
    finally:
        await repository.close()
    verb = "moved" if args.apply else "would move"
    count = report.moved if args.apply else report.to_move
    lines = [f"{verb} {count} of {report.examined} appointment(s) created one by one before "
             f"{cutoff.isoformat()} from their UTC wall time to {settings.app_timezone}"
             f"{'' if args.apply else ' (a dry run: --apply writes)'}"]  # fmt: skip
    samples = []
    for appointment_id, stored, corrected in report.samples:
        lines.append(f"  {appointment_id}: {stored.isoformat()} -> {corrected.isoformat()}")
        samples.append({"appointment_id": appointment_id, "stored": stored, "corrected": corrected})
    document = {"applied": args.apply, "examined": report.examined, "to_move": report.to_move,
                "moved": report.moved, "samples": samples}  # fmt: skip
    return Outcome(document, lines)
