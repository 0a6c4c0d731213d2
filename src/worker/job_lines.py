"""One INFO line when a job starts and one when it succeeds, under a rate limit.

The lines carry `job_id`, `request_id` and `worker_id` (bound per job), so grepping a request id in
every log finds the job that served it. A worker doing thousands of jobs a second would drown its
log platform (they cap lines per second), so at most `JOB_LOG_LINES_PER_SECOND` of these lines are
written a second; the rest are counted and summed up in one line. Lines that matter one by one
(interruptions, timeouts, retries, failures, quarantines) are logged by the job runner at WARNING or
ERROR and never limited. Below INFO nothing is built at all: the check is made before the line.
"""

from __future__ import annotations

import logging
import time

import structlog

log = structlog.get_logger(__name__)


class JobLines:
    def __init__(self, per_second: int) -> None:
        self._per_second = per_second
        self._enabled = per_second > 0 and logging.getLogger(__name__).isEnabledFor(logging.INFO)
        self._second = 0
        self._written = 0
        self._left_out = 0

    def started(self, attempt: int) -> None:
        if self._enabled and self._allow():
            log.info("job started", attempt=attempt)

    def succeeded(self, attempt: int, duration_ms: int) -> None:
        if self._enabled and self._allow():
            log.info("job succeeded", attempt=attempt, duration_ms=duration_ms)

    def flush(self) -> None:
        """Say how many lines were left out in the seconds that are over (the heartbeat calls this,
        so the count is said even when no job follows)."""
        if self._left_out and int(time.time()) != self._second:
            self._summarize()

    def _allow(self) -> bool:
        second = int(time.time())
        if second != self._second:
            if self._left_out:
                self._summarize()
            self._second, self._written = second, 0
        if self._written < self._per_second:
            self._written += 1
            return True
        self._left_out += 1
        return False

    def _summarize(self) -> None:
        log.info(
            f"{self._left_out} job line(s) left out: over JOB_LOG_LINES_PER_SECOND={self._per_second}",
            left_out=self._left_out,
            job_id=None,  # a summary of many jobs, whichever one's ids are bound now
            request_id=None,
            batch_id=None,
            task=None,
        )
        self._left_out = 0
