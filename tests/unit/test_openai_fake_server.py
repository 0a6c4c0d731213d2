"""The fake OpenAI server's chat answers, fault injection and control API (in-process, no network)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from src.domain.addresses import NormalizedAddress, validation_problems
from src.infrastructure.llm_request import LLMAddressAnswer, build_messages
from tests.fakes.openai_server import (
    FakeOpenAIApp,
    FaultConfig,
    create_app,
    extract_raw_address,
    fake_normalize,
)

RAW = "R. Augusta, 1500, apto 12, Consolação, São Paulo - SP, 01304-001"
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "LLMAddressAnswer",
        "strict": True,
        "schema": LLMAddressAnswer.model_json_schema(),
    },
}


def chat_body(raw: str = RAW, schema: dict[str, Any] | None = ANSWER_SCHEMA) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "fake-address-model", "messages": build_messages(raw)}
    if schema is not None:
        body["response_format"] = schema
    return body


def content_of(response: httpx.Response) -> str | None:
    content: str | None = response.json()["choices"][0]["message"]["content"]
    return content


@pytest.fixture
def app() -> FakeOpenAIApp:
    return create_app()


@pytest.fixture
async def client(app: FakeOpenAIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        yield http


async def test_models_lists_the_fake_model(client: httpx.AsyncClient) -> None:
    """GET /v1/models answers an OpenAI-style list containing the fake model."""
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["fake-address-model"]


def test_raw_address_round_trips_through_the_request_builder() -> None:
    """The address the normalizer sends is exactly the address the fake server extracts."""
    user_message = build_messages(RAW)[-1]
    assert extract_raw_address(str(user_message["content"])) == RAW
    assert extract_raw_address("  Rua X, 1, Recife  ") == "Rua X, 1, Recife"


def test_fake_normalize_produces_a_valid_address() -> None:
    """The heuristic splits street, number, complement, district, city, UF and CEP."""
    address = fake_normalize(RAW)
    assert validation_problems(address) == []
    assert (address.logradouro, address.numero, address.complemento) == ("Rua Augusta", "1500", "Apto 12")
    assert (address.bairro, address.cidade, address.uf, address.cep) == (
        "Consolação",
        "São Paulo",
        "SP",
        "01304-001",
    )


async def test_structured_answer_has_exactly_the_schema_properties(client: httpx.AsyncClient) -> None:
    """With a json_schema response_format the content is JSON with the schema's properties only."""
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    answer = LLMAddressAnswer.model_validate_json(content_of(response) or "")
    assert set(json.loads(content_of(response) or "")) == set(LLMAddressAnswer.model_fields)
    assert (answer.cidade, answer.uf, answer.cep) == ("São Paulo", "SP", "01304-001")


async def test_plain_answer_validates_as_normalized_address(client: httpx.AsyncClient) -> None:
    """Without a response_format the content is a full NormalizedAddress JSON."""
    response = await client.post("/v1/chat/completions", json=chat_body(schema=None))
    address = NormalizedAddress.model_validate_json(content_of(response) or "")
    assert address.logradouro == "Rua Augusta"


async def test_body_not_declared_as_json_is_a_400(client: httpx.AsyncClient) -> None:
    """The real API wants `Content-Type: application/json`; so does the fake, so a client that sends
    its body under another type fails here too (ours sends pre-encoded bytes)."""
    body = json.dumps(chat_body()).encode()
    refused = await client.post("/v1/chat/completions", content=body, headers={"content-type": "text/plain"})
    assert refused.status_code == 400
    assert "application/json" in refused.json()["error"]["message"]
    accepted = await client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert accepted.status_code == 200
    assert content_of(accepted)


