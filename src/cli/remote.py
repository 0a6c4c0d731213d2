"""The commands run against a deployed API (`--api URL`, or CLINIC_API_URL with CLINIC_API_TOKEN)
through the typed client (clients/python): no Redis or store credentials. Each answers the same
document as its direct twin in `src.cli.direct`."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from src.cli import direct
from src.cli.outcome import Exit, Outcome, failure

try:
    from clinic_client import ApiError, AsyncClient, NotFound
except ImportError:  # pragma: no cover - an install without the client package
    AsyncClient = None  # type: ignore[assignment,misc]

DIRECT_ONLY = {
    "doctor": "doctor reads the ledger and Redis directly; run it where REDIS_URL and the store are set",
    "retime-naive": "retime-naive rewrites the store; run it where the store is set",
}
RemoteCommand = Callable[[Any, argparse.Namespace], Awaitable[Outcome]]


async def run(name: str, args: argparse.Namespace, url: str | None, token: str | None) -> Outcome:
    """Run command `name` through the API; a refusal or an outage is its outcome."""
    if name in DIRECT_ONLY:
        return failure("usage", f"not available with --api: {DIRECT_ONLY[name]}", Exit.USAGE)
    if AsyncClient is None:
        detail = "the API client is not installed: `pip install ./clients/python` (make install does)"
        return failure("usage", detail, Exit.USAGE)
    try:
        async with AsyncClient(url, token) as api:
            return await COMMANDS[name](api, args)
    except ApiError as exc:
        problem = exc.problem.model_dump(exclude_none=True)
        code = Exit.UNAVAILABLE if exc.status in (429, 503) or exc.status >= 500 else Exit.ATTENTION
        return failure(
            exc.problem.type, f"{exc.status} {exc.problem.title}: {exc.problem.detail}", code, problem=problem
        )
    except httpx.TransportError as exc:
        return failure(
            "unreachable", f"the API did not answer: {type(exc).__name__}: {exc}", Exit.UNAVAILABLE
        )
    except ValueError as exc:  # no URL
        return failure("usage", str(exc), Exit.USAGE)


async def allow_version(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    allowed = await api.allow_version(args.version)
    return Outcome({"version": args.version, "allowed_versions": allowed},
                   [f"allowed {args.version}; allowed versions: {', '.join(allowed)}"])  # fmt: skip


async def retire_version(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    before = (await api.workers(limit=1)).allowed_versions
    remaining = await api.retire_version(args.version)
    return direct.retired(args.version, args.version in before, remaining)


async def versions(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    allowed = (await api.workers(limit=1)).allowed_versions
    return Outcome({"allowed_versions": allowed}, allowed)


async def workers(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await api.workers(limit=500, cursor=cursor)
        for view in page.items:
            w = view.worker
            rows.append({
                "worker_id": w["worker_id"], "hostname": w["hostname"], "version": w["version"],
                "state": w["state"], "queue": w["queue"], "heartbeat_age_s": view.heartbeat_age_s,
                "beat_overdue": view.beat_overdue, "leases": view.leases, "reason": w.get("reason"),
            })  # fmt: skip
        if (cursor := page.next_cursor) is None:
            return Outcome({"workers": rows}, direct.workers_table(rows))


async def job(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    """The job and every generation of its logical key (ids are `{logical_key}:{generation}`)."""
    found = await api.get_job(args.job_id)
    latest = found
    while latest.superseded_by:  # a retry made a later generation: the story goes on to its end
        latest = await api.get_job(latest.superseded_by)
    logical_key, _, last = latest.job_id.rpartition(":")
    generations: list[dict[str, Any]] = []
    for generation in range(1, int(last) + 1):
        try:
            generations.append((await api.get_job(f"{logical_key}:{generation}")).model_dump(mode="json"))
        except NotFound:  # cleaned up
            continue
    summaries = [direct.generation_summary(r) for r in generations]
    return direct.story(found.model_dump(mode="json"), logical_key, summaries)


async def queue_info(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    queues = [q.model_dump(mode="json") for q in (await api.queue_info(limit=100)).items]
    return Outcome({"queues": queues}, direct.queue_lines(queues))


async def queue_health(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    return direct.health_outcome((await api.queue_health()).model_dump(mode="json"))


async def cancel(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    record = await api.cancel_job(args.job_id)
    return Outcome({"job_id": record.job_id, "status": record.status}, [f"{record.job_id}: {record.status}"])


async def retry(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    return direct.retried((await api.retry_job(args.job_id)).model_dump(mode="json"))


async def cleanup(api: AsyncClient, args: argparse.Namespace) -> Outcome:
    return direct.cleaned((await api.cleanup(older_than_s=args.older_than)).model_dump(mode="json"))


COMMANDS: dict[str, RemoteCommand] = {
    "allow-version": allow_version,
    "retire-version": retire_version,
    "versions": versions,
    "workers": workers,
    "job": job,
    "queue-info": queue_info,
    "queue-health": queue_health,
    "cancel": cancel,
    "retry": retry,
    "cleanup": cleanup,
}
