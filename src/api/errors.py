"""One place that maps the exception tree to HTTP responses, without echoing request input."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from src.errors import AppError

log = structlog.get_logger(__name__)


async def app_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    if exc.status_code >= 500:
        log.warning("request failed", error=exc.message, category=exc.category.value)
    retry_after = exc.details.get("retry_after_s")
    return JSONResponse(
        {"detail": exc.message, "category": exc.category.value, **_safe_details(exc)},
        status_code=exc.status_code,
        headers={"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None,
    )


def _safe_details(exc: AppError) -> dict[str, object]:
    return {k: v for k, v in exc.details.items() if isinstance(v, int | float | bool | str | list | dict)}


def _safe_message(err: Any) -> str:
    """pydantic's message without any detail that may quote the input: validators such as the
    e-mail one append the offending characters after a colon."""
    message = str(err.get("msg", "invalid"))
    if str(err.get("type", "")).startswith("value_error"):
        message = message.split(": ", 1)[0]
    return message


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
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
    return JSONResponse({"detail": errors}, status_code=422)


async def redis_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # redis-py's messages name the connection problem ("Too many connections", "Connection refused")
    # and never carry request data: the incident's blind spot was logging the type alone.
    log.warning("queue unavailable", error=f"{type(exc).__name__}: {exc}")
    return JSONResponse(
        {"detail": "queue unavailable, try again shortly", "category": "transient"}, status_code=503
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(RedisError, redis_error_handler)
