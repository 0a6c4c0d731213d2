"""LLMAddressNormalizer through the real `openai` SDK over real HTTP against the fake server process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import openai
import pytest
from structlog.testing import capture_logs

from scripts.local_redis import free_port
from src.domain.addresses import AddressSource, NormalizedAddress
from src.domain.workers import BreakerState
from src.infrastructure.circuit_breaker import BreakerPolicy, CircuitBreaker, Permit
from src.infrastructure.llm_address_normalizer import (
    LOCAL_SERVER_API_KEY,
    LLMAddressNormalizer,
    build_openai_client,
)
from tests.fakes.openai_server import MODEL_ID, FakeOpenAIServer, run_fake_openai_server

RAW = "R. Augusta, 1500, apto 12, Consolação, São Paulo - SP, 01304-001"
RULES_RESULT = NormalizedAddress(logradouro="Rules Street", cidade="Rules City", source=AddressSource.RULES)


def fallback(reason: str) -> NormalizedAddress:
    """The rules' result as LLM mode stores it when the LLM's answer is not used."""
    return RULES_RESULT.model_copy(update={"source": AddressSource.RULES_FALLBACK, "fallback_reason": reason})


MakeNormalizer = Callable[..., LLMAddressNormalizer]


class StubRules:
    """The fallback: a fixed rules result, counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def normalize(self, raw: str) -> NormalizedAddress:
        self.calls += 1
        return RULES_RESULT


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with run_fake_openai_server() as server:
        yield server


@pytest.fixture(autouse=True)
def clean_server(fake_openai: FakeOpenAIServer) -> None:
    # requests a client gave up on may still be sleeping server-side; they would skew the counters
    fake_openai.wait_idle()
    fake_openai.reset()


@pytest.fixture
def rules() -> StubRules:
    return StubRules()


@pytest.fixture(params=["aiohttp", "httpx"])
async def make_normalizer(
    request: pytest.FixtureRequest, fake_openai: FakeOpenAIServer, rules: StubRules
) -> AsyncIterator[MakeNormalizer]:
    """Every behaviour below holds over both of the SDK's HTTP transports (OPENAI_HTTP_TRANSPORT)."""
    clients: list[openai.AsyncOpenAI] = []

    def make(
        *, timeout_s: float = 5.0, max_retries: int = 2, concurrency: asyncio.Semaphore | int = 8
    ) -> LLMAddressNormalizer:
        client = build_openai_client("test-key", fake_openai.base_url, timeout_s, max_retries, request.param)
        clients.append(client)
        return LLMAddressNormalizer(client, MODEL_ID, rules, concurrency)

    yield make
    for client in clients:
        await client.close()


def test_build_openai_client_uses_the_sdk_settings() -> None:
    """The factory hands timeout, retries and base URL to the SDK client itself."""
    client = build_openai_client("k", "http://127.0.0.1:9/v1", 1.5, 1)
    assert (client.timeout, client.max_retries) == (1.5, 1)
    assert str(client.base_url).startswith("http://127.0.0.1:9/v1")


def test_build_openai_client_transport_is_aiohttp_unless_httpx_is_asked_for() -> None:
    aiohttp_client = build_openai_client("k", "http://127.0.0.1:9/v1", 1.0, 0)
    httpx_client = build_openai_client("k", "http://127.0.0.1:9/v1", 1.0, 0, "httpx")
    assert isinstance(aiohttp_client._client, openai.DefaultAioHttpClient)
    assert not isinstance(httpx_client._client, openai.DefaultAioHttpClient)


def test_build_openai_client_without_key_for_a_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A custom base URL needs no key; without either, the SDK's own missing-key error is raised."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert build_openai_client(None, "http://127.0.0.1:9/v1", 1.0, 0).api_key == LOCAL_SERVER_API_KEY
    with pytest.raises(openai.OpenAIError):
        build_openai_client(None, None, 1.0, 0)


