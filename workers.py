"""Entry point of the ARQ worker: `python workers.py [--queue NAME] [--burst] [--verbose] [--check]`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from src.config import get_settings
from src.domain.jobs import QueueName, queue_key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the normalization worker (arq).")
    parser.add_argument(
        "--queue",
        choices=[q.value for q in QueueName],
        default=QueueName.NORMALIZATION.value,
        help="queue to consume (default: normalization)",
    )
    parser.add_argument("--burst", action="store_true", help="process what is queued, then exit")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--check", action="store_true", help="health check: exit 0 when the worker is alive")
    return parser.parse_args(argv)


async def check(queue: QueueName) -> int:
    from src.infrastructure.redis_pool import create_redis_pool

    settings = get_settings()
    pool = create_redis_pool(settings, max_connections=2)
    try:
        key = queue_key(queue) + ":health-check"
        value = await asyncio.wait_for(pool.get(key), 10)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy; say why
        print(f"unhealthy: Redis unreachable ({type(exc).__name__})", file=sys.stderr)
        return 1
    finally:
        await pool.aclose(close_connection_pool=True)
    if not value:
        print("unhealthy: no recent worker health record", file=sys.stderr)
        return 1
    print(f"healthy: {value.decode()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    from src.logging import configure_logging

    configure_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
    queue = QueueName(args.queue)
    if args.check:
        return asyncio.run(check(queue))

    from src.worker.banner import render_banner
    from src.worker.settings import build_worker

    # arq's Worker binds to the current event loop at construction.
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = build_worker(settings, queue, burst=args.burst)
    print(
        render_banner(
            settings, queue_name=worker.queue_name, tasks=list(worker.functions), worker_id=worker.worker_id
        ),
        flush=True,
    )
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
