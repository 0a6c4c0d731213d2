"""The Sentinel pool's retry: a connection error is retried a few times (the failover's reconnect),
a refused password never (it would only delay the line that says what to fix)."""

from __future__ import annotations

import pytest
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, RedisError

from src.infrastructure.redis_sentinel import FAILOVER_RETRIES, FailoverRetry


async def count_calls(error: RedisError) -> tuple[int, int]:
    calls = failures = 0

    async def do() -> None:
        nonlocal calls
        calls += 1
        raise error

    async def fail(_: RedisError) -> None:
        nonlocal failures
        failures += 1

    with pytest.raises(type(error)):
        await FailoverRetry(NoBackoff(), FAILOVER_RETRIES).call_with_retry(do, fail)
    return calls, failures


async def test_a_connection_error_is_retried_then_raised() -> None:
    assert await count_calls(ConnectionError("READONLY, now a replica")) == (FAILOVER_RETRIES + 1,) * 2


async def test_a_refused_password_is_not_retried() -> None:
    assert await count_calls(AuthenticationError("WRONGPASS")) == (1, 1)
