"""JSON job and result serialization for arq, on both sides (never arq's default pickle).

Pickle would let anyone able to write to Redis run code in every worker; JSON cannot. A payload that
is not JSON (a planted pickle) or is larger than the limit is refused before anything reads it: arq
then records the job as failed with the reason, and the worker carries on. Exceptions in results keep
their type, message and category instead of arq's "unable to serialize result".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from enum import Enum
from typing import Any

import orjson
from pydantic import BaseModel

from src.errors import UnsafePayload

ERROR_MARKER = "__error__"
_ERROR_MARKER_BYTES = ERROR_MARKER.encode()
PICKLE_PROTOCOL_PREFIX = b"\x80"


class JobFailure(Exception):
    """A failure read back from a stored result: the original type name, message and category."""

    def __init__(self, type_name: str, message: str, category: str | None) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message
        self.category = category

    def __repr__(self) -> str:
        return f"JobFailure({self.type_name}: {self.message})"


def _encode(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseException):
        category = getattr(value, "category", None)
        type_name = value.type_name if isinstance(value, JobFailure) else type(value).__name__
        return {
            ERROR_MARKER: {
                "type": type_name,
                "message": str(value) or type_name,
                "category": str(category.value if isinstance(category, Enum) else category)
                if category
                else None,
            }
        }
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode_object(obj: dict[str, Any]) -> Any:
    error = obj.get(ERROR_MARKER)
    if error is not None and len(obj) == 1 and isinstance(error, dict):
        return JobFailure(str(error.get("type")), str(error.get("message")), error.get("category"))
    return obj


def _loads(payload: bytes) -> Any:
    """orjson for the common payload; the stdlib with the object hook (a Python call per object)
    only for stored failures, and for what orjson refuses that the stdlib reads (NaN, big ints)."""
    if _ERROR_MARKER_BYTES not in payload:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass  # the stdlib decides, with its own error
    return json.loads(payload, object_hook=_decode_object)


def make_serializers(
    max_payload_bytes: int,
) -> tuple[Callable[[dict[str, Any]], bytes], Callable[[bytes], dict[str, Any]]]:
    """Return `(serialize, deserialize)` for arq's `job_serializer` / `job_deserializer`."""

    def serialize(data: dict[str, Any]) -> bytes:
        try:
            payload = orjson.dumps(data, default=_encode, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:  # what orjson refuses (an int past 64 bits): the stdlib's output
            payload = json.dumps(data, default=_encode, separators=(",", ":")).encode()
        if len(payload) > max_payload_bytes:
            raise UnsafePayload(f"job payload of {len(payload)} bytes exceeds the {max_payload_bytes} limit")
        return payload

    def deserialize(payload: bytes) -> dict[str, Any]:
        if len(payload) > max_payload_bytes:
            raise UnsafePayload(f"job payload of {len(payload)} bytes exceeds the {max_payload_bytes} limit")
        if payload[:1] == PICKLE_PROTOCOL_PREFIX:
            raise UnsafePayload("job payload is a pickle; only JSON payloads are accepted")
        try:
            decoded = _loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UnsafePayload("job payload is not valid JSON") from exc
        if not isinstance(decoded, dict):
            raise UnsafePayload("job payload is not a JSON object")
        return decoded

    return serialize, deserialize
