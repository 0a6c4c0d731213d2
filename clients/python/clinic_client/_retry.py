"""When and how long to wait before sending a request again: 429 and 503 (and a 409 for a request
carrying an Idempotency-Key whose first copy is still being processed), honouring `Retry-After`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRYABLE = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` sends at most (1 = no retry); waits follow `Retry-After` when the API gives it,
    else `backoff_s * 2**n` with jitter, never more than `max_wait_s`."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def wait_before_retry(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before sending again after this answer to send number `attempt` (from
        1), or None when it is final."""
        if attempt >= self.attempts or not retryable(response):
            return None
        given = retry_after_s(response.headers.get("retry-after"))
        if given is not None:
            return min(given, self.max_wait_s)
        return min(self.backoff_s * 2.0 ** (attempt - 1) * random.uniform(0.5, 1.0), self.max_wait_s)


def retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRYABLE:
        return True
    # the first request with this key is still being processed: its answer will come
    return (
        response.status_code == 409
        and "idempotency-key" in response.request.headers
        and "retry-after" in response.headers
    )


def retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
