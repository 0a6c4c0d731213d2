"""The one Settings class: every variable the API and the workers read, from the environment or `.env`.

One rule per service:
- Redis: `REDIS_URL` is the connection. `REDIS_PASSWORD` fills in only when the URL carries none.
- MongoDB: `MONGODB_URL` selects MongoDB; `DATABASE_NAME` names the database whatever the URL's path
  says. Without `MONGODB_URL` the embedded SQLite store at `SQLITE_PATH` is used (single host).
- OpenAI: LLM address normalization runs only with an `OPENAI_API_KEY` or an `OPENAI_BASE_URL`;
  otherwise the rules normalizer is used (said once in the log).

Only the composition roots (API lifespan, worker startup, `workers.py`, the CLI) call `get_settings()`.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from src.domain.appointments import FieldLimits
from src.redis_urls import check_redis_url, is_sentinel, parse_sentinel_url, sentinel_display, with_password

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "<sua_chave_api>"})


UNKNOWN_VERSION = "unknown"
EventLoopKind = Literal["uvloop", "asyncio"]  # WORKER_EVENT_LOOP
HttpTransport = Literal["aiohttp", "httpx"]  # OPENAI_HTTP_TRANSPORT: the OpenAI SDK's HTTP client
ROLES = ("reader", "writer", "operator")
REPO_ROOT = Path(__file__).resolve().parent.parent


def git_sha(root: Path = REPO_ROOT) -> str | None:
    """The short commit sha of a git checkout, read from `.git` without running git; None elsewhere."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12] or None
        ref = head[5:]
        ref_file = git / ref
        if ref_file.exists():
            return ref_file.read_text().strip()[:12] or None
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        return None
    return None


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


