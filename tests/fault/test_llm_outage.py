"""An LLM outage heals: the fake OpenAI server answers 503 to everything, the worker's circuit
opens (one log line, not one per address), the addresses done meanwhile are stored by the rules as
`rules_fallback`, no job is lost; once the server is back, a probe closes the circuit, the LLM
answers again, and the re-normalization asks it again for every fallback address, a page at a time,
with its own provenance, never touching an address the LLM wrote."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, run_fake_openai_server
from tests.fault.harness import Cluster, Process, log_events, wait_for

pytestmark = pytest.mark.fault

FAILURES = 3
COOLDOWN_S = 10.0  # longer than the outage phase, so no probe normally falls inside it
PER_RUN = 10  # RENORMALIZE_PER_RUN: 30 fallback addresses take at least three runs


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    with run_fake_openai_server() as server:
        yield server


async def address_of(cluster: Cluster, appointment_id: str) -> dict[str, Any]:
    body = (await cluster.client.get(f"/api/v1/appointments/{appointment_id}")).json()
    address: dict[str, Any] = body["endereco_normalizado"]
    return address


def breaker_changes(worker: Process) -> list[tuple[str, str]]:
    return [(e["previous"], e["state"]) for e in log_events(worker, "circuit_breaker_state")]


def warnings(worker: Process) -> list[str]:
    return [line for line in worker.log_text().splitlines() if '"level": "warning"' in line]


async def llm_check(cluster: Cluster) -> dict[str, str]:
    health = (await cluster.client.get("/api/v1/queue/health")).json()
    found: dict[str, str] = next(c for c in health["checks"] if c["name"] == "llm")
    return found


async def test_outage_opens_the_circuit_once_and_recovery_closes_it(
    cluster: Cluster, fake_openai: FakeOpenAIServer
) -> None:
    """Outage: the circuit opens with one warning line, the LLM is degraded in the health model and
    /metrics, the addresses are rules_fallback and every job succeeds; recovery: a probe after the
    cool-down closes the circuit (one line each for half open and closed) and the LLM answers."""
    await cluster.start_api()
    worker = await cluster.start_worker(
        "worker",
        OPENAI_BASE_URL=fake_openai.base_url,
        OPENAI_MAX_RETRIES="0",
        OPENAI_TIMEOUT="5",
        LLM_BREAKER_FAILURES=str(FAILURES),
        LLM_BREAKER_COOLDOWN_SECONDS=str(COOLDOWN_S),
        RENORMALIZE_EVERY_SECONDS="1",
        RENORMALIZE_PER_RUN=str(PER_RUN),
    )
    healthy = await cluster.create_appointments(3, prefix="Before")
    await cluster.wait_all_succeeded(healthy.values(), timeout=60)
    assert {(await address_of(cluster, a))["source"] for a in healthy} == {"llm"}

    fake_openai.control(status_code=503)
    before_outage = fake_openai.stats()["requests_total"]
    during = await cluster.create_appointments(30, prefix="During")
    await cluster.wait_all_succeeded(during.values(), timeout=90)
    addresses = [await address_of(cluster, a) for a in during]
    assert {a["source"] for a in addresses} == {"rules_fallback"}
    reasons = {a["fallback_reason"] for a in addresses}
    assert reasons <= {"server_error", "breaker_open"} and "breaker_open" in reasons, reasons
    assert all(a["cidade"] and a["uf"] == "SP" for a in addresses)  # the rules did the work
    asked_in_outage = fake_openai.stats()["requests_total"] - before_outage
    assert asked_in_outage < len(during)  # the open circuit stopped the calls

    changes = breaker_changes(worker)
    assert changes[0] == ("closed", "open")
    failed_probes = changes.count(("half_open", "open"))  # only if the outage outlasted a cool-down
    assert changes == [("closed", "open")] + [("open", "half_open"), ("half_open", "open")] * failed_probes
    assert len(warnings(worker)) == 1 + failed_probes, warnings(worker)  # the opening lines only

    async def breaker_open_in_health() -> bool:
        # the health model reads the breaker from the worker's heartbeat: within a beat or two
        check = await llm_check(cluster)
        metrics = (await cluster.client.get("/metrics")).text
        return (
            check["level"] == "degraded"
            and "circuit breaker not closed on 1 of 1" in check["message"]
            and bool(re.search(r'clinic_llm_breaker_state\{worker="[^"]+"\} 2\.0', metrics))
        )

    await wait_for(breaker_open_in_health, timeout=30, what="the health model to see the circuit open")

    fake_openai.control(status_code=None, status_rate=0.0)
    after: dict[str, str] = {}

    async def answered_by_the_llm() -> bool:
        # each new appointment asks once; the first after the cool-down is the probe
        created = await cluster.create_appointments(1, prefix=f"After {len(after)}")
        after.update(created)
        await cluster.wait_all_succeeded(created.values(), timeout=30)
        return (await address_of(cluster, next(iter(created))))["source"] == "llm"

    await wait_for(answered_by_the_llm, timeout=6 * COOLDOWN_S, what="the LLM to answer again", interval=1.0)
    assert breaker_changes(worker)[-2:] == [("open", "half_open"), ("half_open", "closed")]
    assert len(warnings(worker)) == 1 + failed_probes

    async def breaker_closed_in_health() -> bool:
        check = await llm_check(cluster)
        metrics = (await cluster.client.get("/metrics")).text
        return "circuit breaker" not in check["message"] and bool(
            re.search(r'clinic_llm_breaker_state\{worker="[^"]+"\} 0\.0', metrics)
        )

    await wait_for(breaker_closed_in_health, timeout=30, what="the health model to see the circuit closed")
    every_job = [*healthy.values(), *during.values(), *after.values()]
    records = await cluster.jobs(every_job)
    assert {r.status.value for r in records.values()} == {"succeeded"}  # 0 lost, 0 failed

    everyone = [*during, *after]

    async def every_fallback_renormalized() -> bool:
        # the fallbacks of the outage, and any of `after` made before the probe closed the circuit
        sources = [(await address_of(cluster, a))["source"] for a in everyone]
        replaced = sum(r["replaced"] for r in log_events(worker, "addresses re-normalized"))
        return set(sources) == {"llm"} and replaced == len(everyone) - len(after_by_llm)

    after_by_llm = [a for a in after if (await address_of(cluster, a))["source"] == "llm"]
    await wait_for(
        every_fallback_renormalized, timeout=60, what="the fallback addresses asked again", interval=1.0
    )
    for appointment_id in everyone:
        body = (await cluster.client.get(f"/api/v1/appointments/{appointment_id}")).json()
        if appointment_id in after_by_llm:
            assert body["results"].keys() == {"normalization"}  # the LLM wrote it in the first place
            continue
        result = body["results"]["renormalize_addresses"]
        assert result["data"] == {"outcome": "replaced"}, result
        assert result["provenance"]["worker_id"] == worker.worker_id
        assert result["provenance"]["job_id"].startswith("renormalize_addresses:")  # the cron run
        assert body["provenance"]["job_id"].startswith("normalize:")  # the normalization's own, kept
    for appointment_id in healthy:  # written by the LLM in the first place: never touched
        body = (await cluster.client.get(f"/api/v1/appointments/{appointment_id}")).json()
        assert body["results"].keys() == {"normalization"} and body["endereco_normalizado"]["source"] == "llm"
    runs = log_events(worker, "addresses re-normalized")
    assert runs and all(r["asked"] <= PER_RUN for r in runs), runs  # the rate limit
