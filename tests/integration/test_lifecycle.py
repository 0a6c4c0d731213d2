"""Lifecycle safety in one process against a real redis-server: fencing, fingerprints, leases, reconciler."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix

from src.application.ports import Repository
from src.application.services.reconciler import Reconciler
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.appointments import Appointment
from src.domain.jobs import ErrorCategory, JobClaim, JobEnvelope, JobProgress, JobRecord, JobStatus
from src.domain.workers import WorkerState
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.repository_factory import build_repository
from src.worker.settings import build_worker
from tests.conftest import RunBurstWorker, publish_deployment

pytestmark = pytest.mark.integration


def appointment(appointment_id: str) -> Appointment:
    return Appointment(
        id=appointment_id,
        paciente="Paciente",
        documento="52998224725",
        endereco="Rua Augusta, 100, Consolação, São Paulo - SP, 01305-000",
        data_hora=datetime(2026, 12, 1, 10, tzinfo=UTC),
        created_at=datetime.now(UTC),
    )


def envelope(appointment_id: str, generation: int = 1) -> JobEnvelope:
    return JobEnvelope(
        task="normalize_appointment",
        logical_key=f"normalize:{appointment_id}",
        generation=generation,
        ids={"appointment_id": appointment_id},
        producer_version="test-1",
    )


async def stored_and_enqueued(settings: Settings, pool: ArqRedis, appointment_id: str) -> str:
    repository = build_repository(settings)
    await repository.init()
    await repository.insert_appointments([appointment(appointment_id)])
    await TaskService(RedisJobQueue(pool), repository=repository).enqueue(envelope(appointment_id))
    await repository.close()
    return envelope(appointment_id).job_id


async def test_worker_with_a_version_not_allowed_claims_nothing(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """A worker whose code version is not in the allowed set is fenced: it refuses to run a burst and
    the job stays queued for an allowed worker."""
    job_id = await stored_and_enqueued(settings, arq_pool, "f1")
    await publish_deployment(settings)  # allows test-1 only
    ghost = build_worker(
        settings.model_copy(update={"app_version": "old-7"}), burst=True, handle_signals=False
    )
    with pytest.raises(RuntimeError, match="fenced"):
        await ghost.async_run()
    await ghost.close()
    assert ghost.jobs_complete == 0
    assert await arq_pool.exists(job_key_prefix + job_id)
    assert ghost.heartbeat.state is WorkerState.FENCED
    assert "allow-version old-7" in (ghost.heartbeat.reason or "")


async def test_worker_on_another_store_is_a_mismatch(
    settings: Settings, arq_pool: ArqRedis, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A worker whose store differs from the API's published fingerprint claims nothing."""
    await stored_and_enqueued(settings, arq_pool, "m1")
    await publish_deployment(settings)
    other = settings.model_copy(update={"sqlite_path": str(tmp_path_factory.mktemp("other") / "x.sqlite3")})
    stray = build_worker(other, burst=True, handle_signals=False)
    with pytest.raises(RuntimeError, match="mismatch"):
        await stray.async_run()
    await stray.close()
    assert stray.jobs_complete == 0 and "another store or Redis database" in (stray.heartbeat.reason or "")


async def test_worker_without_a_published_fingerprint_waits(settings: Settings, arq_pool: ArqRedis) -> None:
    """No API has published the fingerprint in this Redis database: the worker claims nothing."""
    await stored_and_enqueued(settings, arq_pool, "w1")
    worker = build_worker(settings, burst=True, handle_signals=False)
    with pytest.raises(RuntimeError, match="waiting"):
        await worker.async_run()
    await worker.close()