ENV_FILE_VARIABLE = "APP_ENV_FILE"  # which .env file get_settings() reads ("": none)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting must not print the secrets it was given
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    # environment
    environment: Environment = Environment.DEVELOPMENT
    debug: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    app_version: str = ""  # baked into the image at build time; a checkout falls back to its git sha
    source_commit: str = ""  # set by Coolify at run time: the version when the image has none

    # redis / queue
    redis_url: str = "redis://localhost:6379/0"
    redis_password: SecretStr | None = None
    redis_max_connections: int = Field(default=50, ge=2)
    redis_pool_timeout: float = Field(default=10.0, gt=0)

    # store
    mongodb_url: SecretStr | None = None
    database_name: str = "clinic_db"
    mongodb_max_pool_size: int = Field(default=20, ge=1)
    sqlite_path: str = "var/clinic.sqlite3"

    # normalization
    address_normalization_enabled: bool = True
    document_normalization_enabled: bool = True
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = Field(default=30.0, gt=0)
    openai_max_retries: int = Field(default=2, ge=0)
    openai_http_transport: HttpTransport = "aiohttp"
    llm_concurrency_hard_cap: int = Field(default=32, ge=1)
    llm_breaker_failures: int = Field(default=5, ge=1)
    llm_breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    # asks the LLM again for rules_fallback addresses (0: off)
    renormalize_every_seconds: int = Field(default=60, ge=0)
    renormalize_per_run: int = Field(default=50, ge=1)  # ...at most this many per run: its rate limit
    llm_degraded_fallback_share: float = Field(default=0.5, ge=0, le=1)

    # worker
    arq_max_jobs: int = Field(default=40, ge=1)
    arq_job_timeout: int = Field(default=300, ge=1)
    arq_keep_result: int = Field(default=3600, ge=0)
    arq_max_tries: int = Field(default=5, ge=1)
    arq_poll_delay: float = Field(default=0.5, gt=0)
    arq_job_completion_wait: int = Field(default=25, ge=0)
    worker_event_loop: EventLoopKind = "uvloop"
    worker_direct_handoff: bool = True  # an idle worker is handed new jobs by the enqueue itself
    max_job_payload_bytes: int = Field(default=65536, ge=1024)

    # lifecycle safety
    worker_heartbeat_interval: float = Field(default=5.0, gt=0)
    job_lease_seconds: float = Field(default=30.0, gt=0)
    job_max_lease_losses: int = Field(default=3, ge=1)
    worker_max_jobs_before_restart: int = Field(default=0, ge=0)
    worker_max_rss_mb: int = Field(default=0, ge=0)
    reconcile_every_seconds: int = Field(default=30, ge=1)
    ledger_retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    worker_state_dir: str = "/tmp/clinic-workers"
    healthcheck_role: Literal["auto", "api", "worker", "both"] = "auto"  # python -m src.healthcheck
    port: int = Field(default=8000, ge=1, le=65535)  # the image: start script, health check
    job_log_lines_per_second: int = Field(default=50, ge=0)  # INFO start/success lines per worker; 0: none
    batch_chunk_size: int = Field(default=50, ge=1)

    # api
    api_access_token: SecretStr | None = None  # full access (operator), kept for simple set-ups
    api_tokens: SecretStr | None = None  # named tokens with roles: "name:role:token,name:role:token"
    rate_limit_per_minute: int = Field(default=600, ge=0)  # per token, in memory; 0 disables
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_import_rows: int = Field(default=100_000, ge=1)

    # input rules (docs/security.md)
    app_timezone: str = "America/Sao_Paulo"  # the zone of every input time written without an offset
    max_paciente_chars: int = Field(default=200, ge=1)
    max_documento_chars: int = Field(default=32, ge=1)
    max_endereco_chars: int = Field(default=500, ge=1)
    max_telefone_chars: int = Field(default=40, ge=1)
    max_email_chars: int = Field(default=254, ge=1)

    @field_validator("app_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(
                f"APP_TIMEZONE {value!r} is not an IANA time zone name (e.g. America/Sao_Paulo)"
            ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _known_redis_form(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("openai_base_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "redis_password", "mongodb_url", "openai_api_key", "api_access_token", "api_tokens", mode="before"
    )
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _resolve_version(self) -> Settings:
        if not self.app_version.strip():
            commit = self.source_commit.strip()
            usable = commit if commit and commit != UNKNOWN_VERSION else None  # Coolify says "unknown"
            self.app_version = usable or git_sha() or UNKNOWN_VERSION
        if self.environment == Environment.PRODUCTION and self.app_version in (UNKNOWN_VERSION, "dev"):
            raise ValueError(
                "APP_VERSION is unknown: production processes must know their code version "
                "(build the image with --build-arg APP_VERSION=<commit>, or on Coolify pass "
                "SOURCE_COMMIT to the service)"
            )
        return self

    @model_validator(mode="after")
    def _check_api_tokens(self) -> Settings:
        if self.api_tokens is None:
            return self
        names: set[str] = set()
        for raw in self.api_tokens.get_secret_value().split(","):
            if not raw.strip():
                continue
            parts = raw.split(":", 2)
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise ValueError("API_TOKENS entries are name:role:token, separated by commas")
            name, role = parts[0].strip(), parts[1].strip()
            if role not in ROLES:
                raise ValueError(f"API_TOKENS entry {name!r}: role must be one of {', '.join(ROLES)}")
            if name in names:
                raise ValueError(f"API_TOKENS names must be unique: {name!r} appears twice")
            names.add(name)
        return self

    @model_validator(mode="after")
    def _check_lifecycle(self) -> Settings:
        for name, every in (
            ("RECONCILE_EVERY_SECONDS", self.reconcile_every_seconds),
            ("RENORMALIZE_EVERY_SECONDS", self.renormalize_every_seconds or 60),  # 0: off
        ):
            if not (60 % every == 0 or (every % 60 == 0 and 3600 % every == 0)):
                raise ValueError(f"{name} must divide 60, or be a multiple of 60 that divides 3600")
        if self.job_lease_seconds < 2 * self.worker_heartbeat_interval:
            raise ValueError("JOB_LEASE_SECONDS must be at least twice WORKER_HEARTBEAT_INTERVAL")
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> Settings:
        if self.environment in (Environment.DEVELOPMENT, Environment.TEST):
            return self
        for name in ("redis_password", "openai_api_key", "api_access_token"):
            secret: SecretStr | None = getattr(self, name)
            if secret is not None and secret.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"{name.upper()} holds a placeholder value; set a real secret")
        if self.api_access_token is None and not self.named_tokens:
            raise ValueError("API_ACCESS_TOKEN or API_TOKENS must be set outside development")
        if self.api_access_token is not None and len(self.api_access_token.get_secret_value()) < 16:
            raise ValueError("API_ACCESS_TOKEN needs at least 16 characters outside development")
        for name, _, token in self.named_tokens:
            if len(token) < 16 or token.lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"API_TOKENS entry {name!r} needs a real token of at least 16 characters")
        return self

    @property
    def named_tokens(self) -> list[tuple[str, str, str]]:
        """API_TOKENS parsed as (name, role, token); the format is checked when settings load."""
        if self.api_tokens is None:
            return []
        entries = []
        for raw in self.api_tokens.get_secret_value().split(","):
            if not raw.strip():
                continue
            name, role, token = (part.strip() for part in raw.split(":", 2))
            entries.append((name, role, token))
        return entries

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.app_timezone)

    @property
    def field_limits(self) -> FieldLimits:
        return FieldLimits(
            paciente=self.max_paciente_chars,
            documento=self.max_documento_chars,
            endereco=self.max_endereco_chars,
            telefone=self.max_telefone_chars,
            email=self.max_email_chars,
        )

    @property
    def is_production(self) -> bool:
        return self.environment == Environment.PRODUCTION

    @property
    def effective_redis_url(self) -> str:
        """`REDIS_URL` with `REDIS_PASSWORD` filled in only when the URL carries no password."""
        if is_sentinel(self.redis_url):
            if parse_sentinel_url(self.redis_url).password or self.redis_password is None:
                return self.redis_url
            return with_password(self.redis_url, self.redis_password.get_secret_value())
        parts = urlsplit(self.redis_url)
        if parts.password or self.redis_password is None:
            return self.redis_url
        user = quote(unquote(parts.username or ""), safe="")  # urlsplit leaves it percent-encoded
        password = quote(self.redis_password.get_secret_value(), safe="")
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def redis_display(self) -> str:
        """Host, port and db of Redis with any password masked: safe for banners and logs."""
        if is_sentinel(self.redis_url):
            return sentinel_display(self.effective_redis_url)
        parts = urlsplit(self.effective_redis_url)
        auth = "***@" if parts.password else ""
        db = parts.path.lstrip("/") or "0"
        return f"{auth}{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"

    @property
    def redis_db(self) -> int:
        """The Redis database number of `REDIS_URL` (path or `?db=`), as arq reads it."""
        if is_sentinel(self.redis_url):
            return parse_sentinel_url(self.redis_url).db
        parts = urlsplit(self.redis_url)
        query_db = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("db")
        path = parts.path.lstrip("/")
        return int(query_db or path or 0)

    @property
    def llm_enabled(self) -> bool:
        return self.openai_api_key is not None or self.openai_base_url is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; tests set the environment first and call `cache_clear()`.
    The `.env` file is read from the working directory, or from `APP_ENV_FILE` (empty: none, which
    the tests and the demo set so that a developer's `.env` never reaches them)."""
    env_file = os.environ.get(ENV_FILE_VARIABLE, ".env") or None
    return Settings(_env_file=env_file)


def isolated_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`environ` (the process's) without any variable the settings read, and with no `.env` file:
    what the demo and the tests start from, so that a developer's environment or `.env` (a real
    MONGODB_URL, OPENAI_API_KEY, or a production template) never reaches them."""
    names = {name.upper() for name in Settings.model_fields} | {ENV_FILE_VARIABLE}
    clean = {k: v for k, v in (os.environ if environ is None else environ).items() if k.upper() not in names}
    clean[ENV_FILE_VARIABLE] = ""
    return clean


def settings_or_exit() -> Settings:
    """For the entry points (API, workers, CLI): the settings, or one line naming each variable
    that is wrong and exit status 2, never a traceback."""
    try:
        return get_settings()
    except ValidationError as exc:
        print(f"configuration error: {describe_errors(exc)}", file=sys.stderr)
        raise SystemExit(2) from None


def describe_errors(exc: ValidationError) -> str:
    """`REDIS_URL: ...; API_ACCESS_TOKEN ...`: each error with its variable, no values (the model
    hides its input: a refused setting may be a secret)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        names = [str(part).upper() for part in error.get("loc", ()) if isinstance(part, str)]
        parts.append(f"{names[0]}: {message}" if names else message)
    return "; ".join(parts)
