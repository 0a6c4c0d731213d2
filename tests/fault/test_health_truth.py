"""The health model tells the truth when things break, the same way everywhere: Redis refusing
writes is named as out of memory (not "unreachable"), and a worker killed with -9 shows as lost in
the health answer, doctor and /metrics, while the API stays ready."""

from __future__ import annotations

import asyncio
import re
import signal

import pytest
from redis import Redis

from tests.fault.harness import BEAT_S, Cluster, Process, log_events, wait_for, wait_until

pytestmark = pytest.mark.fault
OOM = "Redis refuses writes: out of memory (maxmemory reached, policy noeviction): free or add memory"


def check(health: dict[str, object], name: str) -> dict[str, str]:
    checks = health["checks"]
    assert isinstance(checks, list)
    found: dict[str, str] = next(c for c in checks if c["name"] == name)
    return found


async def test_redis_out_of_memory_is_named_as_such_everywhere(cluster: Cluster) -> None:
    """Redis at maxmemory with noeviction: /readyz stays 200 (creates are stored and deferred), the
    health answer, queue-health and doctor say Redis refuses writes, out of memory, and a worker
    logs that once (not "unreachable" on every retry); all heal once memory is freed."""
    await cluster.start_api()
    await cluster.start_worker("maintenance", queue="maintenance")
    worker = await cluster.start_worker("worker")
    redis = Redis(port=cluster.redis.port)
    try:
        redis.config_set("maxmemory", 1)  # below what is used: every write is now refused
        response = await cluster.client.post(
            "/api/v1/appointments",
            json={
                "paciente": "A",
                "documento": "52998224725",
                "endereco": "Rua A 1",
                "data_hora": "2026-12-01T10:00",
            },
        )
        assert response.status_code == 201 and response.json()["enqueue_status"] == "deferred"
        assert (await cluster.client.get("/readyz")).status_code == 200

        async def named() -> dict[str, object] | None:
            health: dict[str, object] = (await cluster.client.get("/api/v1/queue/health")).json()
            redis_check = check(health, "redis")
            return health if "out of memory" in redis_check["message"] else None

        health = await wait_for(named, timeout=30, what="the health answer to name the OOM")
        assert health["status"] == "degraded" and check(health, "redis")["level"] == "degraded"
        doctor = cluster.run_cli("doctor")
        assert doctor.returncode == 1 and "Redis refuses writes: out of memory" in doctor.stdout, (
            doctor.stdout
        )
        queue_health = cluster.run_cli("queue-health")
        assert queue_health.returncode == 1 and "out of memory" in queue_health.stdout
        metrics = (await cluster.client.get("/metrics")).text
        assert re.search(r'^clinic_health\{check="redis"\} 0\.0$', metrics, re.MULTILINE), metrics

        def oom_lines() -> list[dict[str, object]]:
            return log_events(worker, f"heartbeat: {OOM}; retrying (said once until it changes)")

        await wait_until(lambda: bool(oom_lines()), timeout=30 * BEAT_S, what="the worker to name the OOM")
        await asyncio.sleep(6 * BEAT_S)  # six more failed beats
        assert len(oom_lines()) == 1, "the OOM is logged once, not on every beat"
        assert "redis unreachable" not in worker.log_text().lower()
    finally:
        redis.config_set("maxmemory", 0)
        redis.close()

    async def healed() -> bool:
        health = (await cluster.client.get("/api/v1/queue/health")).json()
        return bool(check(health, "redis")["level"] == "ok")

    await wait_for(healed, timeout=30, what="Redis to take writes again")