async def test_good_answer_is_used_with_source_llm(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer
) -> None:
    """A valid structured answer becomes the result, tagged llm and formatted in Correios order."""
    normalizer = make_normalizer()
    address = await normalizer.normalize(RAW)
    assert address.source is AddressSource.LLM
    assert (address.logradouro, address.numero, address.cidade, address.uf, address.cep) == (
        "Rua Augusta",
        "1500",
        "São Paulo",
        "SP",
        "01304-001",
    )
    assert address.formatted == "Rua Augusta, 1500, Apto 12 - Consolação, São Paulo - SP, 01304-001"
    assert rules.calls == 0
    assert normalizer.counters.snapshot()["llm_used"] == 1
    assert fake_openai.stats()["by_status"] == {"200": 1}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("not_json", "unparsable"),
        ("wrong_schema", "unparsable"),
        ("invalid_cep", "invalid_answer"),
        ("invalid_uf", "invalid_answer"),
        ("truncated", "truncated"),
        ("refusal", "refused"),
    ],
)
async def test_bad_answer_falls_back_to_rules(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer, kind: str, reason: str
) -> None:
    """Unparsable, schema-breaking, invalid CEP/UF, truncated or refused answers yield the rules result."""
    fake_openai.control(malformed_rate=1.0, malformed_kind=kind)
    normalizer = make_normalizer()
    address = await normalizer.normalize(RAW)
    assert address == fallback(reason)
    assert rules.calls == 1
    assert normalizer.counters.fallbacks == {reason: 1}
    assert fake_openai.stats()["malformed"] == 1


async def test_echoed_input_falls_back(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer
) -> None:
    """An answer whose street or city is the whole raw address is not trusted."""
    fake_openai.control(echo_input=True)
    normalizer = make_normalizer()
    assert await normalizer.normalize(RAW) == fallback("echoed_input")
    assert normalizer.counters.fallbacks == {"echoed_input": 1}


async def test_fallback_log_has_the_reason_but_no_personal_data(
    make_normalizer: MakeNormalizer, fake_openai: FakeOpenAIServer
) -> None:
    """The fallback is logged with its reason and problems, never with the address or the answer."""
    fake_openai.control(malformed_rate=1.0, malformed_kind="invalid_cep")
    with capture_logs() as logs:
        await make_normalizer().normalize(RAW)
    [entry] = [e for e in logs if e["event"] == "llm_address_fallback"]
    assert entry["reason"] == "invalid_answer"
    assert entry["problems"] == ["cep is not in the 00000-000 format"]
    assert "Augusta" not in repr(logs) and "123" not in repr(logs)


async def test_rate_limit_then_success_is_retried_by_the_sdk(
    make_normalizer: MakeNormalizer, fake_openai: FakeOpenAIServer
) -> None:
    """A 429 followed by a good answer succeeds through the SDK's own retry."""
    fake_openai.control(status_code=429, fail_next=1)
    normalizer = make_normalizer(max_retries=2)
    address = await normalizer.normalize(RAW)
    assert address.source is AddressSource.LLM
    stats = fake_openai.stats()
    assert stats["requests_total"] == 2
    assert stats["by_status"] == {"200": 1, "429": 1}


async def test_persistent_server_errors_fall_back_after_the_sdk_retries(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer
) -> None:
    """500 on every request: the SDK retries max_retries times, then the rules result is used."""
    fake_openai.control(status_code=500)
    normalizer = make_normalizer(timeout_s=2.0, max_retries=1)
    address = await normalizer.normalize(RAW)
    assert address == fallback("server_error")
    assert normalizer.counters.fallbacks == {"server_error": 1}
    assert fake_openai.stats()["by_status"] == {"500": 2}


async def test_latency_above_the_client_timeout_falls_back(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer
) -> None:
    """A server slower than the client timeout ends in the rules result with reason timeout."""
    fake_openai.control(latency_ms=3000)
    normalizer = make_normalizer(timeout_s=0.3, max_retries=1)
    address = await normalizer.normalize(RAW)
    assert address == fallback("timeout")
    assert normalizer.counters.fallbacks == {"timeout": 1}
    assert fake_openai.stats()["requests_total"] == 2  # the first attempt and the SDK's retry


