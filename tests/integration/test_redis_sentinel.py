"""The Sentinel pool against a real primary, replica and sentinel: it finds the primary, follows a
failover within about PRIMARY_CHECK_S, and a write refused by a demoted primary (READONLY) is
retried on the new one instead of failing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from arq.connections import ArqRedis

from scripts.local_redis import RedisServer, start_redis_server, start_sentinel
from src.config import Environment, Settings
from src.infrastructure import redis_sentinel
from src.infrastructure.redis_pool import create_redis_pool

pytestmark = pytest.mark.integration
SERVICE = "mymaster"


@dataclass
class Topology:
    primary: RedisServer
    replica: RedisServer
    sentinel: RedisServer

    def sentinel_command(self, *args: str) -> object:
        client = redis.Redis(port=self.sentinel.port)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def primary_port(self) -> int:
        return int(self.sentinel_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])  # type: ignore[index]

    def replica_in_sync(self) -> bool:
        entries = self.sentinel_command("SENTINEL", "REPLICAS", SERVICE)
        assert isinstance(entries, list)
        return any(
            dict(zip(e[::2], e[1::2], strict=True)).get(b"master-link-status") == b"ok"
            and dict(zip(e[::2], e[1::2], strict=True)).get(b"flags") == b"slave"
            for e in entries
        )


def wait(predicate: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    primary = start_redis_server(tmp_path / "primary")
    replica = start_redis_server(tmp_path / "replica", None, "--replicaof", "127.0.0.1", str(primary.port))
    sentinel = start_sentinel(tmp_path / "sentinel", primary.port, SERVICE)
    found = Topology(primary, replica, sentinel)
    try:
        wait(found.replica_in_sync, "the replica in sync, known to the sentinel")
        yield found
    finally:
        for server in (sentinel, replica, primary):
            server.stop()


@pytest.fixture
async def pool(topology: Topology) -> AsyncIterator[ArqRedis]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment=Environment.TEST,
        redis_url=f"redis+sentinel://127.0.0.1:{topology.sentinel.port}/{SERVICE}/3",
    )
    assert settings.redis_db == 3 and settings.redis_display.endswith(f"/{SERVICE}/3")
    arq_redis = create_redis_pool(settings, max_connections=4)
    yield arq_redis
    await arq_redis.aclose(close_connection_pool=True)


def server_db3(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, db=3)


async def test_the_pool_writes_to_the_primary_the_sentinel_names(topology: Topology, pool: ArqRedis) -> None:
    await pool.set("k", "v")
    assert server_db3(topology.primary).get("k") == b"v"  # database 3 of the primary


async def test_a_failover_is_followed_within_a_few_checks(topology: Topology, pool: ArqRedis) -> None:
    """After `SENTINEL FAILOVER` (the old primary still up and writable), writes go to the new
    primary within a few PRIMARY_CHECK_S."""
    await pool.set("before", "1")
    assert topology.sentinel_command("SENTINEL", "FAILOVER", SERVICE) == b"OK"
    wait(lambda: topology.primary_port() == topology.replica.port, "the promotion")
    deadline = time.monotonic() + 5 * redis_sentinel.PRIMARY_CHECK_S + 5
    while True:
        await pool.set("after", "1")
        if server_db3(topology.replica).get("after") == b"1":
            break
        assert time.monotonic() < deadline, "writes never moved to the new primary"
        await asyncio.sleep(0.05)
    assert server_db3(topology.replica).get("before") == b"1"  # replicated before the switch


async def test_a_write_refused_as_readonly_is_retried_on_the_new_primary(
    topology: Topology, pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool does not notice the failover (its check is off here); the old primary is demoted
    to a replica: the next write gets READONLY, reconnects through the sentinel and succeeds on the
    new primary, with no error reaching the caller."""
    await pool.set("before", "1")  # a connection to the old primary, kept in the pool
    monkeypatch.setattr(redis_sentinel, "PRIMARY_CHECK_S", 3600.0)
    pool.connection_pool.primary_checked_at = time.monotonic()  # type: ignore[attr-defined]
    assert topology.sentinel_command("SENTINEL", "FAILOVER", SERVICE) == b"OK"
    wait(lambda: topology.primary_port() == topology.replica.port, "the promotion")
    old = redis.Redis(port=topology.primary.port)
    old.execute_command("REPLICAOF", "127.0.0.1", str(topology.replica.port))  # what the sentinel does later
    old.close()
    with pytest.raises(redis.exceptions.ReadOnlyError):
        server_db3(topology.primary).set("probe", "x")  # the demoted server refuses writes
    await pool.set("after", "2")
    assert server_db3(topology.replica).get("after") == b"2"
