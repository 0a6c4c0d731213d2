"""The job registry: declared once, everything derived from it, and mistakes refused with a clear line."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from src.application.services import appointment_service
from src.config import Settings
from src.domain.jobs import DEFAULT_QUEUE, MAINTENANCE_QUEUE
from src.jobs.context import JobContext
from src.jobs.registry import NORMALIZE_APPOINTMENT, NORMALIZE_BATCH_CHUNK, RECONCILE, REGISTRY, JobRegistry
from src.jobs.spec import JobSpec, RetryPolicy
from src.worker.context import WorkerContext
from src.worker.settings import WorkerSettings, worker_settings


class Empty(BaseModel):
    pass


async def handler(ctx: JobContext, payload: Empty) -> dict[str, Any]:
    return {}


def settings() -> Settings:
    return Settings(_env_file=None, arq_max_jobs=7, arq_job_timeout=120, arq_max_tries=4)  # type: ignore[call-arg]


def test_the_job_context_requires_every_key() -> None:
    """A handler never meets a missing key: the context TypedDicts are total."""
    assert JobContext.__required_keys__ == frozenset(JobContext.__annotations__)
    assert "job_try" in JobContext.__required_keys__ and not JobContext.__optional_keys__
    assert not WorkerContext.__optional_keys__ and "runner" in WorkerContext.__required_keys__


def test_a_name_declared_twice_or_unknown_is_refused_naming_the_jobs() -> None:
    spec = JobSpec(name="a", handler=handler, payload=Empty)
    with pytest.raises(ValueError, match="job 'a' is declared twice"):
        JobRegistry([spec, JobSpec(name="a", handler=handler, payload=Empty, queue="other")])
    with pytest.raises(KeyError, match="no job named 'b' in the registry \\(jobs: a\\)"):
        JobRegistry([spec]).get("b")


def test_queues_come_from_the_entries_in_declaration_order() -> None:
    registry = JobRegistry(
        [
            JobSpec(name="a", handler=handler, payload=Empty, queue="phones"),
            JobSpec(name="b", handler=handler, payload=Empty),
            JobSpec(name="c", handler=handler, payload=Empty, queue="phones"),
        ]
    )
    assert registry.queues == ("phones", DEFAULT_QUEUE)
    assert [s.name for s in registry.on_queue("phones")] == ["a", "c"]
    assert REGISTRY.queues == (DEFAULT_QUEUE, MAINTENANCE_QUEUE)


def test_worker_settings_is_arqs_class_for_a_queue() -> None:
    config = worker_settings(settings(), DEFAULT_QUEUE)
    assert issubclass(config, WorkerSettings) and config.__name__ == "NormalizationWorkerSettings"
    assert [f.name for f in config.functions] == ["normalize_appointment", "normalize_batch_chunk"]
    assert [c.name for c in config.cron_jobs] == ["renormalize_addresses"]
    assert config.queue_name == "jobs:v1:normalization"
    off = settings().model_copy(update={"renormalize_every_seconds": 0})
    assert worker_settings(off, DEFAULT_QUEUE).cron_jobs == []  # 0 turns it off
    assert (config.max_jobs, config.job_timeout, config.max_tries) == (7, 120, 4)
    maintenance = worker_settings(settings(), MAINTENANCE_QUEUE)
    assert maintenance.functions == [] and [c.name for c in maintenance.cron_jobs] == ["reconcile", "cleanup"]
    with pytest.raises(
        ValueError, match="no job is declared on queue 'phones' \\(queues: normalization, maintenance\\)"
    ):
        worker_settings(settings(), "phones")


def test_an_entrys_limits_default_to_the_settings() -> None:
    s = settings()
    assert (NORMALIZE_APPOINTMENT.timeout(s), NORMALIZE_APPOINTMENT.max_tries(s)) == (120, 4)
    own = JobSpec(name="x", handler=handler, payload=Empty, timeout_s=3, retry=RetryPolicy(max_tries=9))
    assert (own.timeout(s), own.max_tries(s)) == (3, 9)
    assert RECONCILE.timeout(s.model_copy(update={"reconcile_every_seconds": 300})) == 300
    assert [RetryPolicy().delay_s(n) for n in (1, 2, 3, 8)] == [1.0, 2.0, 4.0, 60.0]


def test_the_jobs_the_application_enqueues_are_declared_with_the_payload_it_sends() -> None:
    """AppointmentService names its jobs (it may not import src/jobs): the names and ids it sends
    are what the registry's entries accept."""
    assert REGISTRY.get(appointment_service.NORMALIZE_APPOINTMENT) is NORMALIZE_APPOINTMENT
    assert REGISTRY.get(appointment_service.NORMALIZE_BATCH_CHUNK) is NORMALIZE_BATCH_CHUNK
    NORMALIZE_APPOINTMENT.payload.model_validate({"appointment_id": "a1"})
    NORMALIZE_BATCH_CHUNK.payload.model_validate({"batch_id": "b1", "seq_from": 0, "seq_to": 50})


def test_workers_py_refuses_a_queue_no_job_names(capsys: pytest.CaptureFixture[str]) -> None:
    import workers

    assert workers.main(["--queue", "phones"]) == 2
    err = capsys.readouterr().err
    assert "worker not started: no job is declared on queue 'phones'" in err
    assert "normalization, maintenance" in err
