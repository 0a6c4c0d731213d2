"""Entry point of the ARQ worker: `python workers.py [--queue NAME] [--burst] [--verbose] [--check]`.

Before it starts, it checks that Redis and the store answer (exit 1 with a clear message within
10 s otherwise). `--check` is the container health check: exit 0 only when every worker process of
this container has a fresh heartbeat in Redis and is neither fenced nor mismatched.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from src.application.ports import Repository
from src.config import Settings, settings_or_exit
from src.domain.jobs import DEFAULT_QUEUE
from src.errors import StoreUnavailable

PREFLIGHT_TIMEOUT_S = 10.0
RELOAD_FLAGS = ("--reload", "--watch")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the normalization worker (arq).")
    parser.add_argument(
        "--queue",
        default=DEFAULT_QUEUE,
        help="queue to consume: one that a job of src/jobs/registry.py names (default: normalization; "
        "maintenance runs the reconciler)",
    )
    parser.add_argument("--burst", action="store_true", help="process what is queued, then exit")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--check", action="store_true", help="health check of this container's workers")
    args, unknown = parser.parse_known_args(argv)
    reload_flags = [flag for flag in unknown if flag.split("=")[0] in RELOAD_FLAGS]
    if reload_flags:
        parser.exit(
            2,
            f"{' '.join(reload_flags)}: auto-reload is refused: a reload kills running jobs mid-flight "
            "(the job-stall incident). Restart the worker instead; it drains first.\n",
        )
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


async def preflight(settings: Settings) -> str | None:
    """None when Redis and the store answer within the timeout, else what is wrong (no secrets)."""
    from src.infrastructure.redis_pool import create_redis_pool
    from src.infrastructure.redis_problems import cluster_refusal, redis_problem
    from src.infrastructure.repository_factory import build_repository

    pool = create_redis_pool(settings, max_connections=2)
    try:
        await asyncio.wait_for(pool.ping(), PREFLIGHT_TIMEOUT_S / 2)
        refusal = await asyncio.wait_for(cluster_refusal(pool), PREFLIGHT_TIMEOUT_S / 2)
    except Exception as exc:  # noqa: BLE001 - any failure is reported with what it means
        return redis_problem(exc).replace("Redis ", f"Redis at {settings.redis_display} ", 1)
    finally:
        await pool.aclose(close_connection_pool=True)
    if refusal is not None:
        return f"Redis at {settings.redis_display} {refusal}"
    repository = build_repository(settings)
    try:
        await asyncio.wait_for(_init_store(repository), PREFLIGHT_TIMEOUT_S / 2)
    except StoreUnavailable as exc:
        return f"store {repository.identity()} is unreachable ({exc.message})"
    except Exception as exc:  # noqa: BLE001
        return f"store {repository.identity()} is unreachable ({type(exc).__name__})"
    finally:
        await repository.close()
    return None


async def _init_store(repository: Repository) -> None:
    """Initialize the store, retrying while it is momentarily unavailable (processes of one
    deployment start together; the caller bounds the wait)."""
    while True:
        try:
            await repository.init()
            return
        except StoreUnavailable as exc:
            last = exc
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            raise last from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_or_exit()
    from src.logging import configure_logging

    configure_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
    if args.check:
        from src.worker.liveness import check

        status, message = asyncio.run(check(settings))
        print(message, file=sys.stdout if status == 0 else sys.stderr)
        return status
    from src.jobs.registry import REGISTRY

    if args.queue not in REGISTRY.queues:
        print(f"worker not started: no job is declared on queue {args.queue!r} (queues: "
              f"{', '.join(REGISTRY.queues)}; see src/jobs/registry.py)", file=sys.stderr)  # fmt: skip
        return 2
    problem = asyncio.run(preflight(settings))
    if problem is not None:
        print(f"worker not started: {problem}", file=sys.stderr)
        return 1

    from src.worker.banner import render_banner
    from src.worker.event_loop import new_event_loop
    from src.worker.settings import build_worker

    # arq's Worker binds to the current event loop at construction.
    asyncio.set_event_loop(new_event_loop(settings.worker_event_loop))
    worker = build_worker(settings, args.queue, burst=args.burst)
    banner = render_banner(
        settings, queue_name=worker.queue_name, tasks=list(worker.functions), worker_id=worker.worker_id
    )
    print(banner, flush=True)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
