"""The FastAPI app factory; pools open in the lifespan, never at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from redis.exceptions import RedisError

from src.api.auth import RateLimiter, TokenBook
from src.api.errors import install_error_handlers
from src.api.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from src.api.problems import declare_problem_schema
from src.api.routes import appointments, batches, dashboard, health, metrics, problems, queue, workers
from src.application.services.appointment_service import AppointmentService
from src.application.services.health import HealthService
from src.application.services.queue_admin import QueueAdmin
from src.application.services.task_service import TaskService
from src.config import Settings, get_settings, settings_or_exit
from src.infrastructure.completion_feed import RedisCompletionFeed
from src.infrastructure.health_config import health_config
from src.infrastructure.idempotency import RedisIdempotencyStore
from src.infrastructure.queue import RedisJobQueue
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.redis_problems import RedisProblemLog
from src.infrastructure.repository_factory import build_repository
from src.jobs.registry import REGISTRY
from src.logging import configure_logging

log = structlog.get_logger(__name__)


async def keep_deployment_published(
    registry: DeploymentRegistry, settings: Settings, store: str, data_key: str
) -> None:
    """Allow this API's own version (never retiring others) and publish its data fingerprint, again
    every heartbeat interval so both come back by themselves after Redis restarts empty."""
    announced: bool | None = None  # whether its version is allowed, as last said
    redis_problems = RedisProblemLog("API deployment beat")
    while True:
        try:
            fingerprint, allowed = await registry.announce(
                settings.app_version, store=store, data_key=data_key, redis_db=settings.redis_db
            )
        except (RedisError, OSError) as exc:  # Redis down or full: said once; the health model shows it
            redis_problems.failed(exc)
        else:
            redis_problems.succeeded()
            if allowed != announced:
                if allowed:
                    log.info("deployment published", version=settings.app_version, fingerprint=fingerprint)
                else:
                    log.error(
                        "this API's code version was retired: it does not allow it again, and workers of "
                        "it claim nothing (`python -m src.cli allow-version` to undo)",
                        version=settings.app_version,
                    )
                announced = allowed
        await asyncio.sleep(settings.worker_heartbeat_interval)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_redis_pool(settings)
        repository = build_repository(settings)
        await repository.init()
        completions = RedisCompletionFeed(pool)  # one subscription for every waiting request
        tasks = TaskService(
            RedisJobQueue(pool, max_payload_bytes=settings.max_job_payload_bytes),
            repository,
            producer_version=settings.app_version,
            completions=completions,
            catalog=REGISTRY,
        )
        app.state.settings = settings
        app.state.repository = repository
        app.state.tasks = tasks
        app.state.appointments = AppointmentService(
            repository,
            tasks,
            producer_version=settings.app_version,
            chunk_size=settings.batch_chunk_size,
            max_import_rows=settings.max_import_rows,
            timezone=settings.timezone,
            limits=settings.field_limits,
        )
        registry = DeploymentRegistry(pool)
        publisher = asyncio.create_task(
            keep_deployment_published(registry, settings, repository.identity(), repository.data_key())
        )
        app.state.registry = registry
        app.state.queue_admin = QueueAdmin(repository, tasks, REGISTRY.queues)
        app.state.health = HealthService(repository, tasks, registry, health_config(settings))
        app.state.idempotency = RedisIdempotencyStore(pool)
        if app.state.token_book.open:
            log.warning("no API token is configured: the API is open (development only)")
        log.info(
            "api ready",
            version=settings.app_version,
            store=repository.identity(),
            redis=settings.redis_display,
        )
        try:
            yield
        finally:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
            await completions.close()
            await pool.aclose(close_connection_pool=True)
            await repository.close()

    app = FastAPI(title="Clinic normalization API", version=settings.app_version, lifespan=lifespan)
    app.state.settings = settings
    app.state.token_book = TokenBook(settings)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    install_error_handlers(app)
    routers = (
        health.router,
        appointments.router,
        batches.router,
        queue.router,
        workers.router,
        metrics.router,
        dashboard.router,
        problems.router,
    )
    for router in routers:
        app.include_router(router)
    declare_problem_schema(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def app_from_env() -> FastAPI:
    """`uvicorn --factory src.api.main:app_from_env`: settings and logging from the environment; a
    wrong setting stops the process with one line naming it."""
    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
