"""What a job is: one `JobSpec` says everything the queue, the worker and the API need to know.

A spec's values may depend on the settings (a cron's interval, say): give a function of `Settings`
instead of the value, and `resolve` reads it when the worker is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict

from src.config import Settings
from src.domain.jobs import DEFAULT_QUEUE, ErrorCategory
from src.jobs.context import JobContext

P = TypeVar("P", bound=BaseModel)
T = TypeVar("T")
FromSettings: TypeAlias = T | Callable[[Settings], T]

Handler = Callable[[JobContext, P], Awaitable[dict[str, Any]]]


class NoPayload(BaseModel):
    """The payload of a job that takes none (a cron)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed run is retried. `max_tries` None: `ARQ_MAX_TRIES`. A run fails with a category
    (`src.errors`); only the categories in `retry_on` are tried again, after `backoff_s`, doubling up
    to `backoff_cap_s` (arq's `Retry(defer=…)` sets the delay of that one retry itself)."""

    max_tries: int | None = None
    backoff_s: float = 1.0
    backoff_cap_s: float = 60.0
    retry_on: frozenset[ErrorCategory] = frozenset({ErrorCategory.TRANSIENT, ErrorCategory.TIMEOUT})

    def delay_s(self, tries: int) -> float:
        """Before the try after `tries` failed ones: backoff_s, 2 × backoff_s, … capped."""
        return float(min(self.backoff_cap_s, self.backoff_s * 2 ** max(0, tries - 1)))


@dataclass(frozen=True, slots=True)
class Cron:
    """When a cron job runs, in arq's terms (each field a set of values; None: every value of it).
    A cron is unique per tick: with several workers on its queue, each tick runs once."""

    second: set[int] | None = None
    minute: set[int] | None = None
    hour: set[int] | None = None
    run_at_startup: bool = False

    @classmethod
    def every(cls, seconds: int, *, run_at_startup: bool = False) -> Cron:
        """Every `seconds`: a divisor of 60, or whole minutes dividing an hour (settings check it)."""
        if seconds < 60:
            return cls(second=set(range(0, 60, seconds)), run_at_startup=run_at_startup)
        return cls(second={0}, minute=set(range(0, 60, seconds // 60)), run_at_startup=run_at_startup)


@dataclass(frozen=True, slots=True)
class JobSpec(Generic[P]):
    """One job type. `payload` validates the job's `ids` (ids only, never personal data) before
    `handler` runs; `timeout_s` None is `ARQ_JOB_TIMEOUT`. A spec with a `cron` is scheduled by the
    worker of its queue and runs outside the ledger (it is the reconciler's and the cleaner's kind)."""

    name: str
    handler: Handler[P]
    payload: type[P]
    queue: str = DEFAULT_QUEUE
    timeout_s: FromSettings[float] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cron: FromSettings[Cron | None] | None = None  # a function may answer None: the cron is off

    def timeout(self, settings: Settings) -> float:
        return settings.arq_job_timeout if self.timeout_s is None else resolve(self.timeout_s, settings)

    def max_tries(self, settings: Settings) -> int:
        return settings.arq_max_tries if self.retry.max_tries is None else self.retry.max_tries


def resolve(value: FromSettings[T], settings: Settings) -> T:
    if callable(value):
        made: T = value(settings)
        return made
    return value
