"""A circuit breaker for one remote dependency (the LLM): stop calling it while it keeps failing.

closed ──(`failure_threshold` failed calls in a row)──▶ open ──(`cooldown_s` later)──▶ half_open
half_open: the first caller after the cool-down is the one probe; the others keep being refused.
The probe's success closes the circuit, its failure opens it for another cool-down.

Every state change logs one line (`circuit_breaker_state`: the breaker's name, the previous and the
new state, the failure that opened it), and only state changes do: during an outage the log holds
a few lines per cool-down instead of one per call.
Calls that started before the circuit opened and end after it change nothing (only the probe's
outcome decides while the circuit is not closed). Single event loop, no locks needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import structlog

from src.domain.workers import BreakerState

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BreakerPolicy:
    """`LLM_BREAKER_FAILURES` and `LLM_BREAKER_COOLDOWN_SECONDS`."""

    failure_threshold: int = 5
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.cooldown_s <= 0:
            raise ValueError("failure_threshold must be at least 1 and cooldown_s above 0")


class Permit(Enum):
    """What `CircuitBreaker.permit` grants a caller: a normal call, or the half-open probe."""

    CALL = "call"
    PROBE = "probe"


class CircuitBreaker:
    def __init__(
        self, policy: BreakerPolicy, *, name: str = "llm", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self.name = name
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_count = 0
        self.since: datetime | None = None
        self.reason: str | None = None  # the failure that last opened the circuit
        self._opened_at = 0.0

    def permit(self) -> Permit | None:
        """May a call go out now? None: no, answer without calling (the circuit is open, or the
        half-open probe is already out)."""
        if self.state is BreakerState.CLOSED:
            return Permit.CALL
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self.policy.cooldown_s:
            self._change(BreakerState.HALF_OPEN)
            return Permit.PROBE
        return None

    def record(self, permit: Permit, failure: str | None) -> None:
        """The outcome of a permitted call: `failure` is its reason, None when it succeeded."""
        if permit is Permit.PROBE:
            if failure is None:
                self.consecutive_failures = 0
                self._change(BreakerState.CLOSED)
            else:
                self._open(failure)
            return
        if self.state is not BreakerState.CLOSED:
            return  # a call from before the circuit opened: only the probe decides now
        if failure is None:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.policy.failure_threshold:
            self._open(failure)

    def _open(self, reason: str) -> None:
        self.reason = reason
        self.opened_count += 1
        self._opened_at = self._clock()
        self._change(BreakerState.OPEN)

    def _change(self, state: BreakerState) -> None:
        previous, self.state = self.state, state
        self.since = datetime.now(UTC)
        log = logger.warning if state is BreakerState.OPEN else logger.info
        log(
            "circuit_breaker_state",
            breaker=self.name,
            previous=previous.value,
            state=state.value,
            reason=self.reason if state is BreakerState.OPEN else None,
            consecutive_failures=self.consecutive_failures,
            cooldown_s=self.policy.cooldown_s if state is BreakerState.OPEN else None,
        )
