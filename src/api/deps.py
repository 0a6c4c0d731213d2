"""FastAPI dependencies as `Annotated` aliases; tests override them with `app.dependency_overrides`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from src.api.auth import Caller, RateLimiter, Role, TokenBook
from src.application.ports import IdempotencyStore, Repository
from src.application.services.appointment_service import AppointmentService
from src.application.services.health import HealthService
from src.application.services.queue_admin import QueueAdmin
from src.application.services.task_service import TaskService
from src.config import Settings
from src.infrastructure.queue.deployment_registry import DeploymentRegistry
from src.logging import bind_context

_bearer = HTTPBearer(auto_error=False)


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_repository(request: Request) -> Repository:
    repository: Repository = request.app.state.repository
    return repository


def get_task_service(request: Request) -> TaskService:
    tasks: TaskService = request.app.state.tasks
    return tasks


def get_appointment_service(request: Request) -> AppointmentService:
    service: AppointmentService = request.app.state.appointments
    return service


def get_queue_admin(request: Request) -> QueueAdmin:
    admin: QueueAdmin = request.app.state.queue_admin
    return admin


def get_registry(request: Request) -> DeploymentRegistry:
    registry: DeploymentRegistry = request.app.state.registry
    return registry


def get_health(request: Request) -> HealthService:
    health: HealthService = request.app.state.health
    return health


def get_idempotency(request: Request) -> IdempotencyStore:
    store: IdempotencyStore = request.app.state.idempotency
    return store


def get_request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RepositoryDep = Annotated[Repository, Depends(get_repository)]
TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]
AppointmentServiceDep = Annotated[AppointmentService, Depends(get_appointment_service)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
QueueAdminDep = Annotated[QueueAdmin, Depends(get_queue_admin)]
RegistryDep = Annotated[DeploymentRegistry, Depends(get_registry)]
IdempotencyDep = Annotated[IdempotencyStore, Depends(get_idempotency)]
HealthDep = Annotated[HealthService, Depends(get_health)]


def get_token_book(request: Request) -> TokenBook:
    book: TokenBook = request.app.state.token_book
    return book


def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


def authenticate(
    book: Annotated[TokenBook, Depends(get_token_book)],
    limiter: Annotated[RateLimiter, Depends(get_rate_limiter)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The one auth check of the API: `Authorization: Bearer <token>`, then the caller's rate limit."""
    if book.open:
        caller = Caller("anonymous-dev", Role.OPERATOR)
    elif credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    else:
        found = book.identify(credentials.credentials)
        if found is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid token")
        caller = found
    wait = limiter.retry_after(caller.name)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "rate limit exceeded for this token",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    bind_context(caller=caller.name)
    return caller


def require(role: Role) -> Callable[[Caller], Caller]:
    def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if caller.role < role:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this token's role may not do this (needs {role.name.lower()})"
            )
        return caller

    return check


# Reading is open to any valid token; writing needs writer; cancel, retry, cleanup, versions and
# metrics need operator.
CallerDep = Annotated[Caller, Depends(require(Role.READER))]
WriterDep = Annotated[Caller, Depends(require(Role.WRITER))]
OperatorDep = Annotated[Caller, Depends(require(Role.OPERATOR))]