def test_fake_server_frees_a_request_whose_client_left(fake_openai: FakeOpenAIServer) -> None:
    """A client that gives up mid-latency is seen at once: the in-flight count drops and the
    disconnect is counted long before the 30 s latency ends (the cap checks rely on it)."""
    fake_openai.control(latency_ms=30_000)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{fake_openai.base_url}/chat/completions",
            json={"model": MODEL_ID, "messages": [{"role": "user", "content": RAW}]},
            timeout=0.3,
        )
    fake_openai.wait_idle(timeout_s=10.0)
    assert time.monotonic() - started < 20.0
    assert fake_openai.stats()["client_disconnects"] == 1


async def test_blank_input_skips_the_llm(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer
) -> None:
    """A blank address goes straight to the rules, without a request."""
    normalizer = make_normalizer()
    assert await normalizer.normalize("   ") == fallback("empty_input")
    assert normalizer.counters.fallbacks == {"empty_input": 1}
    assert fake_openai.stats()["requests_total"] == 0


async def test_concurrency_cap_is_never_exceeded(
    make_normalizer: MakeNormalizer, fake_openai: FakeOpenAIServer
) -> None:
    """40 concurrent normalizations with a cap of 8 keep at most 8 requests in flight, and reach 8."""
    fake_openai.control(latency_ms=200)  # long enough for all 8 to overlap on a busy machine
    normalizer = make_normalizer(concurrency=8)
    results = await asyncio.gather(*(normalizer.normalize(RAW) for _ in range(40)))
    assert all(r.source is AddressSource.LLM for r in results)
    stats = fake_openai.stats()
    assert stats["requests_total"] == 40
    assert stats["max_in_flight"] == 8
    assert normalizer.counters.max_in_flight == 8
    assert normalizer.counters.in_flight == 0


async def test_a_shared_semaphore_caps_all_normalizers_together(
    make_normalizer: MakeNormalizer, fake_openai: FakeOpenAIServer
) -> None:
    """Two normalizers given the same per-process semaphore share its cap."""
    fake_openai.control(latency_ms=200)
    cap = asyncio.Semaphore(4)
    first, second = make_normalizer(concurrency=cap), make_normalizer(concurrency=cap)
    await asyncio.gather(*(n.normalize(RAW) for n in (first, second) for _ in range(12)))
    stats = fake_openai.stats()
    assert stats["requests_total"] == 24
    assert stats["max_in_flight"] == 4


def test_cli_flags_set_the_startup_faults() -> None:
    """Flags given at start are the server's baseline faults, and `/_reset` returns to them."""
    with run_fake_openai_server("--latency-ms", "15", "--status-code", "503", "--fail-next", "1") as server:
        server.control(latency_ms=0, fail_next=0)
        config = server.reset()
        assert (config["latency_ms"], config["status_code"], config["fail_next"]) == (15, 503, 1)
        assert server.process.poll() is None
    assert server.process.returncode is not None


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("invented_cep", "invented_cep"),
        ("invented_uf", "invented_uf"),
        ("invented_number", "invented_numero"),
    ],
)
async def test_invented_values_never_reach_the_result(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer, kind: str, reason: str
) -> None:
    """A well-formed CEP, UF or number that the input does not hold: the rules' answer stands,
    with the reason recorded on it."""
    fake_openai.control(malformed_rate=1.0, malformed_kind=kind)
    normalizer = make_normalizer()
    assert await normalizer.normalize(RAW) == fallback(reason)
    assert rules.calls == 1
    assert normalizer.counters.fallbacks == {reason: 1}


