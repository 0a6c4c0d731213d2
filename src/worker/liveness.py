"""`python workers.py --check`: are this deployment's worker processes in this container healthy?

Each worker process writes a state file (src/worker/state_files.py); the check reads this
deployment's live ones, then each worker's registry record: a heartbeat within three intervals, and
a state that claims (not fenced, mismatched or waiting). The image's health check runs the same.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from src.config import Settings
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_pool import create_redis_pool
from src.worker.state_files import deployment_scope, live_state_files


async def check(settings: Settings, *, redis_timeout_s: float = 8.0) -> tuple[int, str]:
    """Health of this deployment's worker processes in this container (WORKER_STATE_DIR)."""

    # this deployment's workers only (another checkout's on this machine are not ours), and only
    # processes that still run (a pid reused after a kill -9 is told apart by its start time)
    scope = deployment_scope(settings.redis_display)
    ids = [found.worker_id for found in live_state_files(settings.worker_state_dir, scope)]
    if not ids:
        return 1, "unhealthy: no worker process is running in this container"
    pool = create_redis_pool(settings, max_connections=2)
    try:
        registry = DeploymentRegistry(pool)
        records = await asyncio.wait_for(
            asyncio.gather(*(registry.get_worker(i) for i in ids)), redis_timeout_s
        )
    except Exception as exc:  # noqa: BLE001
        return 1, f"unhealthy: Redis unreachable ({type(exc).__name__})"
    finally:
        await pool.aclose(close_connection_pool=True)
    max_age = 3 * settings.worker_heartbeat_interval
    problems = []
    for worker_id, record in zip(ids, records, strict=True):
        if record is None:
            problems.append(f"{worker_id}: no heartbeat in Redis")
            continue
        age = (datetime.now(UTC) - record.last_beat_at).total_seconds()
        if age > max_age:
            problems.append(f"{worker_id}: heartbeat {age:.1f}s old")
        elif not record.state.healthy:
            problems.append(f"{worker_id}: {record.state.value} ({record.reason})")
    if problems:
        return 1, "unhealthy: " + "; ".join(problems)
    return 0, f"healthy: {len(ids)} worker(s)"
