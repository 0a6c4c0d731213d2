"""End to end in LLM mode: the worker calls the shipped OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis

from scripts.local_redis import RedisServer
from src.application.services.doctor import Doctor, DoctorConfig
from src.config import Settings
from src.jobs.registry import REGISTRY
from src.worker.settings import build_worker
from tests.conftest import app_client, make_settings, publish_deployment
from tests.fakes.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.e2e

BODY = {
    "paciente": "João Souza",
    "documento": "11.222.333/0001-81",
    "endereco": "Av. Paulista, 1578, Bela Vista, São Paulo, SP, 01310-200",
    "data_hora": "2026-12-01T09:00:00-03:00",
}


@pytest.fixture
def llm_settings(
    redis_server: RedisServer, tmp_path: Path, fake_openai_session: FakeOpenAIServer
) -> Settings:
    fake_openai_session.reset()
    return make_settings(
        redis_server.url, tmp_path, openai_base_url=fake_openai_session.base_url, openai_max_retries=0,
        openai_timeout=5.0,
    )  # fmt: skip


@pytest.fixture
async def llm_api(llm_settings: Settings, arq_pool: ArqRedis) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(llm_settings) as client:
        yield client


async def run_worker(settings: Settings) -> None:
    await publish_deployment(settings)
    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()


async def normalized(api: httpx.AsyncClient, appointment_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/api/v1/appointments/{appointment_id}")).json()
    return body


async def test_llm_answer_is_used_and_recorded_as_llm(
    llm_api: httpx.AsyncClient, llm_settings: Settings, fake_openai_session: FakeOpenAIServer
) -> None:
    """With OPENAI_BASE_URL set, the address comes from the LLM (source llm) and the CNPJ from the rules."""
    created = (await llm_api.post("/api/v1/appointments", json=BODY)).json()
    await run_worker(llm_settings)
    appt = await normalized(llm_api, created["appointment_id"])
    assert appt["endereco_normalizado"]["source"] == "llm"
    assert appt["endereco_normalizado"]["cep"] == "01310-200"
    assert appt["documento_normalizado"]["kind"] == "cnpj" and appt["documento_normalizado"]["valid"] is True
    assert fake_openai_session.stats()["requests_total"] >= 1


async def test_malformed_llm_answer_falls_back_to_rules(
    llm_api: httpx.AsyncClient, llm_settings: Settings, fake_openai_session: FakeOpenAIServer
) -> None:
    """An answer with an invalid CEP is not used: the stored address comes from the rules, marked
    rules_fallback with the reason."""
    fake_openai_session.control(malformed_rate=1.0, malformed_kind="invalid_cep")
    created = (await llm_api.post("/api/v1/appointments", json=BODY)).json()
    await run_worker(llm_settings)
    appt = await normalized(llm_api, created["appointment_id"])
    assert appt["normalization_status"] == "normalized"
    assert appt["endereco_normalizado"]["source"] == "rules_fallback"
    assert appt["endereco_normalizado"]["fallback_reason"] == "invalid_answer"
    assert appt["endereco_normalizado"]["cep"] == "01310-200"


async def test_an_invented_cep_never_reaches_the_store(
    llm_api: httpx.AsyncClient, llm_settings: Settings, fake_openai_session: FakeOpenAIServer
) -> None:
    """The LLM answers a well-formed CEP that the address does not hold: the rules' CEP is stored,
    with the reason."""
    fake_openai_session.control(malformed_rate=1.0, malformed_kind="invented_cep")
    created = (await llm_api.post("/api/v1/appointments", json=BODY)).json()
    await run_worker(llm_settings)
    address = (await normalized(llm_api, created["appointment_id"]))["endereco_normalizado"]
    assert (address["source"], address["fallback_reason"]) == ("rules_fallback", "invented_cep")
    assert address["cep"] == "01310-200"
    assert fake_openai_session.stats()["malformed"] == 1


async def test_llm_server_errors_fall_back_without_failing_the_job(
    llm_api: httpx.AsyncClient, llm_settings: Settings, fake_openai_session: FakeOpenAIServer
) -> None:
    """500s from the LLM never fail the job: the rules result is stored and the job succeeds."""
    fake_openai_session.control(status_code=500)
    created = (await llm_api.post("/api/v1/appointments", json=BODY)).json()
    await run_worker(llm_settings)
    appt = await normalized(llm_api, created["appointment_id"])
    assert appt["endereco_normalizado"]["source"] == "rules_fallback"
    assert appt["endereco_normalizado"]["fallback_reason"] == "server_error"
    job = (await llm_api.get(f"/api/v1/queue/job/{created['job_id']}")).json()
    assert job["status"] == "succeeded"


async def test_an_llm_failing_every_call_is_named_degraded(
    llm_api: httpx.AsyncClient, llm_settings: Settings, fake_openai_session: FakeOpenAIServer
) -> None:
    """With the LLM answering 500 to every call, jobs still succeed on the rules, the worker's
    circuit opens, and the health model (the API's answer, doctor, /metrics) calls the LLM
    degraded, naming the open circuit and the reason."""
    fake_openai_session.control(status_code=500)
    for _ in range(25):
        assert (await llm_api.post("/api/v1/appointments", json=BODY)).status_code == 201
    await publish_deployment(llm_settings)
    worker = build_worker(llm_settings, handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    try:
        deadline = asyncio.get_running_loop().time() + 60 * llm_settings.worker_heartbeat_interval
        while True:
            health = (await llm_api.get("/api/v1/queue/health")).json()
            llm = next(c for c in health["checks"] if c["name"] == "llm")
            if llm["level"] == "degraded":
                break
            assert asyncio.get_running_loop().time() < deadline, llm
            await asyncio.sleep(llm_settings.worker_heartbeat_interval)
        # 5 failures in a row (LLM_BREAKER_FAILURES) open the circuit: the others fall back at once
        assert "circuit breaker not closed on 1 of 1 worker(s)" in llm["message"]
        assert "open since" in llm["message"] and "(server_error)" in llm["message"]
        assert "25 of 25 addresses (100%) fell back" in llm["message"]
        state = llm_api._transport.app.state  # type: ignore[attr-defined]
        config = DoctorConfig(
            heartbeat_interval_s=llm_settings.worker_heartbeat_interval,
            lease_s=llm_settings.job_lease_seconds,
            queues=REGISTRY.queues,
        )
        findings = await Doctor(state.repository, state.tasks, state.registry, config).run()
        assert any(f.check == "llm" and not f.ok and "LLM degraded" in f.message for f in findings)
        metrics = (await llm_api.get("/metrics")).text
        assert 'clinic_health{check="llm"} 0.0' in metrics
        assert re.search(r'clinic_llm_breaker_state\{worker="[^"]+"\} 2\.0', metrics), "circuit not open"
    finally:
        await worker.close()
        await asyncio.gather(run, return_exceptions=True)
