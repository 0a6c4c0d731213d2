"""`Client` (sync) and `AsyncClient`: thin wrappers over httpx that send the operations of
`_calls`, retry 429 and 503 as `RetryPolicy` says, and wait for a job's result by long polling."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from clinic_client import _calls as calls
from clinic_client._retry import RetryPolicy
from clinic_client.errors import JobWaitTimeout
from clinic_client.models import (
    Appointment,
    BatchProgress,
    CleanupReport,
    CreatedAppointment,
    FailedJobsPage,
    Health,
    ImportReport,
    Job,
    JobRecord,
    NewAppointment,
    Page,
    QueueInfo,
    RetryReport,
    WorkersPage,
)

R = TypeVar("R")
DEFAULT_TIMEOUT_S = 30.0


def _settings(base_url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    """The API's URL and auth header: arguments first, then CLINIC_API_URL and CLINIC_API_TOKEN."""
    url = base_url or os.environ.get("CLINIC_API_URL")
    if not url:
        raise ValueError("no API URL: pass base_url or set CLINIC_API_URL")
    secret = token if token is not None else os.environ.get("CLINIC_API_TOKEN")
    return url.rstrip("/"), ({"Authorization": f"Bearer {secret}"} if secret else {})


class Client:
    """The API, synchronously. `Client("https://api.example", token="...")`, or from the
    environment (CLINIC_API_URL, CLINIC_API_TOKEN); use it as a context manager or `close()` it."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        url, auth = _settings(base_url, token)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=url, headers={**auth, **(headers or {})}, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: calls.Call[R]) -> R:
        """Send one operation, again after a 429 or 503 (see `RetryPolicy`), and read its answer."""
        attempt = 0
        while True:
            attempt += 1
            response = self._http.send(call.request(self._http))
            wait = self.retry.wait_before_retry(response, attempt)
            if wait is None:
                return call.read(response)
            time.sleep(wait)

    # appointments and imports
    def create_appointment(
        self, appointment: NewAppointment | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> CreatedAppointment:
        return self.send(calls.create_appointment(appointment, idempotency_key))

    def import_file(
        self, file: str | Path | bytes, *, filename: str | None = None, idempotency_key: str | None = None
    ) -> ImportReport:
        return self.send(calls.import_file(file, filename, idempotency_key))

    def get_appointment(self, appointment_id: str) -> Appointment:
        return self.send(calls.get_appointment(appointment_id))

    def get_batch(self, batch_id: str) -> BatchProgress:
        return self.send(calls.get_batch(batch_id))

    def list_batches(self, *, limit: int | None = None, cursor: str | None = None) -> Page[BatchProgress]:
        return self.send(calls.list_batches(limit, cursor))

    def iter_batches(self, *, limit: int | None = None) -> Iterator[BatchProgress]:
        """Every batch, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_batches(limit=limit, cursor=cursor)
            yield from page.items
            if (cursor := page.next_cursor) is None:
                return

    # jobs
    def get_job(self, job_id: str, *, wait_s: float = 0) -> Job:
        return self.send(calls.get_job(job_id, wait_s))

    def wait_for_job(self, job_id: str, *, timeout_s: float = 300.0, follow: bool = True) -> Job:
        """The job once it is finished (succeeded, failed or cancelled), by long polling; a job
        retried under a new generation (`superseded_by`) is followed to it unless `follow=False`.
        JobWaitTimeout (with its last status) when `timeout_s` runs out first."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            job = self.get_job(job_id, wait_s=max(0.0, remaining))
            if follow and job.superseded_by:
                job_id = job.superseded_by
                continue
            if job.finished:
                return job
            if time.monotonic() >= deadline:
                raise JobWaitTimeout(job, timeout_s)

    def list_jobs(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[JobRecord]:
        return self.send(calls.list_jobs(status, limit, cursor))

    def iter_jobs(self, *, status: str | None = None, limit: int | None = None) -> Iterator[JobRecord]:
        """Every ledger record (of one status), newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(status=status, limit=limit, cursor=cursor)
            yield from page.items
            if (cursor := page.next_cursor) is None:
                return

    def failed_jobs(self, *, limit: int | None = None, cursor: str | None = None) -> FailedJobsPage:
        return self.send(calls.failed_jobs(limit, cursor))

    def cancel_job(self, job_id: str) -> Job:
        return self.send(calls.cancel_job(job_id))

    def retry_job(self, job_id: str) -> RetryReport:
        return self.send(calls.retry_job(job_id))

    def cleanup(self, *, older_than_s: float | None = None) -> CleanupReport:
        return self.send(calls.cleanup(older_than_s))

    # queues, workers, health
    def queue_info(self, *, limit: int | None = None, cursor: str | None = None) -> Page[QueueInfo]:
        return self.send(calls.queue_info(limit, cursor))

    def queue_health(self) -> Health:
        return self.send(calls.queue_health())

    def workers(self, *, limit: int | None = None, cursor: str | None = None) -> WorkersPage:
        return self.send(calls.workers(limit, cursor))

    def allow_version(self, version: str) -> list[str]:
        return self.send(calls.allow_version(version))

    def retire_version(self, version: str) -> list[str]:
        return self.send(calls.retire_version(version))

    def metrics(self) -> str:
        return self.send(calls.metrics())


