"""A job's payload and result records, in arq's layout so arq's client tools read them.

Payload: `{"t": try, "f": function, "a": args, "k": kwargs, "et": enqueue ms}`. Result: the same
plus `"s"` (success), `"r"` (the return value or the error), `"st"`/`"ft"` (start and finish ms),
`"q"` (queue) and `"id"`. Both go through the JSON serializer of `src/infrastructure/job_serializer.py`
(never pickle), which refuses a payload that is not JSON or is over the size limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from src.domain.jobs import JobEnvelope
from src.errors import UnsafePayload

log = structlog.get_logger(__name__)

Serializer = Callable[[dict[str, Any]], bytes]
Deserializer = Callable[[bytes], dict[str, Any]]


class PayloadRefused(Exception):
    """A job payload this worker will not run: not JSON, too large, or not a job record."""


@dataclass(frozen=True, slots=True)
class JobPayload:
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    enqueue_try: int | None  # a try count the enqueuer set (arq's `_job_try`), else None
    enqueue_time_ms: int


def decode_job(raw: bytes, deserialize: Deserializer) -> JobPayload:
    try:
        data = deserialize(raw)
        return JobPayload(str(data["f"]), tuple(data["a"]), dict(data["k"]), data["t"], int(data["et"]))
    except Exception as exc:  # noqa: BLE001 - whatever the bytes were, the job is refused with the reason
        raise PayloadRefused(f"unable to deserialize job: {exc}") from exc


def encode_envelope(envelope: JobEnvelope, enqueue_time_ms: int, max_bytes: int) -> bytes:
    """The payload of one of our jobs (its envelope the one keyword argument), as the JSON
    serializer would write it, assembled around the envelope's own JSON (a bulk enqueue spends most
    of its time here otherwise); UnsafePayload when it is over `max_bytes`."""
    payload = b'{"t":null,"f":"%s","a":[],"k":{"envelope":%s},"et":%d}' % (
        envelope.task.encode(),
        envelope.model_dump_json().encode(),
        enqueue_time_ms,
    )
    if len(payload) > max_bytes:
        raise UnsafePayload(f"job payload of {len(payload)} bytes exceeds the {max_bytes} limit")
    return payload


def encode_job(serialize: Serializer, function: str, enqueue_time_ms: int) -> bytes:
    """The payload of a job with no arguments (a cron tick)."""
    return serialize({"t": None, "f": function, "a": [], "k": {}, "et": enqueue_time_ms})


def encode_result(
    serialize: Serializer,
    job: JobPayload,
    *,
    job_id: str,
    queue_name: str,
    job_try: int,
    success: bool,
    result: Any,
    start_ms: int,
    finished_ms: int,
) -> bytes | None:
    """The result record; a result the serializer refuses is stored as that refusal (not lost
    silently), and None only when even that cannot be written."""
    data = {"t": job_try, "f": job.function, "a": job.args, "k": job.kwargs, "et": job.enqueue_time_ms}
    data.update(s=success, r=result, st=start_ms, ft=finished_ms, q=queue_name, id=job_id)
    try:
        return serialize(data)
    except Exception as exc:  # noqa: BLE001 - any refusal of the result is reported the same way
        log.warning("job result could not be serialized", job_id=job_id, error=type(exc).__name__)
    data.update(r="unable to serialize result", s=False)
    try:
        return serialize(data)
    except Exception:  # noqa: BLE001 - args themselves unserializable: no result stored
        log.error("job result could not be stored", job_id=job_id)
        return None
