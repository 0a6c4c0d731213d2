"""Operator commands: `python -m src.cli COMMAND`.

allow-version V     allow code version V to claim jobs (run before rolling out V's workers)
retire-version V    fence version V (run after V's workers drained): its workers claim nothing
versions            list the allowed versions
workers             the live workers: id, host, version, state, jobs
job ID              one job's ledger record
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from src.config import Settings, get_settings
from src.infrastructure.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository

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
        print(f"{'WORKER':40} {'HOST':16} {'VERSION':14} {'STATE':9} JOBS  REASON")
        for r in sorted(records, key=lambda r: r.worker_id):
            jobs, reason = len(r.current_jobs), r.reason or ""
            print(f"{r.worker_id:40} {r.hostname:16} {r.version:14} {r.state.value:9} {jobs:4}  {reason}")
        return 0

    return await with_registry(settings, act)


async def job(settings: Settings, args: argparse.Namespace) -> int:
    repository = build_repository(settings)
    await repository.init()
    try:
        record = await repository.get_job(args.job_id)
    finally:
        await repository.close()
    if record is None:
        print(f"job {args.job_id} not found", file=sys.stderr)
        return 1
    print(json.dumps(record.model_dump(mode="json"), indent=2))
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
    job_cmd = sub.add_parser("job")
    job_cmd.add_argument("job_id")
    job_cmd.set_defaults(handler=job)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Command = args.handler
    return asyncio.run(handler(get_settings(), args))


if __name__ == "__main__":
    sys.exit(main())
