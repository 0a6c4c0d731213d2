"""FastAPI dependencies as `Annotated` aliases; tests override them with `app.dependency_overrides`."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from src.application.ports import Repository
from src.application.services.appointment_service import AppointmentService
from src.application.services.queue_admin import QueueAdmin
from src.application.services.task_service import TaskService
from src.config import Settings
from src.infrastructure.deployment_registry import DeploymentRegistry

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


def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The one auth check of the API: `Authorization: Bearer <API_ACCESS_TOKEN>`, in constant time.

    Returns the caller's name; the security issue adds named tokens with roles here.
    """
    expected = settings.api_access_token
    if expected is None:
        # Only reachable in development/test (Settings refuses a missing token elsewhere).
        return "anonymous-dev"
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if not secrets.compare_digest(credentials.credentials.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid token")
    return "api-access-token"


CallerDep = Annotated[str, Depends(require_token)]


def require_operator(caller: CallerDep) -> str:
    """Cancel, retry, cleanup and version commands. With the single API_ACCESS_TOKEN every caller is
    an operator; named tokens with roles plug in here."""
    return caller


OperatorDep = Annotated[str, Depends(require_operator)]
