"""One exception per kind of API error, carrying the RFC 9457 problem the API answered.

ApiError                 any error answer (`.problem`, `.status`, `.type`, `.request_id`)
├── Unauthorized         401
├── Forbidden            403
├── NotFound             404
├── Conflict             409
├── PayloadTooLarge      413
├── InvalidInput         422 (`.problem.errors` when the request's shape is wrong)
├── RateLimited          429 (after the retries)
└── Unavailable          503 (after the retries)
JobWaitTimeout           the job was not finished when the wait ran out (`.job`: its last status)
"""

from __future__ import annotations

import httpx

from clinic_client.models import Job, Problem


class ApiError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(f"{problem.status} {problem.title or problem.type}: {problem.detail}")
        self.problem = problem

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def type(self) -> str:
        return self.problem.type

    @property
    def request_id(self) -> str | None:
        return self.problem.request_id


class Unauthorized(ApiError): ...


class Forbidden(ApiError): ...


class NotFound(ApiError): ...


class Conflict(ApiError): ...


class PayloadTooLarge(ApiError): ...


class InvalidInput(ApiError): ...


class RateLimited(ApiError): ...


class Unavailable(ApiError): ...


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
}


class JobWaitTimeout(Exception):
    def __init__(self, job: Job, waited_s: float) -> None:
        super().__init__(f"job {job.job_id} is still {job.status} after {waited_s:.0f} s")
        self.job = job


def error_for(response: httpx.Response) -> ApiError:
    """The exception for an error answer: its problem body, or one made from the status line when
    the body is not a problem (a proxy's error page)."""
    try:
        problem = Problem.model_validate(response.json())
    except ValueError:
        problem = Problem(
            status=response.status_code, title=response.reason_phrase, detail=response.text[:200]
        )
    return _BY_STATUS.get(response.status_code, ApiError)(problem)
