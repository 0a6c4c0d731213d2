"""What the worker's log says, at INFO, as real processes write it: every job traced by its ids
under a rate limit, an interruption named with its job, a normal start without ERROR, a wrong Redis
password named once with the variable to fix."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter

import pytest
from redis import Redis

from tests.fault.harness import PYTHON, ROOT, Cluster, Process, log_events, wait_for, wait_until

pytestmark = pytest.mark.fault

BODY = {"paciente": "A", "documento": "52998224725", "endereco": "Rua A 1", "data_hora": "2026-12-01T10:00"}


async def test_a_job_is_traced_by_its_request_id_in_the_worker_log(cluster: Cluster) -> None:
    """The request id a client sent is on the worker's INFO lines of its job's start and success, with
    the job id and the worker id: grepping it in every log finds the job."""
    await cluster.start_api()
    worker = await cluster.start_worker("worker")
    created = await cluster.client.post(
        "/api/v1/appointments", json=BODY, headers={"X-Request-ID": "trace-7f3a"}
    )
    job_id = created.json()["job_id"]
    await cluster.wait_all_succeeded([job_id], timeout=30)
    await wait_until(lambda: bool(log_events(worker, "job succeeded")), timeout=30, what="the success line")
    lines = [e for e in worker.log_text().splitlines() if "trace-7f3a" in e]
    started, succeeded = log_events(worker, "job started"), log_events(worker, "job succeeded")
    for line in (started[0], succeeded[0]):
        assert (line["job_id"], line["request_id"], line["worker_id"], line["level"]) == (
            job_id, "trace-7f3a", worker.worker_id, "info",
        )  # fmt: skip
    assert succeeded[0]["attempt"] == 1 and succeeded[0]["duration_ms"] >= 0
    assert len(lines) >= 2


async def test_job_lines_are_rate_limited_with_a_summary(cluster: Cluster) -> None:
    """Over JOB_LOG_LINES_PER_SECOND the lines are counted, not written, and a summary says how many
    were left out: written + left out = two per job."""
    await cluster.start_api()
    worker = await cluster.start_worker("worker", JOB_LOG_LINES_PER_SECOND="5")
    jobs = await cluster.create_appointments(60)
    await cluster.wait_all_succeeded(jobs.values(), timeout=60)

    def counted() -> tuple[int, int]:
        written = len(log_events(worker, "job started")) + len(log_events(worker, "job succeeded"))
        left_out = sum(int(e["left_out"]) for e in log_events_starting(worker, "job line(s) left out"))
        return written, left_out

    await wait_until(lambda: sum(counted()) == 120, timeout=30, what="every job line written or counted")
    written, left_out = counted()
    assert left_out > 0
    per_second = Counter(
        e["timestamp"][:19] for e in log_events(worker, "job started") + log_events(worker, "job succeeded")
    )
    assert max(per_second.values()) <= 5, per_second


def log_events_starting(process: Process, text: str) -> list[dict[str, object]]:
    """The JSON lines of `process` whose event contains `text` (events that carry a number)."""
    found = []
    for line in process.log_text().splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            if text in str(data.get("event", "")):
                found.append(data)
    return found


async def test_an_interrupted_job_is_logged_with_its_id(cluster: Cluster) -> None:
    """SIGTERM while a long job runs: its interruption is a WARNING line naming the job."""
    await cluster.start_api(BATCH_CHUNK_SIZE="5000")
    worker = await cluster.start_worker("worker", TEST_ITEM_DELAY_MS="200", ARQ_JOB_COMPLETION_WAIT="1")
    report = await cluster.import_csv(2000)
    (job_id,) = report["job_ids"]
    await wait_for(lambda: cluster.running_on(worker), timeout=30, what="the chunk to run")
    worker.send(signal.SIGTERM)
    assert worker.wait_exit(30) == 0
    (line,) = log_events(worker, "job interrupted: it runs again elsewhere, no try used")
    assert (line["job_id"], line["level"], line["attempt"]) == (job_id, "warning", 1)


async def test_a_normal_start_before_the_api_logs_no_error(cluster: Cluster) -> None:
    """In one container the workers start before the API: waiting for it is INFO, never ERROR."""
    worker = await cluster.start_worker("worker", state="waiting")
    await cluster.start_api()
    await cluster.wait_worker_state(worker, "ok")
    errors = [line for line in worker.log_text().splitlines() if '"level": "error"' in line]
    assert errors == [], errors
    assert log_events(worker, "waiting for the API before claiming")


def test_a_wrong_redis_password_is_named_with_the_variable_to_fix(cluster: Cluster) -> None:
    """`python workers.py` with a refused password exits 1 with one line saying so and what to fix."""
    Redis(port=cluster.redis.port).config_set("requirepass", "the-right-one")
    env = cluster.env(REDIS_URL=f"redis://:wrong@127.0.0.1:{cluster.redis.port}/0")
    result = subprocess.run(
        [PYTHON, "workers.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "refused the password: check the password in REDIS_URL or REDIS_PASSWORD" in output, output
    assert output.count("refused the password") == 1