async def test_a_refused_connection_is_named_as_such(make_normalizer: MakeNormalizer) -> None:
    """Nothing listens on the port: the reason is connection_refused on both transports (aiohttp
    reports it as a timeout), not timeout."""
    normalizer = make_normalizer(max_retries=0)
    normalizer._client = normalizer._client.with_options(base_url=f"http://127.0.0.1:{free_port()}/v1")
    assert await normalizer.normalize(RAW) == fallback("connection_refused")


async def test_breaker_opens_after_failures_in_a_row_then_a_probe_closes_it(
    make_normalizer: MakeNormalizer, rules: StubRules, fake_openai: FakeOpenAIServer
) -> None:
    """Three 500s in a row open the circuit (one warning line): calls stop, the rules answer at
    once (breaker_open); after the cool-down one probe goes out and its success closes it."""
    fake_openai.control(status_code=500)
    normalizer = make_normalizer(max_retries=0)
    normalizer.breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown_s=0.5))
    normalizer.counters.breaker = normalizer.breaker
    with capture_logs() as logs:
        for _ in range(3):
            await normalizer.normalize(RAW)
        assert normalizer.breaker.state is BreakerState.OPEN
        during = [await normalizer.normalize(RAW) for _ in range(20)]
        assert fake_openai.stats()["requests_total"] == 3
        assert all(a == fallback("breaker_open") for a in during)
        fake_openai.control(status_code=None, status_rate=0.0)
        await asyncio.sleep(1.5)  # 3x the cool-down
        assert (await normalizer.normalize(RAW)).source is AddressSource.LLM
    assert normalizer.breaker.state is BreakerState.CLOSED
    changes = [(e["previous"], e["state"]) for e in logs if e["event"] == "circuit_breaker_state"]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert [e["log_level"] for e in logs if e["log_level"] == "warning"] == ["warning"]
    stats = normalizer.counters.stats()
    assert (stats.breaker, stats.breaker_opened, stats.breaker_reason) == (
        BreakerState.CLOSED,
        1,
        "server_error",
    )


async def test_only_one_probe_goes_out_while_half_open(
    make_normalizer: MakeNormalizer, fake_openai: FakeOpenAIServer
) -> None:
    """Once the cool-down ends, 10 concurrent addresses send one request (the probe); a failed
    probe opens the circuit again."""
    fake_openai.control(status_code=500)
    normalizer = make_normalizer(max_retries=0)
    normalizer.breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown_s=0.3))
    await normalizer.normalize(RAW)
    await asyncio.sleep(1.0)
    results = await asyncio.gather(*(normalizer.normalize(RAW) for _ in range(10)))
    assert fake_openai.stats()["requests_total"] == 2
    assert sorted(r.fallback_reason or "" for r in results) == ["breaker_open"] * 9 + ["server_error"]
    assert (normalizer.breaker.state, normalizer.breaker.opened_count) == (BreakerState.OPEN, 2)


async def test_cancelled_calls_do_not_open_the_circuit_but_a_cancelled_probe_reopens_it(
    make_normalizer: MakeNormalizer, fake_openai: FakeOpenAIServer
) -> None:
    """Jobs cancelled mid-call (timeout, shutdown) are no LLM failures; a probe cancelled while
    half open opens the circuit again instead of leaving it half open with no probe out."""
    fake_openai.control(latency_ms=5000)
    normalizer = make_normalizer()
    normalizer.breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown_s=0.3))
    calls = [asyncio.create_task(normalizer.normalize(RAW)) for _ in range(3)]
    await asyncio.sleep(0.3)
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    assert normalizer.breaker.state is BreakerState.CLOSED

    normalizer.breaker.record(Permit.CALL, "timeout")  # opened by a failure
    await asyncio.sleep(1.0)  # past the cool-down: the next call is the probe
    probe = asyncio.create_task(normalizer.normalize(RAW))
    await asyncio.sleep(0.3)
    assert normalizer.breaker.state is BreakerState.HALF_OPEN
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    assert (normalizer.breaker.state, normalizer.breaker.reason) == (BreakerState.OPEN, "cancelled")