class AsyncClient:
    """The API, asynchronously: the same methods as `Client`, awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        url, auth = _settings(base_url, token)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=url, headers={**auth, **(headers or {})}, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: calls.Call[R]) -> R:
        """Send one operation, again after a 429 or 503 (see `RetryPolicy`), and read its answer."""
        attempt = 0
        while True:
            attempt += 1
            response = await self._http.send(call.request(self._http))
            wait = self.retry.wait_before_retry(response, attempt)
            if wait is None:
                return call.read(response)
            await asyncio.sleep(wait)

    async def create_appointment(
        self, appointment: NewAppointment | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> CreatedAppointment:
        return await self.send(calls.create_appointment(appointment, idempotency_key))

    async def import_file(
        self, file: str | Path | bytes, *, filename: str | None = None, idempotency_key: str | None = None
    ) -> ImportReport:
        return await self.send(calls.import_file(file, filename, idempotency_key))

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return await self.send(calls.get_appointment(appointment_id))

    async def get_batch(self, batch_id: str) -> BatchProgress:
        return await self.send(calls.get_batch(batch_id))

    async def list_batches(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[BatchProgress]:
        return await self.send(calls.list_batches(limit, cursor))

    async def iter_batches(self, *, limit: int | None = None) -> AsyncIterator[BatchProgress]:
        cursor: str | None = None
        while True:
            page = await self.list_batches(limit=limit, cursor=cursor)
            for item in page.items:
                yield item
            if (cursor := page.next_cursor) is None:
                return

    async def get_job(self, job_id: str, *, wait_s: float = 0) -> Job:
        return await self.send(calls.get_job(job_id, wait_s))

    async def wait_for_job(self, job_id: str, *, timeout_s: float = 300.0, follow: bool = True) -> Job:
        """See `Client.wait_for_job`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            job = await self.get_job(job_id, wait_s=max(0.0, deadline - loop.time()))
            if follow and job.superseded_by:
                job_id = job.superseded_by
                continue
            if job.finished:
                return job
            if loop.time() >= deadline:
                raise JobWaitTimeout(job, timeout_s)

    async def list_jobs(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[JobRecord]:
        return await self.send(calls.list_jobs(status, limit, cursor))

    async def iter_jobs(
        self, *, status: str | None = None, limit: int | None = None
    ) -> AsyncIterator[JobRecord]:
        cursor: str | None = None
        while True:
            page = await self.list_jobs(status=status, limit=limit, cursor=cursor)
            for item in page.items:
                yield item
            if (cursor := page.next_cursor) is None:
                return

    async def failed_jobs(self, *, limit: int | None = None, cursor: str | None = None) -> FailedJobsPage:
        return await self.send(calls.failed_jobs(limit, cursor))

    async def cancel_job(self, job_id: str) -> Job:
        return await self.send(calls.cancel_job(job_id))

    async def retry_job(self, job_id: str) -> RetryReport:
        return await self.send(calls.retry_job(job_id))

    async def cleanup(self, *, older_than_s: float | None = None) -> CleanupReport:
        return await self.send(calls.cleanup(older_than_s))

    async def queue_info(self, *, limit: int | None = None, cursor: str | None = None) -> Page[QueueInfo]:
        return await self.send(calls.queue_info(limit, cursor))

    async def queue_health(self) -> Health:
        return await self.send(calls.queue_health())

    async def workers(self, *, limit: int | None = None, cursor: str | None = None) -> WorkersPage:
        return await self.send(calls.workers(limit, cursor))

    async def allow_version(self, version: str) -> list[str]:
        return await self.send(calls.allow_version(version))

    async def retire_version(self, version: str) -> list[str]:
        return await self.send(calls.retire_version(version))

    async def metrics(self) -> str:
        return await self.send(calls.metrics())
