"""What a Redis error means to an operator, named once per change rather than on every retry.

A Redis at `maxmemory` with `noeviction` answers PING and reads but refuses every write ("OOM
command not allowed"): that is not "unreachable", and the fix is not the network. A wrong password
fails the same way on every retry: said once, with the variable to fix, then again only when the
state changes (another problem, or Redis back).
"""

from __future__ import annotations

from typing import Any

import structlog
from redis.exceptions import AuthenticationError, OutOfMemoryError, RedisError, ResponseError

log = structlog.get_logger(__name__)


def redis_problem(exc: BaseException) -> str:
    """A short, secret-free account of what is wrong, with what to check."""
    text = str(exc)
    if isinstance(exc, OutOfMemoryError) or (isinstance(exc, ResponseError) and text.startswith("OOM")):
        return (
            "Redis refuses writes: out of memory (maxmemory reached, policy noeviction): free or add memory"
        )
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return "Redis refused the password: check the password in REDIS_URL or REDIS_PASSWORD"
    if isinstance(exc, ResponseError):
        return f"Redis refused a command: {text[:120]}"
    return f"Redis is unreachable ({type(exc).__name__}: {text[:120]})"


CLUSTER_UNSUPPORTED = (
    "is a Redis Cluster, which is not supported (the queue's scripts and transactions touch keys "
    "in several hash slots): point REDIS_URL at one primary, or at Sentinel (docs/deployment.md)"
)


async def cluster_refusal(redis: Any) -> str | None:
    """Why this Redis cannot be used when it runs in cluster mode; None otherwise (or when it does
    not say: a managed Redis may refuse INFO)."""
    try:
        info = await redis.info("cluster")
    except RedisError:
        return None
    return CLUSTER_UNSUPPORTED if str(info.get("cluster_enabled", "0")) == "1" else None


class RedisProblemLog:
    """Logs a Redis problem at ERROR when it starts or changes, and once more when it is over."""

    def __init__(self, what: str) -> None:
        self._what = what  # which loop failed, e.g. "claim loop"
        self._current: str | None = None

    def failed(self, exc: BaseException) -> str:
        problem = redis_problem(exc)
        if problem != self._current:
            self._current = problem
            log.error(
                f"{self._what}: {problem}; retrying (said once until it changes)",
                error_type=type(exc).__name__,
            )
        return problem

    def succeeded(self) -> None:
        if self._current is not None:
            log.warning(f"{self._what}: Redis answers again", was=self._current)
            self._current = None
