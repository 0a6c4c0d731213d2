"""Every Redis key and channel of the queue protocol (and the API's idempotency records), and the
hand-off inbox's item format.

A job's own keys keep arq's names (`arq:job:<id>`, `arq:result:<id>`, ...), so arq's client tools
(`arq.jobs.Job(...).info()`, `.result()`) read our jobs and results; `tests/unit/test_arq_guard.py`
checks that they still match arq's. The queue's sorted set is `jobs:v1:<queue>` (`queue_key`, in the
domain: worker records and the API name a queue by it); the keys around it are built here.
"""

from __future__ import annotations

import hashlib
import time
from typing import NamedTuple

from src.domain.jobs import PROTOCOL_VERSION

JOB_PREFIX = "arq:job:"  # the payload, until the job finishes
RESULT_PREFIX = "arq:result:"  # the result, kept ARQ_KEEP_RESULT seconds
IN_PROGRESS_PREFIX = "arq:in-progress:"  # the lease: valued with its worker's id, expires unless renewed
RETRY_PREFIX = "arq:retry:"  # the transport's start counter (the ledger counts the tries)
ABORT_SET = "arq:abort"  # ids an operator asked to cancel, scored with the request's time
RETRY_KEY_TTL_S = 88_400  # as arq's
ABORT_MAX_AGE_MS = 60_000  # an abort request for a job nobody runs is dropped after this (arq's)
CRON_LEASE_KEEP_MS = 60_000  # a finished cron tick keeps its lease this long: no second run of it

# Pub/sub channel a worker publishes a job id on when it has finished the job (ledger and result
# written): what callers waiting for a result listen to, through one subscription per process.
DONE_CHANNEL = f"jobs:{PROTOCOL_VERSION}:done"


def wake_channel(queue_name: str) -> str:
    """Pub/sub channel of a queue (its Redis key, e.g. `jobs:v1:normalization`) an enqueue publishes
    on, so idle workers claim at once instead of at their next poll (the poll stays as the net)."""
    return f"{queue_name}:wake"


def idle_workers_key(queue_name: str) -> str:
    """Sorted set of the workers of a queue waiting for a direct hand-off (member `<lease ms> <worker
    id>`, score: when the registration lapses, ms on Redis's clock): an enqueue gives a new job to one
    of them instead of leaving it for a claim."""
    return f"{queue_name}:idle"


def inbox_key(queue_name: str, worker_id: str = "") -> str:
    """A worker's hand-off inbox (a list it blocks on); with no worker id, the prefix of the keys."""
    return f"{queue_name}:inbox:{worker_id}"


def idempotency_key(scope: str) -> str:
    """The API's idempotency record of `scope` (an `Idempotency-Key` and what it is for), hashed:
    the client's key never appears in Redis as such, and its length is bounded."""
    return f"idem:{PROTOCOL_VERSION}:" + hashlib.sha256(scope.encode()).hexdigest()


class ClaimedJob(NamedTuple):
    """A job this worker holds the lease of, with what its claim (or hand-off) fetched."""

    job_id: str
    score: int  # its score before the claim: where it goes back to if it stays queued
    payload: bytes | None  # None: the payload expired before the job started
    job_try: int  # the transport's start counter
    aborted: bool  # an operator asked to cancel it before it started


def parse_handed_job(item: bytes) -> ClaimedJob:
    """Read an inbox item, `<try> <score> <aborted 0|1> <id length> <id><payload>` (the enqueue
    script writes it; the payload is the job's bytes as stored, so nothing is parsed twice)."""
    job_try, score, aborted, id_length, rest = item.split(b" ", 4)
    size = int(id_length)
    if size <= 0 or size > len(rest):
        raise ValueError(f"malformed hand-off item: id length {size} of {len(rest)} bytes")
    return ClaimedJob(
        job_id=rest[:size].decode(),
        score=int(float(score)),
        payload=rest[size:],
        job_try=int(job_try),
        aborted=aborted == b"1",
    )


def reply_text(value: bytes | str) -> str:
    """A key or member as Redis replied it (bytes), as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def now_ms() -> int:
    """Epoch milliseconds, the unit of every score and timestamp the protocol writes from Python."""
    return int(time.time() * 1000)
