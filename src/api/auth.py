"""Who is calling, and may they: bearer tokens with roles, and a per-token rate limit.

Roles are ordered: reader (GET) < writer (create and import appointments) < operator (cancel, retry,
cleanup, versions, metrics). `API_ACCESS_TOKEN` is a full-access operator token for simple set-ups;
`API_TOKENS` adds named tokens with a role each. Tokens are compared in constant time, every one of
them, so timing does not tell which token nearly matched. The rate limit is kept in memory per
process (no Redis pool per limiter: the ghost-worker incident).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from enum import IntEnum

from src.config import Settings


class Role(IntEnum):
    READER = 1
    WRITER = 2
    OPERATOR = 3


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role


class TokenBook:
    """The configured tokens; `identify` returns the caller a token belongs to, or None."""

    def __init__(self, settings: Settings) -> None:
        self._entries: list[tuple[bytes, Caller]] = []
        if settings.api_access_token is not None:
            token = settings.api_access_token.get_secret_value().encode()
            self._entries.append((token, Caller("api-access-token", Role.OPERATOR)))
        for name, role, secret in settings.named_tokens:
            self._entries.append((secret.encode(), Caller(name, Role[role.upper()])))

    @property
    def open(self) -> bool:
        """No token configured (development only: Settings refuses it elsewhere)."""
        return not self._entries

    def identify(self, presented: str) -> Caller | None:
        found: Caller | None = None
        candidate = presented.encode()
        for token, caller in self._entries:  # no early exit: constant time over the whole book
            if hmac.compare_digest(candidate, token):
                found = caller
        return found


class RateLimiter:
    """A token bucket per caller: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, caller: str) -> float:
        """0 when the request may go ahead (and is counted), else seconds until it may."""
        if self._rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, last = self._buckets.get(caller, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens >= 1:
            self._buckets[caller] = (tokens - 1, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        return (1 - tokens) / self._rate
