"""A consumer outside the fleet on our own queue (the ghost-worker incident itself): a plain arq
worker pointed at `jobs:v1:normalization` takes jobs and leaves its own results. None is lost: each
is run again by our workers as its next generation, the intrusion is reported with what the
stranger left, and once it stops every appointment is normalized within two reconcile intervals."""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter

import pytest

from src.domain.jobs import ErrorCategory, JobRecord, JobStatus
from tests.fault.harness import BASE_ENV, Cluster, duplicated, wait_for, wait_until

pytestmark = pytest.mark.fault

RECONCILE_S = float(BASE_ENV["RECONCILE_EVERY_SECONDS"])
QUEUE = "jobs:v1:normalization"


@pytest.mark.parametrize("serializer", ["json", "pickle"])
async def test_a_foreign_arq_worker_on_our_queue_loses_no_job_and_is_reported(
    cluster: Cluster, serializer: str
) -> None:
    """With a busy worker of ours, the stranger takes a share of 60 jobs. Each taken job is recorded
    `failed` (category foreign_consumer, with the stranger's result) and run again as the next
    generation; doctor, /api/v1/queue/health, /api/v1/queue/failed and /metrics report it within
    60 s; an operator's retry answers with the live generation; after the stranger stops, every
    appointment is normalized, once, within two reconcile intervals."""
    await cluster.start_api()
    await cluster.start_worker("maintenance", queue="maintenance")
    ours = await cluster.start_worker("ours", TEST_ITEM_DELAY_MS="100", ARQ_MAX_JOBS="4")
    ghost = cluster.start_ghost("ghost", queue=QUEUE, serializer=serializer)
    await wait_until(lambda: f"polling {QUEUE}" in ghost.log_text(), timeout=60, what="the stranger to poll")
    jobs = await cluster.create_appointments(60)
    created_at = time.monotonic()

    async def intrusions() -> list[JobRecord]:
        failed = await cluster.repo.list_jobs(status=JobStatus.FAILED, limit=1000)
        return [r for r in failed if r.error_category is ErrorCategory.FOREIGN_CONSUMER]

    taken = await wait_for(intrusions, timeout=60, what="an intrusion in the ledger", interval=0.2)
    detected_s = time.monotonic() - created_at
    first = taken[0]
    evidence = (first.result or {}).get("foreign_result", {})
    assert evidence.get("format") == serializer, first.result
    assert evidence.get("function") == ("normalize_appointment" if serializer == "json" else "<unknown>")
    if serializer == "json":  # it read our job and ran its own function under our job's name
        assert evidence.get("success") is True and evidence.get("result") == "ran in the ghost"
    else:  # it could not even read it
        assert evidence.get("success") is False and "unable to deserialize job" in str(evidence.get("result"))

    doctor = cluster.run_cli("doctor")
    assert doctor.returncode != 0 and "foreign_consumer" in doctor.stdout, doctor.stdout
    # it lists the latest few ids, of the intrusions so far (the stranger keeps taking jobs)
    assert any(r.job_id in doctor.stdout for r in await intrusions()), doctor.stdout
    health = (await cluster.client.get("/api/v1/queue/health")).json()
    assert health["status"] == "degraded"
    assert [a["kind"] for a in health["alarms"]] == ["foreign_consumer"]
    assert health["alarms"][0]["evidence"]["foreign_result"]["format"] == serializer
    failed = (await cluster.client.get("/api/v1/queue/failed")).json()
    assert failed["by_category"]["foreign_consumer"] >= 1
    metrics = (await cluster.client.get("/metrics")).text
    assert 'category="foreign_consumer"' in metrics
    assert re.search(r'^clinic_alarm_jobs\{kind="foreign_consumer"\} [1-9]', metrics, re.MULTILINE), metrics
    reported_s = time.monotonic() - created_at
    # the operator's retry: the generation that replaced it (queued or running), or 409 once that
    # one has succeeded (both paths are pinned in tests/integration/test_queue_admin_api.py)
    retried = await cluster.client.post(f"/api/v1/queue/job/{first.job_id}/retry")
    latest = await cluster.repo.latest_job(first.logical_key)
    assert latest is not None and latest.generation > first.generation
    if retried.status_code == 409:
        assert latest.status is JobStatus.SUCCEEDED and "succeeded" in retried.json()["detail"]
    else:
        assert retried.status_code == 202, retried.text
        assert retried.json()["job_id"].rpartition(":")[0] == first.logical_key
        assert retried.json()["job_id"] != first.job_id

    ghost.send(signal.SIGKILL)
    stopped_at = time.monotonic()
    ghost.wait_exit(10)

    async def all_normalized() -> bool:
        for appointment_id in jobs:
            appointment = await cluster.repo.get_appointment(appointment_id)
            if appointment is None or appointment.normalization_status.value != "normalized":
                return False
        return True

    # two reconcile intervals, the grace, and time to run what is left on a 2-core machine
    await wait_for(all_normalized, timeout=2 * RECONCILE_S + 60, what="every appointment normalized")
    recovered_s = time.monotonic() - stopped_at
    records = await cluster.all_jobs()
    foreign = [r for r in records if r.error_category is ErrorCategory.FOREIGN_CONSUMER]
    ran = [json.loads(line) for line in (cluster.root / "ghost.jsonl").read_text().splitlines()]
    print(
        f"RECOVERY foreign consumer ({serializer}): it took {len(foreign)} runs of the 60 jobs (a job "
        f"again each time it went back; its function ran {len(ran)} times), first detected "
        f"{detected_s:.1f}s, reported {reported_s:.1f}s after the creates, "
        f"all normalized {recovered_s:.1f}s after it stopped (reconcile every {RECONCILE_S:g}s)"
    )
    assert foreign and all(r.superseded_by is not None for r in foreign)
    effects = cluster.effects()
    assert duplicated(effects) == {}, "an appointment was written twice"
    assert {e.item for e in effects} == set(jobs), "an appointment was lost"
    by_key = Counter(r.logical_key for r in records if r.status is JobStatus.SUCCEEDED)
    assert set(by_key.values()) == {1}, "a logical job succeeded twice"
    for appointment_id in jobs:
        appointment = await cluster.repo.get_appointment(appointment_id)
        assert appointment is not None and appointment.provenance is not None
        assert appointment.provenance.worker_id == ours.worker_id
