"""One exception tree for the whole application.

    AppError                      category   API status   worker
    ├── PermanentError            permanent  4xx          fails fast, no retry
    │   ├── InvalidInput                     422
    │   ├── NotFound                         404
    │   ├── Conflict                         409
    │   ├── PayloadTooLarge                  413
    │   └── UnsafePayload                    422          job payload refused (not JSON, too big)
    ├── TransientError            transient  503          retried with backoff (arq `Retry`)
    │   ├── StoreUnavailable
    │   ├── QueueUnavailable
    │   ├── LLMUnavailable
    │   └── JobTimedOut           timeout                a run exceeded ARQ_JOB_TIMEOUT
    └── PolicyError               policy     403          refused by configuration (fenced version, ...)

The API maps the tree to status codes in one exception handler; the worker maps transient errors
to retries. Messages never contain personal data (names, documents, addresses).
"""

from __future__ import annotations

from typing import Any

from src.domain.jobs import ErrorCategory


class AppError(Exception):
    category: ErrorCategory = ErrorCategory.PERMANENT
    status_code: int = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class PermanentError(AppError):
    category = ErrorCategory.PERMANENT
    status_code = 400


class InvalidInput(PermanentError):
    status_code = 422


class NotFound(PermanentError):
    status_code = 404


class Conflict(PermanentError):
    status_code = 409


class PayloadTooLarge(PermanentError):
    status_code = 413


class UnsafePayload(PermanentError):
    status_code = 422


class TransientError(AppError):
    category = ErrorCategory.TRANSIENT
    status_code = 503


class StoreUnavailable(TransientError):
    pass


class QueueUnavailable(TransientError):
    pass


class LLMUnavailable(TransientError):
    pass


class JobTimedOut(TransientError):
    """A run took longer than its timeout: counted as a try and retried with backoff, then failed."""

    category = ErrorCategory.TIMEOUT


class PolicyError(AppError):
    category = ErrorCategory.POLICY
    status_code = 403
