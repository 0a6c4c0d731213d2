"""RFC 9457 problem details: the one error body of the API, its types, and their OpenAPI declarations.

Every error answers `application/problem+json` with `type` (a machine-readable URI reference, one per
kind of error, listed below and served at `/problems/<name>`), `title`, `status`, `detail`,
`instance` and, as extensions, `category` (the error tree's: permanent, transient, policy, timeout)
and `request_id`. `detail` and `category` are where the API's errors always had them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "/problems/"


@dataclass(frozen=True)
class ProblemType:
    name: str
    status: int
    title: str
    category: str
    description: str

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.name


_TYPES = (
    ProblemType("bad-request", 400, "Bad request", "permanent",
                "The body cannot be parsed (JSON that is not UTF-8, broken multipart data)."),
    ProblemType("unauthorized", 401, "Unauthorized", "policy",
                "No bearer token was sent: send `Authorization: Bearer <token>`."),
    ProblemType("forbidden", 403, "Forbidden", "policy",
                "The token is unknown, or its role may not do this (`detail` names the role needed)."),
    ProblemType("policy", 403, "Refused by policy", "policy",
                "Refused by configuration (for example a retired code version)."),
    ProblemType("not-found", 404, "Not found", "permanent", "No such resource (or route)."),
    ProblemType("method-not-allowed", 405, "Method not allowed", "permanent",
                "The route exists, not with this method."),
    ProblemType("conflict", 409, "Conflict", "permanent",
                "The resource's state forbids this now (a finished job cannot be cancelled; the first "
                "request with this Idempotency-Key is still being processed: see Retry-After)."),
    ProblemType("payload-too-large", 413, "Payload too large", "permanent",
                "The body is over MAX_UPLOAD_BYTES, or a spreadsheet over MAX_IMPORT_ROWS."),
    ProblemType("invalid-input", 422, "Invalid input", "permanent",
                "The request is well formed but a value is wrong; `errors` lists each one by location "
                "when the request's shape is wrong. Nothing was stored or queued."),
    ProblemType("unsafe-payload", 422, "Unsafe payload", "permanent",
                "A job payload was refused (not JSON, or over MAX_JOB_PAYLOAD_BYTES)."),
    ProblemType("rate-limited", 429, "Too many requests", "transient",
                "Over RATE_LIMIT_PER_MINUTE for this token: retry after `Retry-After` seconds."),
    ProblemType("internal-error", 500, "Internal error", "permanent",
                "An unexpected error; the log line with this request_id says what."),
    ProblemType("unavailable", 503, "Service unavailable", "transient",
                "Redis or the store does not answer now: retry later (Retry-After when known)."),
    ProblemType("store-unavailable", 503, "Store unavailable", "transient", "The store does not answer now."),
    ProblemType("queue-unavailable", 503, "Queue unavailable", "transient", "Redis does not answer now."),
    ProblemType("llm-unavailable", 503, "LLM unavailable", "transient", "The LLM does not answer now."),
    ProblemType("timed-out", 503, "Timed out", "timeout", "The work took longer than its timeout."),
    ProblemType("not-ready", 503, "Not ready", "transient",
                "This API process cannot accept work: its store does not answer (`store`, `redis`)."),
)  # fmt: skip
PROBLEM_TYPES: dict[str, ProblemType] = {t.name: t for t in _TYPES}
BY_STATUS: dict[int, ProblemType] = {}
for _type in _TYPES:
    BY_STATUS.setdefault(_type.status, _type)  # the first of each status is its generic type


class Problem(BaseModel):
    """An RFC 9457 problem details object, with this API's extensions."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI reference naming the kind of error; see /problems/<name>")
    title: str
    status: int
    detail: str = Field(description="what went wrong with this request, for a human (never input data)")
    instance: str | None = Field(default=None, description="the request's path")
    category: str = Field(description="permanent, transient, policy or timeout (retry transient ones)")
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="on invalid-input from request validation: each error's loc, msg, type"
    )


def problem_body(
    kind: ProblemType, detail: str, *, instance: str | None, request_id: str | None, **extensions: Any
) -> dict[str, Any]:
    return {
        "type": kind.uri,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        "instance": instance,
        "category": kind.category,
        "request_id": request_id,
        **extensions,
    }


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


_EXAMPLES: dict[int, tuple[str, str, dict[str, Any]]] = {
    400: ("bad-request", "There was an error parsing the body", {}),
    401: ("unauthorized", "missing bearer token", {}),
    403: ("forbidden", "this token's role may not do this (needs operator)", {}),
    404: ("not-found", "job normalize:apt_01J:1 not found", {}),
    409: ("conflict", "job normalize:apt_01J:1 already succeeded: nothing to cancel", {}),
    413: ("payload-too-large", "request body exceeds the 10485760 byte limit", {}),
    422: (
        "invalid-input",
        "1 invalid value: body.data_hora",
        {
            "errors": [
                {
                    "loc": ["body", "data_hora"],
                    "msg": "Input should be a valid datetime",
                    "type": "datetime_from_date_parsing",
                }
            ]
        },
    ),  # fmt: skip
    429: ("rate-limited", "rate limit exceeded for this token", {}),
    503: ("queue-unavailable", "queue unavailable, try again shortly", {}),
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    409: {"Retry-After": {"description": "seconds, when waiting helps", "schema": {"type": "integer"}}},
    429: {"Retry-After": {"description": "seconds until the token may call again",
                          "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "seconds, when known", "schema": {"type": "integer"}}},
}  # fmt: skip


def problem_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses: problem+json with an example each. A route's
    own description of a status may be given as `s409="..."`."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        name, detail, extra = _EXAMPLES[status]
        kind = PROBLEM_TYPES[name]
        example = problem_body(kind, detail, instance=None, request_id="3f2c9a", **extra)
        del example["instance"]  # the request's own path: it varies with the route
        response: dict[str, Any] = {
            "description": descriptions.get(f"s{status}", kind.description),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}, "example": example}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[status] = response
    return responses


# The statuses any authenticated route may answer: no token, a refused token, over the rate limit, a
# bad parameter, Redis or the store down. Routes add 404, 409 and 413 where they apply.
AUTHENTICATED = (401, 403, 422, 429, 503)


def declare_problem_schema(app: FastAPI) -> None:
    """Add the `Problem` schema the error responses refer to (they name it, not a route's model)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]
