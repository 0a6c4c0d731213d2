"""Worker start-up and shut-down: build every client once, close them at the end."""

from __future__ import annotations

import asyncio

import structlog

from src.application.ports import AddressNormalizer
from src.application.services.normalization_service import NormalizationService
from src.application.services.reconciler import Reconciler
from src.application.services.rules_address_normalizer import RulesAddressNormalizer
from src.application.services.task_service import TaskService
from src.config import Settings
from src.domain.workers import data_fingerprint
from src.errors import StoreUnavailable
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.repository_factory import build_repository
from src.jobs.registry import REGISTRY
from src.logging import bind_context
from src.worker.context import WorkerContext
from src.worker.job_lines import JobLines
from src.worker.job_runner import JobRunner

log = structlog.get_logger(__name__)

STARTUP_TIMEOUT_S = 10.0
RECONCILE_GRACE_S = 5.0


def build_address_normalizer(settings: Settings, ctx: WorkerContext) -> AddressNormalizer:
    rules = RulesAddressNormalizer()
    if not settings.llm_enabled:
        ctx["openai_client"] = None
        log.info("address normalization in rules mode: no OPENAI_API_KEY and no OPENAI_BASE_URL")
        return rules
    from src.infrastructure.circuit_breaker import BreakerPolicy, CircuitBreaker
    from src.infrastructure.llm_address_normalizer import LLMAddressNormalizer, build_openai_client

    client = build_openai_client(
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        base_url=settings.openai_base_url,
        timeout_s=settings.openai_timeout,
        max_retries=settings.openai_max_retries,
        transport=settings.openai_http_transport,
    )
    ctx["openai_client"] = client
    log.info(
        "address normalization in llm mode",
        model=settings.openai_model,
        cap=settings.llm_concurrency_hard_cap,
    )
    breaker = CircuitBreaker(
        BreakerPolicy(settings.llm_breaker_failures, settings.llm_breaker_cooldown_seconds)
    )
    return LLMAddressNormalizer(
        client,
        settings.openai_model,
        fallback=rules,
        concurrency=settings.llm_concurrency_hard_cap,
        breaker=breaker,
    )


async def warn_if_redis_may_evict(ctx: WorkerContext) -> None:
    """Queued jobs are data: a Redis allowed to evict keys under memory pressure loses them silently."""
    try:
        policy = (await ctx["redis"].info("memory")).get("maxmemory_policy", "unknown")
    except Exception as exc:  # noqa: BLE001 - managed Redis may refuse INFO; say so, do not fail
        log.warning("cannot read Redis maxmemory-policy", error=type(exc).__name__)
        return
    if policy != "noeviction":
        log.error(
            "Redis maxmemory-policy is not noeviction: queued jobs can be evicted silently",
            maxmemory_policy=policy,
            fix="set maxmemory-policy noeviction (redis.conf or --maxmemory-policy noeviction)",
        )


async def startup(ctx: WorkerContext) -> None:
    settings = ctx["settings"]
    bind_context(worker_id=ctx["worker_id"])
    repository = build_repository(settings)
    try:
        await asyncio.wait_for(repository.init(), STARTUP_TIMEOUT_S)
    except (TimeoutError, StoreUnavailable) as exc:
        raise StoreUnavailable(f"store {repository.identity()} unreachable at start-up: {exc}") from exc
    ctx["repository"] = repository
    ctx["fingerprint"] = data_fingerprint(settings.redis_db, repository.data_key())
    normalizer = build_address_normalizer(settings, ctx)
    ctx["address_normalizer"] = normalizer
    ctx["normalization"] = NormalizationService(
        repository,
        normalizer,
        documents_enabled=settings.document_normalization_enabled,
        addresses_enabled=settings.address_normalization_enabled,
        concurrency=settings.llm_concurrency_hard_cap,
    )
    ctx["runner"] = JobRunner(
        repository,
        worker_id=ctx["worker_id"],
        version=ctx["version"],
        max_lease_losses=settings.job_max_lease_losses,
        active_runs=ctx["active_runs"],
        stats=ctx["task_stats"],
        lines=JobLines(settings.job_log_lines_per_second),
    )
    ctx["tasks"] = TaskService(
        RedisJobQueue(ctx["redis"], max_payload_bytes=settings.max_job_payload_bytes),
        repository,
        producer_version=ctx["version"],
        catalog=REGISTRY,
    )
    ctx["reconciler"] = Reconciler(
        repository,
        ctx["tasks"],
        # a running job is stale when its lease could have been renewed three times and was not
        stale_after_s=max(3 * settings.worker_heartbeat_interval, settings.job_lease_seconds),
        # A queued record whose arq job is not there yet may be one an enqueue is pushing right now
        # (records are written first): a grace of one chunk's push. Re-enqueueing under the same id
        # is idempotent, so a short grace is safe, and it keeps deferred jobs (Redis was down) to
        # one interval after Redis is back.
        grace_s=min(RECONCILE_GRACE_S, settings.reconcile_every_seconds),
        max_lease_losses=settings.job_max_lease_losses,
    )
    await warn_if_redis_may_evict(ctx)
    log.info("worker ready", store=repository.identity(), fingerprint=ctx["fingerprint"])


async def shutdown(ctx: WorkerContext) -> None:
    client = ctx.get("openai_client")
    if client is not None:
        await client.close()
    repository = ctx.get("repository")
    if repository is not None:
        await repository.close()