async def test_a_killed_worker_is_lost_in_health_doctor_and_metrics(cluster: Cluster) -> None:
    """kill -9 of a worker: within a few beats its record expires, and it is named lost (queue,
    last beat) by the health answer, doctor and `clinic_workers_lost`, for minutes after, which an
    alert can fire on; a worker stopped cleanly is never lost."""
    await cluster.start_api()
    await cluster.start_worker("maintenance", queue="maintenance")
    victim = await cluster.start_worker("victim")
    clean = await cluster.start_worker("clean")
    victim.send(signal.SIGKILL)
    assert victim.wait_exit(10) == -signal.SIGKILL
    clean.send(signal.SIGTERM)
    assert clean.wait_exit(30) == 0

    async def lost() -> dict[str, object] | None:
        health: dict[str, object] = (await cluster.client.get("/api/v1/queue/health")).json()
        return health if victim.worker_id in check(health, "workers-lost")["message"] else None

    health = await wait_for(lost, timeout=10 * BEAT_S + 10, what="the killed worker to be named lost")
    message = check(health, "workers-lost")["message"]
    assert "1 worker(s) stopped beating without a clean stop" in message and "normalization" in message
    assert clean.worker_id not in message
    assert [w["worker_id"] for w in health["lost_workers"]] == [victim.worker_id]  # type: ignore[index]
    doctor = cluster.run_cli("doctor")
    assert doctor.returncode == 1 and victim.worker_id in doctor.stdout
    metrics = (await cluster.client.get("/metrics")).text
    assert re.search(r'^clinic_workers_lost\{queue="normalization"\} 1\.0$', metrics, re.MULTILINE), metrics
    assert (await cluster.client.get("/readyz")).status_code == 200


RETIRED = (
    "this API's code version was retired: it does not allow it again, and workers of it claim nothing "
    "(`python -m src.cli allow-version` to undo)"
)


async def test_a_retired_version_stays_retired_while_its_api_runs(cluster: Cluster) -> None:
    """retire-version V with an API of version V running: the API no longer allows V again (it said
    so once, in its log), V's worker is fenced; allow-version V undoes it."""
    await cluster.start_api()
    worker = await cluster.start_worker("worker")
    retired = cluster.run_cli("retire-version", "fault-a")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    await cluster.wait_worker_state(worker, "fenced", timeout=30 * BEAT_S)
    await asyncio.sleep(10 * BEAT_S)  # ten of the API's beats: it used to allow its version again
    assert "fault-a" not in await cluster.registry().allowed_versions()
    assert cluster.api is not None and len(log_events(cluster.api, RETIRED)) == 1
    allowed = cluster.run_cli("allow-version", "fault-a")
    assert allowed.returncode == 0
    await cluster.wait_worker_state(worker, "ok", timeout=30 * BEAT_S)


async def test_workers_view_counts_leases_and_flags_an_overdue_beat(cluster: Cluster) -> None:
    """`src.cli workers` and /api/v1/workers count running jobs from the leases (not the record of the
    last beat), and flag a beat overdue by two intervals: a worker killed with -9 is no longer shown
    as a plain `ok` while its record lives on."""
    beat = 3.0
    env = {"WORKER_HEARTBEAT_INTERVAL": str(beat), "JOB_LEASE_SECONDS": str(3 * beat)}
    await cluster.start_api(**env)
    worker = await cluster.start_worker("slow-beat", TEST_ITEM_DELAY_MS="20000", ARQ_MAX_JOBS="4", **env)
    await cluster.create_appointments(4)
    await wait_for(lambda: _four(cluster, worker), timeout=30, what="four jobs running")
    view = (await cluster.client.get("/api/v1/workers")).json()
    (mine,) = [w for w in view["items"] if w["worker"]["worker_id"] == worker.worker_id]
    assert mine["leases"] == 4 and mine["beat_overdue"] is False
    listed = cluster.run_cli("workers", **env)
    row = next(line for line in listed.stdout.splitlines() if line.startswith(worker.worker_id or "?"))
    assert row.split()[5] == "4", listed.stdout  # WORKER HOST VERSION STATE BEAT JOBS

    worker.send(signal.SIGKILL)
    assert worker.wait_exit(10) == -signal.SIGKILL

    async def overdue() -> dict[str, object] | None:
        view = (await cluster.client.get("/api/v1/workers")).json()
        found = [w for w in view["items"] if w["worker"]["worker_id"] == worker.worker_id]
        return found[0] if found and found[0]["beat_overdue"] else None

    stale = await wait_for(overdue, timeout=3 * beat, what="the dead worker's beat to be overdue")
    assert stale["worker"]["state"] == "ok"  # type: ignore[index]
    listed = cluster.run_cli("workers", **env)
    row = next((line for line in listed.stdout.splitlines() if line.startswith(worker.worker_id or "?")), "")
    assert not row or "!" in row, listed.stdout  # gone, or flagged


async def _four(cluster: Cluster, worker: Process) -> bool:
    return len(await cluster.running_on(worker)) == 4
