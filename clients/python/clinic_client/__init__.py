"""A typed client for the clinic normalization API: `Client` (sync) and `AsyncClient` on httpx.

    with Client("https://api.example", token="...") as api:
        created = api.create_appointment({"paciente": ..., "documento": ..., ...})
        job = api.wait_for_job(created.job_id, timeout_s=60)

Errors raise `ApiError` subclasses carrying the API's RFC 9457 problem; 429 and 503 are retried
after `Retry-After` (see `RetryPolicy`); creates and imports carry an Idempotency-Key, so a retry
never creates twice.
"""

from clinic_client._client import AsyncClient, Client
from clinic_client._retry import RetryPolicy
from clinic_client.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidInput,
    JobWaitTimeout,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
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
    Problem,
    QueueInfo,
    RetryReport,
    WorkersPage,
)

__all__ = [
    "ApiError", "Appointment", "AsyncClient", "BatchProgress", "CleanupReport", "Client", "Conflict",
    "CreatedAppointment", "FailedJobsPage", "Forbidden", "Health", "ImportReport", "InvalidInput", "Job",
    "JobRecord", "JobWaitTimeout", "NewAppointment", "NotFound", "Page", "PayloadTooLarge", "Problem",
    "QueueInfo", "RateLimited", "RetryPolicy", "RetryReport", "Unauthorized", "Unavailable", "WorkersPage",
]  # fmt: skip
