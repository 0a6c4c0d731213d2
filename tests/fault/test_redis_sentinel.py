"""Redis behind Sentinel (`REDIS_URL=redis+sentinel://…`): a real primary, replica and sentinel on
loopback ports, the API and workers as processes. Jobs keep flowing through a `SENTINEL FAILOVER`:
connections move to the new primary, what the old one took after the switch (and lost when demoted)
is run again from the ledger, and no job is lost or written twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis

from scripts.local_redis import RedisServer, start_redis_server, start_sentinel
from tests.fault.harness import BASE_ENV, Cluster, duplicated, log_events, wait_until

pytestmark = pytest.mark.fault

SERVICE = "mymaster"
RECONCILE_S = float(BASE_ENV["RECONCILE_EVERY_SECONDS"])


def sentinel_ready(sentinel: RedisServer, replica: RedisServer) -> bool:
    """The sentinel knows the replica and the replica is in sync: a failover can promote it."""
    client = redis.Redis(port=sentinel.port)
    try:
        replicas = [
            dict(zip(entry[::2], entry[1::2], strict=True))
            for entry in client.execute_command("SENTINEL", "REPLICAS", SERVICE)
        ]
    finally:
        client.close()
    return any(
        r.get(b"port") == str(replica.port).encode()
        and r.get(b"flags") == b"slave"
        and r.get(b"master-link-status") == b"ok"
        for r in replicas
    )


def primary_port(sentinel: RedisServer) -> int:
    client = redis.Redis(port=sentinel.port)
    try:
        return int(client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])
    finally:
        client.close()


async def test_jobs_flow_through_a_sentinel_failover_and_none_is_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The API and two workers reach Redis through a sentinel. An import (16 chunk jobs) and single
    creates run while `SENTINEL FAILOVER` promotes the replica: every job succeeds, no row is written
    twice, and every process logs the switch to the new primary."""
    replica = start_redis_server(
        tmp_path / "replica", None, "--replicaof", "127.0.0.1", str(cluster.redis.port)
    )
    sentinel = start_sentinel(tmp_path / "sentinel", cluster.redis.port, SERVICE)
    try:
        await wait_until(lambda: sentinel_ready(sentinel, replica), timeout=30, what="the replica in sync")
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0"
        env = {"REDIS_URL": url, "BATCH_CHUNK_SIZE": "25", "TEST_ITEM_DELAY_MS": "80"}
        await cluster.start_api(**env)
        maintenance = await cluster.start_worker("maintenance", queue="maintenance", **env)
        workers = [await cluster.start_worker(f"worker-{i}", **env) for i in range(2)]

        report = await cluster.import_csv(400)  # 16 chunks of 25 rows, 2 s each: running through the failover
        jobs = dict(await cluster.create_appointments(10, prefix="Before"))
        await asyncio.sleep(0.5)  # chunks running on both workers

        client = redis.Redis(port=sentinel.port)
        assert client.execute_command("SENTINEL", "FAILOVER", SERVICE) == b"OK"
        client.close()
        failover_at = time.monotonic()
        jobs |= await cluster.create_appointments(20, prefix="During")  # answered 201 throughout
        await wait_until(lambda: primary_port(sentinel) == replica.port, timeout=30, what="the promotion")

        chunk_ids = list(report["job_ids"])
        records = await cluster.wait_all_succeeded_logical(
            [*chunk_ids, *jobs.values()], timeout=10 * RECONCILE_S + 120
        )
        recovered_s = time.monotonic() - failover_at
        assert len(records) == len(chunk_ids) + 30
        assert duplicated(cluster.effects()) == {}
        for process in [*workers, cluster.api]:
            assert process is not None
            await wait_until(
                lambda p=process: bool(
                    log_events(p, "Redis primary changed (Sentinel failover): reconnecting")
                ),
                timeout=30,
                what=f"{process.name} to log the new primary",
            )
        vanished = len(log_events(maintenance, "job vanished from the queue: enqueued again"))
        print(
            f"RECOVERY sentinel failover: {len(records)} jobs all succeeded {recovered_s:.1f}s after "
            f"SENTINEL FAILOVER; re-enqueued from the ledger: {vanished}; rows written twice: 0"
        )
    finally:
        sentinel.stop()
        replica.stop()
