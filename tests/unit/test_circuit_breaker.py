"""The circuit breaker's states on a hand-driven clock, and the checks for values an LLM invented."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from src.domain.addresses import NormalizedAddress
from src.domain.workers import BreakerState
from src.infrastructure.circuit_breaker import BreakerPolicy, CircuitBreaker, Permit
from src.infrastructure.llm_address_normalizer import invented_field


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tripped(threshold: int = 3, cooldown_s: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(threshold, cooldown_s), clock=clock)
    for _ in range(threshold):
        breaker.record(Permit.CALL, "timeout")
    return breaker, clock


def test_failures_in_a_row_open_it_and_a_success_resets_the_count() -> None:
    """Two failures, a success, two failures: still closed; a third in a row opens it."""
    breaker = CircuitBreaker(BreakerPolicy(3, 10.0), clock=Clock())
    for failure in ("timeout", "server_error", None, "timeout", "timeout"):
        breaker.record(Permit.CALL, failure)
    assert breaker.state is BreakerState.CLOSED
    breaker.record(Permit.CALL, "rate_limited")
    assert (breaker.state, breaker.reason, breaker.opened_count) == (BreakerState.OPEN, "rate_limited", 1)


def test_open_refuses_until_the_cooldown_then_grants_one_probe() -> None:
    breaker, clock = tripped()
    assert breaker.permit() is None
    clock.now += 9.9
    assert breaker.permit() is None
    clock.now += 0.2
    assert breaker.permit() is Permit.PROBE
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.permit() is None  # the probe is out: nobody else calls


def test_probe_success_closes_and_failure_opens_for_another_cooldown() -> None:
    breaker, clock = tripped()
    clock.now += 10
    breaker.record(breaker.permit() or Permit.CALL, "timeout")
    assert (breaker.state, breaker.opened_count) == (BreakerState.OPEN, 2)
    clock.now += 5
    assert breaker.permit() is None  # the new cool-down counts from the failed probe
    clock.now += 5
    breaker.record(breaker.permit() or Permit.CALL, None)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.permit() is Permit.CALL


def test_late_outcomes_of_calls_from_before_the_opening_change_nothing() -> None:
    """Calls in flight when the circuit opened end later: neither their success nor failure counts."""
    breaker, clock = tripped()
    breaker.record(Permit.CALL, None)
    breaker.record(Permit.CALL, "timeout")
    assert (breaker.state, breaker.opened_count) == (BreakerState.OPEN, 1)


def test_one_log_line_per_state_change_and_only_the_opening_warns() -> None:
    with capture_logs() as logs:
        breaker, clock = tripped(threshold=5)
        for _ in range(50):
            breaker.permit()
        clock.now += 10
        breaker.record(breaker.permit() or Permit.CALL, None)
    assert [(e["previous"], e["state"], e["log_level"]) for e in logs] == [
        ("closed", "open", "warning"),
        ("open", "half_open", "info"),
        ("half_open", "closed", "info"),
    ]
    assert logs[0]["reason"] == "timeout" and logs[0]["breaker"] == "llm"


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(0, 10.0)
    with pytest.raises(ValueError):
        BreakerPolicy(3, 0)


RAW = "R. Augusta, 1500 apto 12, Consolação, São Paulo - SP, 01.304-001"


def answer(**fields: str | None) -> NormalizedAddress:
    base: dict[str, str | None] = {
        "logradouro": "Rua Augusta", "numero": "1500", "cidade": "São Paulo", "uf": "SP", "cep": "01304-001"
    }  # fmt: skip
    return NormalizedAddress.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "raw", "invented"),
    [
        ({}, RAW, None),
        ({"cep": "01304-002"}, RAW, "cep"),
        ({"cep": "01304-001"}, RAW.replace("01.304-001", ""), "cep"),
        ({"cep": "01304-001"}, RAW.replace("01.304-001", "01304001"), None),
        ({"uf": "RJ"}, RAW, "uf"),
        ({"uf": "SP"}, RAW.replace(" - SP", ""), None),  # "São Paulo" the city is also the state's name
        ({"numero": "5", "cep": "13108-348"}, "Rua A, 5, Campinas, 13108-348", "uf"),  # SP from the CEP
        ({"uf": "MG", "numero": "7", "cep": None}, "Rua B, 7, Belo Horizonte, Minas Gerais", None),
        ({"uf": "MG", "numero": "7", "cep": None}, "Rua B, 7, Belo Horizonte mg", None),
        ({"numero": "150"}, RAW, "numero"),
        ({"numero": "12"}, RAW, None),  # the apartment's number is in the input: not invented
        ({"numero": "S/N"}, RAW, None),
        (
            {"numero": "255", "uf": "MG", "cep": None},
            "RUA DA GROENLANDIA-255 APTO 404 - SION - BELO HORIZONTE - MG",
            None,
        ),
        ({"numero": None, "uf": None, "cep": None}, "Rua C", None),
    ],
)
def test_invented_field(fields: dict[str, str | None], raw: str, invented: str | None) -> None:
    """A CEP, UF or number the input does not hold is named; one it holds, in any spelling, is not."""
    assert invented_field(answer(**fields), raw) == invented
