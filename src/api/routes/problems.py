"""`GET /problems/<name>`: what each problem `type` of the API's errors means (RFC 9457 §3.1.1)."""

from __future__ import annotations

from fastapi import APIRouter

from src.api.problems import PROBLEM_TYPES
from src.errors import NotFound

router = APIRouter(tags=["problems"], include_in_schema=False)


@router.get("/problems/{name}")
async def problem_type(name: str) -> dict[str, str | int]:
    """The type's title, status, category and meaning; open, like the documentation it is."""
    kind = PROBLEM_TYPES.get(name)
    if kind is None:
        raise NotFound(f"no problem type {name}")
    return {
        "type": kind.uri,
        "title": kind.title,
        "status": kind.status,
        "category": kind.category,
        "description": kind.description,
    }