async def test_request_without_user_message_is_a_400(client: httpx.AsyncClient) -> None:
    """A body without a user message is refused like the real API does."""
    response = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_fail_next_fails_that_many_requests_then_recovers(client: httpx.AsyncClient) -> None:
    """`fail_next` N with a status makes exactly the next N chat requests fail, with retry headers."""
    config = (await client.post("/_control", json={"status_code": 429, "fail_next": 2})).json()
    assert config["fail_next"] == 2
    statuses = [(await client.post("/v1/chat/completions", json=chat_body())) for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["retry-after-ms"] == "20"
    assert float(statuses[0].headers["retry-after"]) < 1
    assert statuses[0].json()["error"]["type"] == "rate_limit_error"


async def test_status_code_alone_fails_every_request(client: httpx.AsyncClient) -> None:
    """A `status_code` without count or rate applies to every chat request."""
    await client.post("/_control", json={"status_code": 503})
    statuses = [(await client.post("/v1/chat/completions", json=chat_body())).status_code for _ in range(3)]
    assert statuses == [503, 503, 503]


async def test_status_rate_is_deterministic(client: httpx.AsyncClient) -> None:
    """A rate of 0.5 fails exactly every second request."""
    await client.post("/_control", json={"status_code": 500, "status_rate": 0.5})
    statuses = [(await client.post("/v1/chat/completions", json=chat_body())).status_code for _ in range(4)]
    assert statuses == [200, 500, 200, 500]


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("invalid_cep", lambda c: json.loads(c)["cep"] == "123"),
        ("invalid_uf", lambda c: json.loads(c)["uf"] == "XX"),
        ("wrong_schema", lambda c: isinstance(json.loads(c)["logradouro"], list)),
    ],
)
async def test_malformed_json_kinds(client: httpx.AsyncClient, kind: str, check: Any) -> None:
    """Malformed answers are JSON with a bad CEP, a bad UF, or values of the wrong type."""
    await client.post("/_control", json={"malformed_rate": 1.0, "malformed_kind": kind})
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert check(content_of(response))


async def test_malformed_not_json_truncated_and_refusal(client: httpx.AsyncClient) -> None:
    """`not_json` content does not parse, `truncated` ends by length, `refusal` has no content."""
    await client.post("/_control", json={"malformed_rate": 1.0, "malformed_kind": "not_json"})
    response = await client.post("/v1/chat/completions", json=chat_body())
    with pytest.raises(ValueError):
        json.loads(content_of(response) or "")
    await client.post("/_control", json={"malformed_kind": "truncated"})
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.json()["choices"][0]["finish_reason"] == "length"
    await client.post("/_control", json={"malformed_kind": "refusal"})
    message = (await client.post("/v1/chat/completions", json=chat_body())).json()["choices"][0]["message"]
    assert message["content"] is None and message["refusal"]
    assert (await client.get("/_stats")).json()["malformed"] == 3


async def test_echo_input_answers_with_the_raw_address(client: httpx.AsyncClient) -> None:
    """`echo_input` puts the whole raw address in the street and city fields."""
    await client.post("/_control", json={"echo_input": True})
    response = await client.post("/v1/chat/completions", json=chat_body())
    answer = json.loads(content_of(response) or "")
    assert answer["logradouro"] == RAW and answer["cidade"] == RAW
    assert (await client.get("/_stats")).json()["echoed"] == 1


async def test_control_rejects_unknown_or_invalid_fields(client: httpx.AsyncClient) -> None:
    """Typos and out-of-range values in /_control are 422, not silently ignored."""
    assert (await client.post("/_control", json={"latency": 10})).status_code == 422
    assert (await client.post("/_control", json={"malformed_rate": 2})).status_code == 422
    assert (await client.post("/_control", json={"status_code": 200})).status_code == 422


async def test_stats_count_statuses_and_concurrency(client: httpx.AsyncClient) -> None:
    """/_stats counts requests by status and the highest number in flight at once."""
    await client.post("/_control", json={"latency_ms": 50, "status_code": 429, "fail_next": 1})
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=chat_body()) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 429]
    stats = (await client.get("/_stats")).json()
    assert stats["requests_total"] == 5
    assert stats["by_status"] == {"200": 4, "429": 1}
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] == 5


async def test_reset_restores_startup_faults_and_zeroes_counters() -> None:
    """/_reset brings back the faults given at start and clears every counter."""
    app = create_app(FaultConfig(latency_ms=5, malformed_rate=1.0, malformed_kind="invalid_uf"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake") as client:
        await client.post("/_control", json={"latency_ms": 0, "malformed_rate": 0.0})
        await client.post("/v1/chat/completions", json=chat_body())
        config = (await client.post("/_reset")).json()
        stats = (await client.get("/_stats")).json()
        response = await client.post("/v1/chat/completions", json=chat_body())
    assert (config["latency_ms"], config["malformed_rate"], config["malformed_kind"]) == (
        5,
        1.0,
        "invalid_uf",
    )
    assert stats["requests_total"] == 0 and stats["by_status"] == {} and stats["max_in_flight"] == 0
    assert json.loads(content_of(response) or "")["uf"] == "XX"
