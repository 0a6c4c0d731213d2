"""One place that maps the exception tree to problem+json responses, without echoing request input."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.api.problems import BY_STATUS, PROBLEM_TYPES, ProblemResponse, ProblemType, problem_body
from src.errors import (
    AppError,
    Conflict,
    InvalidInput,
    JobTimedOut,
    LLMUnavailable,
    NotFound,
    PayloadTooLarge,
    PermanentError,
    PolicyError,
    QueueUnavailable,
    StoreUnavailable,
    TransientError,
    UnsafePayload,
)

log = structlog.get_logger(__name__)

# The nearest class of an error in this table names its problem type.
_APP_ERROR_TYPES: dict[type[AppError], str] = {
    PermanentError: "bad-request",
    InvalidInput: "invalid-input",
    NotFound: "not-found",
    Conflict: "conflict",
    PayloadTooLarge: "payload-too-large",
    UnsafePayload: "unsafe-payload",
    TransientError: "unavailable",
    StoreUnavailable: "store-unavailable",
    QueueUnavailable: "queue-unavailable",
    LLMUnavailable: "llm-unavailable",
    JobTimedOut: "timed-out",
    PolicyError: "policy",
}


def app_error_type(exc: AppError) -> ProblemType:
    for cls in type(exc).__mro__:
        if cls in _APP_ERROR_TYPES:
            return PROBLEM_TYPES[_APP_ERROR_TYPES[cls]]
    return PROBLEM_TYPES["internal-error"]


def request_id_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


def problem(
    request: Request,
    kind: ProblemType,
    detail: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """The problem+json response, naming the request id (the middleware sets its header)."""
    body = problem_body(
        kind, detail, instance=request.url.path, request_id=request_id_of(request), **extensions
    )
    if status is not None:
        body["status"] = status
    return ProblemResponse(body, status_code=status or kind.status, headers=headers)


async def app_error_handler(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, AppError)
    kind = app_error_type(exc)
    if exc.status_code >= 500:
        log.warning("request failed", error=exc.message, category=exc.category.value)
    retry_after = exc.details.get("retry_after_s")
    details = _safe_details(exc)
    # the tree's own category wins (a JobTimedOut is `timeout`); its status too
    details["category"] = exc.category.value
    return problem(
        request,
        kind,
        exc.message,
        status=exc.status_code,
        headers={"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None,
        **details,
    )


_RESERVED = {"type", "title", "status", "detail", "instance", "request_id"}


def _safe_details(exc: AppError) -> dict[str, object]:
    return {
        k: v
        for k, v in exc.details.items()
        if k not in _RESERVED and isinstance(v, int | float | bool | str | list | dict)
    }


def _safe_message(err: Any) -> str:
    """pydantic's message without any detail that may quote the input: validators such as the
    e-mail one append the offending characters after a colon."""
    message = str(err.get("msg", "invalid"))
    if str(err.get("type", "")).startswith("value_error"):
        message = message.split(": ", 1)[0]
    return message


async def validation_error_handler(request: Request, exc: Exception) -> ProblemResponse:
    """422 listing where and what is wrong; pydantic's `input`/`ctx` (personal data) are dropped."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(err.get("loc", ())),
            "msg": _safe_message(err),
            "type": err.get("type", "value_error"),
        }
        for err in exc.errors()
    ]
    where = ", ".join(".".join(str(part) for part in e["loc"]) for e in errors)
    detail = f"{len(errors)} invalid value{'s' if len(errors) != 1 else ''}: {where}"
    return problem(request, PROBLEM_TYPES["invalid-input"], detail, errors=errors)


async def redis_error_handler(request: Request, exc: Exception) -> ProblemResponse:
    # redis-py's messages name the connection problem ("Too many connections", "Connection refused")
    # and never carry request data: the incident's blind spot was logging the type alone.
    log.warning("queue unavailable", error=f"{type(exc).__name__}: {exc}")
    return problem(request, PROBLEM_TYPES["queue-unavailable"], "queue unavailable, try again shortly")


async def http_error_handler(request: Request, exc: Exception) -> ProblemResponse:
    """Starlette's and the auth dependencies' HTTP errors (401, 403, 404, 405, 429) as problems."""
    assert isinstance(exc, StarletteHTTPException)
    kind = BY_STATUS.get(exc.status_code, PROBLEM_TYPES["bad-request"])
    detail = exc.detail if isinstance(exc.detail, str) else kind.title
    return problem(request, kind, detail, status=exc.status_code, headers=dict(exc.headers or {}))


async def unexpected_error_handler(request: Request, exc: Exception) -> ProblemResponse:
    """500 for a bug; the traceback goes to the log (uvicorn's error line), never to the client."""
    # answered by Starlette's outermost middleware, outside the request-id one: the header is ours
    request_id = request_id_of(request)
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem(request, PROBLEM_TYPES["internal-error"], "internal error", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(RedisError, redis_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
