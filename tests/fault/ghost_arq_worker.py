"""A ghost: a plain arq 0.28 worker as someone might start it by hand on the same Redis, with arq's
defaults (pickle serializer, the `arq:queue` queue) and functions named like ours. Each run of one
of its functions appends a JSON line to GHOST_RECORD_PATH.

    REDIS_URL=redis://127.0.0.1:PORT/0 GHOST_RECORD_PATH=ghost.jsonl python -m tests.fault.ghost_arq_worker

GHOST_QUEUE points it at another queue (ours, `jobs:v1:normalization`: the ghost-worker incident
itself); GHOST_SERIALIZER=json gives it a JSON serializer (it can then read our jobs and runs its own
functions on them) instead of pickle (it fails every job it takes, unable to read it).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func


def _record(ctx: dict[str, Any], task: str) -> str:
    with open(os.environ["GHOST_RECORD_PATH"], "a") as fh:
        fh.write(json.dumps({"task": task, "job_id": ctx["job_id"]}) + "\n")
    return "ran in the ghost"


async def normalize_appointment(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> str:
    return _record(ctx, "normalize_appointment")


async def normalize_batch_chunk(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> str:
    return _record(ctx, "normalize_batch_chunk")


async def announce(ctx: dict[str, Any]) -> None:
    print(f"ghost worker polling {os.environ.get('GHOST_QUEUE', 'arq:queue')}", flush=True)


def main() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())
    serializers: dict[str, Any] = {}
    if os.environ.get("GHOST_SERIALIZER") == "json":
        serializers = {"job_serializer": lambda o: json.dumps(o).encode(), "job_deserializer": json.loads}
    worker = Worker(
        functions=[func(normalize_appointment), func(normalize_batch_chunk)],
        redis_settings=RedisSettings.from_dsn(os.environ["REDIS_URL"]),
        queue_name=os.environ.get("GHOST_QUEUE", "arq:queue"),
        on_startup=announce,
        poll_delay=0.05,
        **serializers,
    )
    worker.run()


if __name__ == "__main__":
    main()
