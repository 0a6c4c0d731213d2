"""What a Redis error means to an operator, named once per change rather than on every retry.

A Redis at `maxmemory` with `noeviction` answers PING and reads but refuses every write ("OOM
command not allowed"): that is not "unreachable", and the fix is not the network. A wrong password
fails the same way on every retry: said once, with the variable to fix, then again only when the
state changes (another problem, or Redis back).
"""

from __future__ import annotations

import structlog
from redis.exceptions import AuthenticationError, OutOfMemoryError, ResponseError

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
