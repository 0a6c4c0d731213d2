"""Each API operation as a `Call`: the request to send and how to read its answer. The sync and the
async client both send these, so the two cannot drift apart."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from clinic_client.errors import error_for
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
MAX_WAIT_PER_REQUEST_S = 60.0  # the API's own bound on `?wait=`


@dataclass(frozen=True)
class Call(Generic[R]):
    method: str
    path: str
    read: Callable[[httpx.Response], R]
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    files: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # beyond the client's, for long polls

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in self.params.items() if v is not None}
        extensions = {}
        if self.timeout is not None:
            extensions["timeout"] = httpx.Timeout(self.timeout).as_dict()
        return client.build_request(
            self.method, self.path, params=params, json=self.json, files=self.files,
            headers=dict(self.headers), extensions=extensions,
        )  # fmt: skip


def model(kind: type[BaseModel] | Any) -> Callable[[httpx.Response], Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def read(response: httpx.Response) -> Any:
        checked(response)
        return adapter.validate_json(response.content)

    return read


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_for(response)
    return response


def _key(idempotency_key: str | None) -> dict[str, str]:
    # a key of our own when none is given: a retry after a lost answer then creates nothing twice
    return {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}


def create_appointment(
    appointment: NewAppointment | Mapping[str, Any], idempotency_key: str | None
) -> Call[CreatedAppointment]:
    body = NewAppointment.model_validate(appointment).model_dump(mode="json", exclude_none=True)
    return Call(
        "POST", "/api/v1/appointments", model(CreatedAppointment), json=body, headers=_key(idempotency_key)
    )


def import_file(
    file: str | Path | bytes, filename: str | None, idempotency_key: str | None
) -> Call[ImportReport]:
    if isinstance(file, bytes):
        content, name = file, filename or "upload.csv"
    else:
        content, name = Path(file).read_bytes(), filename or Path(file).name
    return Call(
        "POST", "/api/v1/appointments/import", model(ImportReport),
        files={"file": (name, content)}, headers=_key(idempotency_key),
    )  # fmt: skip


def get_appointment(appointment_id: str) -> Call[Appointment]:
    return Call("GET", f"/api/v1/appointments/{appointment_id}", model(Appointment))


def get_batch(batch_id: str) -> Call[BatchProgress]:
    return Call("GET", f"/api/v1/batches/{batch_id}", model(BatchProgress))


def list_batches(limit: int | None, cursor: str | None) -> Call[Page[BatchProgress]]:
    return Call("GET", "/api/v1/batches", model(Page[BatchProgress]), {"limit": limit, "cursor": cursor})


def get_job(job_id: str, wait_s: float = 0) -> Call[Job]:
    wait_s = min(max(wait_s, 0.0), MAX_WAIT_PER_REQUEST_S)
    params = {"wait": wait_s} if wait_s else {}
    return Call(
        "GET", f"/api/v1/queue/job/{job_id}", model(Job), params, timeout=wait_s + 30 if wait_s else None
    )


def list_jobs(status: str | None, limit: int | None, cursor: str | None) -> Call[Page[JobRecord]]:
    params = {"status": status, "limit": limit, "cursor": cursor}
    return Call("GET", "/api/v1/queue/jobs", model(Page[JobRecord]), params)


def failed_jobs(limit: int | None, cursor: str | None) -> Call[FailedJobsPage]:
    return Call("GET", "/api/v1/queue/failed", model(FailedJobsPage), {"limit": limit, "cursor": cursor})


def queue_info(limit: int | None, cursor: str | None) -> Call[Page[QueueInfo]]:
    return Call("GET", "/api/v1/queue/info", model(Page[QueueInfo]), {"limit": limit, "cursor": cursor})


def queue_health() -> Call[Health]:
    return Call("GET", "/api/v1/queue/health", model(Health))


def cancel_job(job_id: str) -> Call[Job]:
    return Call("POST", f"/api/v1/queue/job/{job_id}/cancel", model(Job))


def retry_job(job_id: str) -> Call[RetryReport]:
    return Call("POST", f"/api/v1/queue/job/{job_id}/retry", model(RetryReport))


def cleanup(older_than_s: float | None) -> Call[CleanupReport]:
    return Call("POST", "/api/v1/queue/cleanup", model(CleanupReport), {"older_than_s": older_than_s})


def workers(limit: int | None, cursor: str | None) -> Call[WorkersPage]:
    return Call("GET", "/api/v1/workers", model(WorkersPage), {"limit": limit, "cursor": cursor})


def allow_version(version: str) -> Call[list[str]]:
    return Call("POST", f"/api/v1/workers/versions/{version}/allow", model(list[str]))


def retire_version(version: str) -> Call[list[str]]:
    return Call("POST", f"/api/v1/workers/versions/{version}/retire", model(list[str]))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda response: checked(response).text)
