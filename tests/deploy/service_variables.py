"""Which service of the compose files reads each setting at run time: the source of the test that
every documented variable reaches its service (so Coolify's Environment Variables page can set it).

A new setting fails tests/deploy/test_compose.py until it is placed here: in READ_BY, or in
NOT_IN_COMPOSE with the reason the deploy guide gives.
"""

from __future__ import annotations

API, WORKER, MAINTENANCE = "api", "worker", "worker-maintenance"
EVERY = (API, WORKER, MAINTENANCE)
WORKERS = (WORKER, MAINTENANCE)

READ_BY: dict[str, tuple[str, ...]] = {
    # every process: start-up checks, logs, Redis, the store, the tokens (checked at every start)
    **dict.fromkeys(
        (
            "ENVIRONMENT",
            "LOG_LEVEL",
            "LOG_FORMAT",
            "REDIS_URL",
            "REDIS_PASSWORD",
            "REDIS_MAX_CONNECTIONS",
            "REDIS_POOL_TIMEOUT",
            "MONGODB_URL",
            "DATABASE_NAME",
            "MONGODB_MAX_POOL_SIZE",
            "API_ACCESS_TOKEN",
            "API_TOKENS",
        ),
        EVERY,
    ),
    # the job protocol: validated together at every start, read by the API's health model and CLI
    **dict.fromkeys(
        (
            "ARQ_KEEP_RESULT",
            "MAX_JOB_PAYLOAD_BYTES",
            "WORKER_HEARTBEAT_INTERVAL",
            "JOB_LEASE_SECONDS",
            "JOB_MAX_LEASE_LOSSES",
            "RECONCILE_EVERY_SECONDS",
        ),
        EVERY,
    ),
    # every worker process, both queues
    **dict.fromkeys(
        (
            "ARQ_MAX_JOBS",
            "ARQ_JOB_TIMEOUT",
            "ARQ_MAX_TRIES",
            "ARQ_POLL_DELAY",
            "ARQ_JOB_COMPLETION_WAIT",
            "WORKER_DIRECT_HANDOFF",
            "WORKER_EVENT_LOOP",
            "JOB_LOG_LINES_PER_SECOND",
            "WORKER_MAX_JOBS_BEFORE_RESTART",
            "WORKER_MAX_RSS_MB",
            "WORKER_STATE_DIR",
        ),
        WORKERS,
    ),
    # normalization
    **dict.fromkeys(
        (
            "ADDRESS_NORMALIZATION_ENABLED",
            "DOCUMENT_NORMALIZATION_ENABLED",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_MODEL",
            "OPENAI_TIMEOUT",
            "OPENAI_MAX_RETRIES",
            "OPENAI_HTTP_TRANSPORT",
            "LLM_CONCURRENCY_HARD_CAP",
            "LLM_BREAKER_FAILURES",
            "LLM_BREAKER_COOLDOWN_SECONDS",
            "RENORMALIZE_EVERY_SECONDS",
            "RENORMALIZE_PER_RUN",
        ),
        (WORKER,),
    ),
    # the API: requests, uploads, input rules, health thresholds; PORT is fixed to the command's 8000
    **dict.fromkeys(
        (
            "RATE_LIMIT_PER_MINUTE",
            "MAX_UPLOAD_BYTES",
            "MAX_IMPORT_ROWS",
            "BATCH_CHUNK_SIZE",
            "APP_TIMEZONE",
            "MAX_PACIENTE_CHARS",
            "MAX_DOCUMENTO_CHARS",
            "MAX_ENDERECO_CHARS",
            "MAX_TELEFONE_CHARS",
            "MAX_EMAIL_CHARS",
            "LLM_DEGRADED_FALLBACK_SHARE",
            "PORT",
        ),
        (API,),
    ),
    "LEDGER_RETENTION_SECONDS": (API, MAINTENANCE),  # the hourly cleanup, and `src.cli cleanup` in the api
}

# Settings the compose files leave out on purpose (deploy/coolify/README.md says so too).
NOT_IN_COMPOSE = {
    "APP_VERSION": "baked into the image by the build argument",
    "SQLITE_PATH": "the compose stacks use MongoDB",
    "DEBUG": "development only",
    "HEALTHCHECK_ROLE": "each service's health check follows its command",
}
# Coolify sets it at run time; the local stack requires APP_VERSION instead.
COOLIFY_ONLY = {"SOURCE_COMMIT": EVERY}

# Defaults a compose file chooses on purpose instead of the setting's own (value, why).
DELIBERATE_DEFAULTS = {
    ("WORKER_MAX_RSS_MB", "800"): "under the Coolify worker's mem_limit of 1g (drain before the OOM kill)",
    ("LOG_FORMAT", "json"): "containers log JSON lines, whatever the terminal",
    ("REDIS_URL", "redis://clinic-redis:6379/0"): "the Coolify stack's own Redis service",
}
