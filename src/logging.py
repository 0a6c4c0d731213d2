"""Structured logging: one set-up for the API, the worker and the CLI.

Every line is a structlog event; `job_id`, `request_id` and `worker_id` are bound in contextvars per
job or request, so one id can be traced across API, queue and worker. Standard-library loggers
(uvicorn) go through the same processors, so their lines carry the same context: uvicorn's access
line becomes a `request` event with method, path, status and the request's `request_id`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]
# uvicorn's loggers: it installs its own plain-text handlers at start; they are handed to the root's.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _uvicorn_access_fields(logger: Any, method_name: str, event_dict: Any) -> Any:
    """uvicorn's access line (`%s - "%s %s HTTP/%s" %d`) as fields, so it can be filtered and counted."""
    record = event_dict.get("_record")
    args = event_dict.pop("positional_args", ())
    if record is not None and record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, path, http_version, status = args
        event_dict.update(
            event="request", client=client, method=method, path=path, http_version=http_version, status=status
        )
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and the stdlib root logger once per process (idempotent)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED_PROCESSORS, _uvicorn_access_fields],
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        if uvicorn_logger.handlers:  # set up by uvicorn (none when `--no-access-log`: left silent)
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai._base_client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def bind_context(**values: str | int | None) -> None:
    """Bind ids (job_id, request_id, worker_id, ...) for every later line of this task/request."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def clear_context(*keys: str) -> None:
    """Unbind the given keys (all keys when none are given)."""
    if keys:
        structlog.contextvars.unbind_contextvars(*keys)
    else:
        structlog.contextvars.clear_contextvars()
