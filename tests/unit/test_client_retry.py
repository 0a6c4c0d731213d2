"""The client's retry policy: which answers are sent again, and after how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
from clinic_client import RetryPolicy
from clinic_client._retry import retry_after_s


def answer(
    status: int, headers: dict[str, str] | None = None, request_headers: dict[str, str] | None = None
) -> httpx.Response:
    request = httpx.Request("POST", "http://api/x", headers=request_headers or {})
    return httpx.Response(status, headers=headers or {}, request=request)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    """Delta-seconds and HTTP dates both give seconds; a past date gives 0; garbage gives None."""
    assert retry_after_s("7") == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (retry_after_s(later) or 0) <= 120
    assert retry_after_s(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_only_429_503_and_a_keyed_409_are_retried_within_the_attempts() -> None:
    """429 and 503 wait Retry-After (capped); a 409 is retried only for a request with an
    Idempotency-Key and a Retry-After; other errors and the last attempt are final."""
    policy = RetryPolicy(attempts=3, backoff_s=0.1, max_wait_s=5)
    assert policy.wait_before_retry(answer(429, {"Retry-After": "2"}), 1) == 2.0
    assert policy.wait_before_retry(answer(503, {"Retry-After": "600"}), 2) == 5.0
    assert policy.wait_before_retry(answer(503, {"Retry-After": "1"}), 3) is None
    backoff = policy.wait_before_retry(answer(503), 2)
    assert backoff is not None and 0.1 <= backoff <= 0.2
    keyed = {"Idempotency-Key": "k"}
    assert policy.wait_before_retry(answer(409, {"Retry-After": "1"}, keyed), 1) == 1.0
    assert policy.wait_before_retry(answer(409, {"Retry-After": "1"}), 1) is None
    for final in (400, 404, 422, 500):
        assert policy.wait_before_retry(answer(final, {"Retry-After": "1"}), 1) is None
