"""Operator commands: `python -m src.cli COMMAND`.

allow-version V     allow code version V to claim jobs (run before rolling out V's workers)
retire-version V    fence version V (run after V's workers drained): its workers claim nothing
versions            list the allowed versions
workers             the live workers: id, host, version, state, jobs
job ID              one job's ledger record
retime-naive        one-off: correct appointment times stored as UTC before APP_TIMEZONE (dry run
                    unless --apply)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from src.application.services.doctor import Doctor, DoctorConfig
from src.application.services.health import HealthService, Level
from src.application.services.queue_admin import QueueAdmin
from src.application.services.retime import retime_naive_times
from src.application.services.task_service import TaskService
from src.config import Settings, settings_or_exit
from src.errors import AppError
from src.infrastructure.deployment_registry import DeploymentRegistry
from src.infrastructure.health_config import health_config
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository
from src.jobs.registry import REGISTRY

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


async def with_registry(settings: Settings, action: Callable[[DeploymentRegistry], Awaitable[int]]) -> int:
    pool = create_redis_pool(settings, max_connections=2)
    try:
        return await action(DeploymentRegistry(pool))
    finally:
        await pool.aclose(close_connection_pool=True)


async def allow_version(settings: Settings, args: argparse.Namespace) -> int:
    async def act(registry: DeploymentRegistry) -> int:
        await registry.allow_version(args.version)
        allowed = ", ".join(sorted(await registry.allowed_versions()))
        print(f"allowed {args.version}; allowed versions: {allowed}")
        return 0

    return await with_registry(settings, act)


async def retire_version(settings: Settings, args: argparse.Namespace) -> int:
    async def act(registry: DeploymentRegistry) -> int:
        removed = await registry.retire_version(args.version)
        remaining = ", ".join(sorted(await registry.allowed_versions()))
        verb = "retired" if removed else "was not allowed:"
        print(f"{verb} {args.version}; allowed versions: {remaining}")
        return 0 if removed else 1

    return await with_registry(settings, act)


async def versions(settings: Settings, args: argparse.Namespace) -> int:
    async def act(registry: DeploymentRegistry) -> int:
        for version in sorted(await registry.allowed_versions()):
            print(version)
        return 0

    return await with_registry(settings, act)


async def workers(settings: Settings, args: argparse.Namespace) -> int:
    async def act(registry: DeploymentRegistry) -> int:
        records = await registry.list_workers()
        leases = await registry.lease_counts(sorted({r.queue for r in records}))
        now = datetime.now(UTC)
        print(f"{'WORKER':40} {'HOST':16} {'VERSION':14} {'STATE':9} {'BEAT':>7} JOBS  REASON")
        for r in sorted(records, key=lambda r: r.worker_id):
            age = (now - r.last_beat_at).total_seconds()
            # a beat overdue by two intervals: the state shown is its last word, maybe no longer true
            beat = f"{age:5.1f}s" + ("!" if age > 2 * settings.worker_heartbeat_interval else " ")
            jobs, reason = leases.get(r.worker_id, 0), r.reason or ""
            where = f"{r.worker_id:40} {r.hostname:16} {r.version:14}"
            print(f"{where} {r.state.value:9} {beat:>7} {jobs:4}  {reason}")
        return 0

    return await with_registry(settings, act)


async def with_admin(settings: Settings, action: Callable[[QueueAdmin, TaskService], Awaitable[int]]) -> int:
    """Run `action` with the same services the API uses; AppError → message on stderr, exit 1."""
    pool = create_redis_pool(settings, max_connections=4)
    repository = build_repository(settings)
    try:
        await repository.init()
        tasks = TaskService(
            pool=pool,
            repository=repository,
            producer_version=settings.app_version,
            max_payload_bytes=settings.max_job_payload_bytes,
            catalog=REGISTRY,
        )
        return await action(QueueAdmin(repository, tasks, REGISTRY.queues), tasks)
    except AppError as exc:
        print(f"{type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await pool.aclose(close_connection_pool=True)
        await repository.close()


def dump(model: BaseModel | list[BaseModel]) -> str:
    if isinstance(model, list):
        return json.dumps([m.model_dump(mode="json") for m in model], indent=2)
    return json.dumps(model.model_dump(mode="json"), indent=2)


async def job(settings: Settings, args: argparse.Namespace) -> int:
    """The whole story of a job: every generation of its logical key, who ran it, on which version,
    when, how often, and how it ended; grep the logs for its request_id to see every line."""

    async def act(admin: QueueAdmin, tasks: TaskService) -> int:
        view = await tasks.get_job(args.job_id)
        record = view.record
        print(dump(view))
        latest = await admin.repository.latest_job(record.logical_key)
        print(f"\nstory of {record.logical_key} (request_id={record.envelope.request_id}):")
        for generation in range(1, (latest.generation if latest else record.generation) + 1):
            r = await admin.repository.get_job(f"{record.logical_key}:{generation}")
            if r is None:
                continue
            print(
                f"  {r.job_id}: {r.status.value} after {r.attempt} attempt(s) "
                f"(app failures {r.app_failures}, interruptions {r.interruptions}); last run by "
                f"{r.worker_id or '-'} on version {r.version or '-'}, started {r.started_at}, finished "
                f"{r.finished_at}, {r.duration_ms if r.duration_ms is not None else '-'} ms"
                + (f"; {r.error_category.value}: {r.error_message}" if r.error_category else "")
            )
        return 0

    return await with_admin(settings, act)


async def queue_info(settings: Settings, args: argparse.Namespace) -> int:
    async def act(admin: QueueAdmin, tasks: TaskService) -> int:
        for q in await admin.info():
            age = "-" if q.oldest_queued_age_s is None else f"{q.oldest_queued_age_s:.1f}s"
            print(
                f"{q.name:14} length={q.length} deferred={q.deferred} in_progress={q.in_progress} "
                f"failed={q.failed} finished={q.finished} cancelled={q.cancelled} "
                f"interrupted={q.interrupted} oldest={age}"
            )
        return 0

    return await with_admin(settings, act)


async def queue_health(settings: Settings, args: argparse.Namespace) -> int:
    """The health model, as `GET /api/v1/queue/health` answers it: exit 1 unless every check is ok."""

    async def act(admin: QueueAdmin, tasks: TaskService) -> int:
        registry = DeploymentRegistry(await tasks.get_pool())
        health = await HealthService(admin.repository, tasks, registry, health_config(settings)).check()
        for check in health.checks:
            print(f"{check.level.value:9} {check.name:13} {check.message}")
        print(f"status: {health.status.value}")
        return 0 if health.status is Level.OK else 1

    return await with_admin(settings, act)


async def cancel(settings: Settings, args: argparse.Namespace) -> int:
    async def act(admin: QueueAdmin, tasks: TaskService) -> int:
        record = await admin.cancel(args.job_id)
        print(f"{record.job_id}: {record.status.value}")
        return 0

    return await with_admin(settings, act)


async def retry(settings: Settings, args: argparse.Namespace) -> int:
    async def act(admin: QueueAdmin, tasks: TaskService) -> int:
        report = await admin.retry(args.job_id, request_id=None)
        print(f"{report.previous_job_id} → {report.job_id}: {report.status}")
        return 0

    return await with_admin(settings, act)


async def cleanup(settings: Settings, args: argparse.Namespace) -> int:
    async def act(admin: QueueAdmin, tasks: TaskService) -> int:
        older = settings.arq_keep_result if args.older_than is None else args.older_than
        report = await admin.cleanup(older_than_s=older)
        print(
            f"deleted {report.ledger_records_deleted} ledger records and {report.results_deleted} results "
            f"of jobs finished more than {report.older_than_s:.0f}s ago"
        )
        return 0

    return await with_admin(settings, act)


async def doctor(settings: Settings, args: argparse.Namespace) -> int:
    async def act(admin: QueueAdmin, tasks: TaskService) -> int:
        config = DoctorConfig(
            heartbeat_interval_s=settings.worker_heartbeat_interval,
            lease_s=settings.job_lease_seconds,
            queues=REGISTRY.queues,
            llm_degraded_share=settings.llm_degraded_fallback_share,
        )
        findings = await Doctor(
            admin.repository, tasks, DeploymentRegistry(await tasks.get_pool()), config
        ).run()
        for f in findings:
            print(f"{'ok     ' if f.ok else 'PROBLEM'} {f.check:16} {f.message}")
        problems = sum(not f.ok for f in findings)
        print(f"{problems} problem(s) found" if problems else "no problems found")
        return 1 if problems else 0

    return await with_admin(settings, act)


async def retime_naive(settings: Settings, args: argparse.Namespace) -> int:
    """The one-off correction of times stored by the JSON path before APP_TIMEZONE (see
    src/application/services/retime.py): a dry run unless `--apply`."""
    cutoff = datetime.fromisoformat(args.created_before)
    if cutoff.tzinfo is None:
        print("--created-before needs an offset (e.g. 2026-12-06T12:00:00Z)", file=sys.stderr)
        return 2
    repository = build_repository(settings)
    await repository.init()
    try:
        report = await retime_naive_times(
            repository, zone=settings.timezone, created_before=cutoff, apply=args.apply
        )
    finally:
        await repository.close()
    verb = "moved" if args.apply else "would move"
    count = report.moved if args.apply else report.to_move
    print(f"{verb} {count} of {report.examined} appointment(s) created one by one before "
          f"{cutoff.isoformat()} from their UTC wall time to {settings.app_timezone}"
          f"{'' if args.apply else ' (a dry run: --apply writes)'}")  # fmt: skip
    for appointment_id, stored, corrected in report.samples:
        print(f"  {appointment_id}: {stored.isoformat()} -> {corrected.isoformat()}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m src.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, handler in (("allow-version", allow_version), ("retire-version", retire_version)):
        cmd = sub.add_parser(name)
        cmd.add_argument("version")
        cmd.set_defaults(handler=handler)
    sub.add_parser("versions").set_defaults(handler=versions)
    sub.add_parser("workers").set_defaults(handler=workers)
    for name, handler in (("job", job), ("cancel", cancel), ("retry", retry)):
        cmd = sub.add_parser(name)
        cmd.add_argument("job_id")
        cmd.set_defaults(handler=handler)
    sub.add_parser("queue-info").set_defaults(handler=queue_info)
    sub.add_parser("doctor").set_defaults(handler=doctor)
    sub.add_parser("queue-health").set_defaults(handler=queue_health)
    clean = sub.add_parser("cleanup")
    clean.add_argument("--older-than", type=float, default=None, help="seconds (default: ARQ_KEEP_RESULT)")
    clean.set_defaults(handler=cleanup)
    retime = sub.add_parser(
        "retime-naive",
        help="one-off: correct times that POST /api/v1/appointments stored as UTC before APP_TIMEZONE",
    )
    retime.add_argument("--created-before", required=True, help="the upgrade's time, with an offset")
    retime.add_argument("--apply", action="store_true", help="write (default: a dry run that reports)")
    retime.set_defaults(handler=retime_naive)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Command = args.handler
    return asyncio.run(handler(settings_or_exit(), args))


if __name__ == "__main__":
    sys.exit(main())