async def test_dead_workers_lease_expires_and_the_job_is_taken_over(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """A job claimed by a worker that died is run by another within about one lease and a backoff: the
    lost lease is counted, and the job is put back once before it runs."""
    job_id = await stored_and_enqueued(settings, arq_pool, "d1")
    repository = build_repository(settings)
    await repository.init()
    await repository.claim_job(
        job_id, JobClaim(worker_id="dead", version="test-1", started_at=datetime.now(UTC))
    )
    await arq_pool.set(in_progress_key_prefix + job_id, b"dead", px=int(settings.job_lease_seconds * 1000))
    worker = await asyncio.wait_for(run_burst_worker(), timeout=10 * settings.job_lease_seconds)
    assert worker.jobs_complete == 1
    record = await repository.get_job(job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    # attempt 2 fenced the dead run off as the loss was counted; attempt 3 ran after the backoff
    assert record.attempt == 3 and record.worker_id == worker.worker_id and record.app_failures == 0
    assert record.lease_losses == 1 and worker.jobs_retried == 1
    await repository.close()


async def _stale_running_job(settings: Settings, name: str) -> tuple[Repository, JobEnvelope]:
    repository = build_repository(settings)
    await repository.init()
    await repository.insert_appointments([appointment(name)])
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    env = envelope(name)
    await repository.create_jobs(
        [JobRecord(job_id=env.job_id, logical_key=env.logical_key, generation=1, task=env.task,
                   queue="normalization", envelope=env, enqueued_at=long_ago,
                   progress=JobProgress(done=0, total=1, cursor=None))]
    )  # fmt: skip
    await repository.claim_job(env.job_id, JobClaim(worker_id="gone", version="test-1", started_at=long_ago))
    return repository, env


async def test_reconciler_requeues_a_stale_running_job_whose_worker_died(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """A running record with a stale heartbeat and no arq job left lost its lease: the loss is counted
    and, nothing in Redis blocking its id, it is enqueued again under it and succeeds."""
    repository, env = await _stale_running_job(settings, "r1")
    tasks = TaskService(RedisJobQueue(arq_pool), repository=repository)
    report = await Reconciler(repository, tasks, stale_after_s=5, grace_s=60, max_lease_losses=3).run()
    assert report.lost_leases_requeued == 1 and report.vanished_requeued == 0
    requeued = await repository.get_job(env.job_id)
    assert requeued is not None and requeued.status is JobStatus.QUEUED and requeued.lease_losses == 1
    await run_burst_worker()
    done = await repository.get_job(env.job_id)
    assert done is not None and done.status is JobStatus.SUCCEEDED and done.worker_id != "gone"
    stored = await repository.get_appointment("r1")
    assert stored is not None and stored.provenance is not None and stored.provenance.job_id == env.job_id
    await repository.close()


async def test_reconciler_runs_a_job_whose_id_is_blocked_as_the_next_generation(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """A result left under a stale running job's id (arq's own net for a run of ours) blocks that id:
    the job goes on as the next generation, which supersedes it, and succeeds."""
    repository, env = await _stale_running_job(settings, "r2")
    await arq_pool.set(result_key_prefix + env.job_id, b'{"s": false}')
    tasks = TaskService(RedisJobQueue(arq_pool), repository=repository)
    report = await Reconciler(repository, tasks, stale_after_s=5, grace_s=60, max_lease_losses=3).run()
    assert report.lost_leases_requeued == 1 and report.foreign_consumed == 0
    old = await repository.get_job(env.job_id)
    assert old is not None and (old.status, old.superseded_by) == (JobStatus.SUPERSEDED, "normalize:r2:2")
    await run_burst_worker()
    successor = await repository.get_job("normalize:r2:2")
    assert successor is not None and successor.status is JobStatus.SUCCEEDED
    stored = await repository.get_appointment("r2")
    assert stored is not None and stored.provenance is not None
    assert stored.provenance.job_id == "normalize:r2:2"
    await repository.close()


async def test_reconciler_requeues_a_queued_job_whose_arq_job_vanished(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """Redis lost a queued job (restart without persistence): the reconciler enqueues it again, same id."""
    repository = build_repository(settings)
    await repository.init()
    await repository.insert_appointments([appointment("v1")])
    env = envelope("v1")
    await repository.create_jobs(
        [JobRecord(job_id=env.job_id, logical_key=env.logical_key, generation=1, task=env.task,
                   queue="normalization", envelope=env,
                   enqueued_at=datetime.now(UTC) - timedelta(minutes=5))]
    )  # fmt: skip
    tasks = TaskService(RedisJobQueue(arq_pool), repository=repository)
    fresh = Reconciler(repository, tasks, stale_after_s=5, grace_s=600, max_lease_losses=3)
    assert (await fresh.run()).vanished_requeued == 0  # within the grace period: the enqueue may be in flight
    report = await Reconciler(repository, tasks, stale_after_s=5, grace_s=60, max_lease_losses=3).run()
    assert report.vanished_requeued == 1
    await run_burst_worker()
    record = await repository.get_job(env.job_id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    await repository.close()


async def test_registry_shows_the_worker_and_removes_it_on_clean_exit(
    settings: Settings, arq_pool: ArqRedis
) -> None:
    """A running worker is listed with its version and state; a clean exit removes its record."""
    await publish_deployment(settings)
    worker = build_worker(settings, handle_signals=False)
    run = asyncio.create_task(worker.async_run())
    registry = DeploymentRegistry(arq_pool)
    deadline = asyncio.get_running_loop().time() + 10 * settings.worker_heartbeat_interval
    records = []
    while not records and asyncio.get_running_loop().time() < deadline:
        records = await registry.list_workers()
        await asyncio.sleep(settings.worker_heartbeat_interval / 2)
    assert [(r.worker_id, r.version, r.state) for r in records] == [
        (worker.worker_id, "test-1", WorkerState.OK)
    ]
    await worker.close()
    await asyncio.gather(run, return_exceptions=True)
    assert await registry.list_workers() == []


async def test_maintenance_worker_runs_the_reconciler_at_start(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """`python workers.py --queue maintenance` (as a burst here) runs the reconcile cron at start-up,
    which re-enqueues a queued job whose arq job vanished."""
    repository = build_repository(settings)
    await repository.init()
    await repository.insert_appointments([appointment("c1")])
    env = envelope("c1")
    await repository.create_jobs(
        [JobRecord(job_id=env.job_id, logical_key=env.logical_key, generation=1, task=env.task,
                   queue="normalization", envelope=env,
                   enqueued_at=datetime.now(UTC) - timedelta(minutes=5))]
    )  # fmt: skip
    maintenance = await run_burst_worker("maintenance")
    assert maintenance.jobs_complete >= 1  # the reconcile cron ran
    assert await arq_pool.exists(job_key_prefix + env.job_id)
    await repository.close()


async def test_cleanup_task_deletes_old_finished_records_only(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """The hourly cleanup task removes ledger records past the retention, never queued ones."""
    from src.jobs.maintenance import cleanup
    from src.jobs.spec import NoPayload

    job_id = await stored_and_enqueued(settings, arq_pool, "k1")
    await run_burst_worker()
    queued_id = await stored_and_enqueued(settings, arq_pool, "k2")
    repository = build_repository(settings)
    await repository.init()
    ctx = {
        "repository": repository,
        "tasks": TaskService(RedisJobQueue(arq_pool), repository=repository),
        "settings": settings.model_copy(update={"ledger_retention_seconds": 60}),
    }
    kept = await cleanup(ctx, NoPayload())  # type: ignore[arg-type]
    assert kept["ledger_records_deleted"] == 0  # finished just now: within the retention
    ctx["settings"] = settings.model_copy(update={"ledger_retention_seconds": 0})
    report = await cleanup(ctx, NoPayload())  # type: ignore[arg-type]
    assert report["ledger_records_deleted"] == 1
    assert await repository.get_job(job_id) is None and await repository.get_job(queued_id) is not None
    await repository.close()


async def test_reconciler_reports_a_strangers_result_and_goes_on_past_odd_ones(
    settings: Settings, arq_pool: ArqRedis, run_burst_worker: RunBurstWorker
) -> None:
    """Two waiting jobs gone from the queue, each with a result no worker of ours wrote (one of them
    odd JSON a naive reader would choke on), and one simply gone: the first two are recorded
    failed/foreign_consumer with what the stranger left and run again as generation 2, the third
    under its own id; all three then succeed."""
    repository = build_repository(settings)
    await repository.init()
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    names = ("s1", "s2", "s3")
    await repository.insert_appointments([appointment(n) for n in names])
    envs = [envelope(n) for n in names]
    await repository.create_jobs(
        [JobRecord(job_id=e.job_id, logical_key=e.logical_key, generation=1, task=e.task,
                   queue="normalization", envelope=e, enqueued_at=long_ago) for e in envs]
    )  # fmt: skip
    await arq_pool.set(
        result_key_prefix + envs[0].job_id, b'{"f": "normalize_appointment", "s": true, "r": "x"}'
    )
    await arq_pool.set(result_key_prefix + envs[1].job_id, b'{"st": 1e300, "t": 1180591620717411303424}')
    tasks = TaskService(RedisJobQueue(arq_pool), repository=repository)
    report = await Reconciler(repository, tasks, stale_after_s=5, grace_s=60, max_lease_losses=3).run()
    assert (report.foreign_consumed, report.vanished_requeued, report.errors) == (2, 1, 0)
    taken = await repository.get_job(envs[0].job_id)
    assert taken is not None and (taken.status, taken.error_category, taken.superseded_by) == (
        JobStatus.FAILED,
        ErrorCategory.FOREIGN_CONSUMER,
        "normalize:s1:2",
    )
    assert taken.result is not None and taken.result["foreign_result"]["result"] == "x"
    odd = await repository.get_job(envs[1].job_id)
    assert odd is not None and odd.result is not None and odd.result["foreign_result"]["format"] == "json"
    await run_burst_worker()
    for job_id in ("normalize:s1:2", "normalize:s2:2", envs[2].job_id):
        record = await repository.get_job(job_id)
        assert record is not None and record.status is JobStatus.SUCCEEDED, job_id
    await repository.close()
