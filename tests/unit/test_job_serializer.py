"""JSON job serialization: round trips, exceptions keep their shape, pickles and big payloads refused."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from src.domain.jobs import ErrorCategory, JobEnvelope
from src.errors import StoreUnavailable, UnsafePayload
from src.infrastructure.job_serializer import JobFailure, make_serializers

serialize, deserialize = make_serializers(4096)


def test_job_dict_round_trips_through_json() -> None:
    """An arq job dict with an envelope and a datetime comes back equal (datetime as ISO text)."""
    env = JobEnvelope(task="normalize_appointment", logical_key="normalize:a1", ids={"appointment_id": "a1"})
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    data = deserialize(
        serialize({"f": "normalize_appointment", "a": [], "k": {"envelope": env}, "et": 1, "w": when})
    )
    assert data["k"]["envelope"]["logical_key"] == "normalize:a1"
    assert data["w"] == when.isoformat()
    assert serialize({"a": (1, 2)}) == b'{"a":[1,2]}'


def test_exception_results_keep_type_message_and_category() -> None:
    """A failed job's exception is stored as type, message and category, and read back as JobFailure."""
    decoded = deserialize(serialize({"s": False, "r": StoreUnavailable("store down")}))
    failure = decoded["r"]
    assert isinstance(failure, JobFailure)
    assert failure.type_name == "StoreUnavailable"
    assert failure.message == "store down"
    assert failure.category == ErrorCategory.TRANSIENT.value
    again = deserialize(serialize({"r": failure}))["r"]
    assert isinstance(again, JobFailure) and again.type_name == "StoreUnavailable"


def test_the_marker_as_plain_text_stays_text() -> None:
    """Only an object that is exactly `{"__error__": {...}}` becomes a JobFailure: the marker inside
    a string (an address, say) or next to other keys is data, with or without a failure beside it."""
    data = {"s": "__error__ in an address", "d": {"__error__": {"type": "X"}, "other": 1}}
    assert deserialize(serialize(data)) == data
    mixed = deserialize(serialize({**data, "r": ValueError("boom")}))
    assert mixed["s"] == data["s"] and mixed["d"] == data["d"]
    assert isinstance(mixed["r"], JobFailure) and mixed["r"].message == "boom"


def test_pickled_payload_is_refused_without_unpickling() -> None:
    """A pickle planted in Redis is refused by its protocol byte, never passed to pickle.loads."""
    planted = pickle.dumps({"f": "normalize_appointment", "a": [], "k": {}, "t": 1, "et": 1})
    with pytest.raises(UnsafePayload, match="pickle"):
        deserialize(planted)


def test_non_json_and_non_object_payloads_are_refused() -> None:
    """Garbage bytes and JSON that is not an object are refused with a clear reason."""
    with pytest.raises(UnsafePayload, match="not valid JSON"):
        deserialize(b"\xff\xfe garbage")
    with pytest.raises(UnsafePayload, match="not a JSON object"):
        deserialize(b"[1, 2]")


def test_payloads_over_the_limit_are_refused_both_ways() -> None:
    """Serializing or reading a payload above the byte limit raises UnsafePayload."""
    with pytest.raises(UnsafePayload, match="exceeds"):
        serialize({"k": "x" * 5000})
    with pytest.raises(UnsafePayload, match="exceeds"):
        deserialize(b'{"k":"' + b"x" * 5000 + b'"}')


def test_unknown_types_are_not_silently_stringified() -> None:
    """An object JSON cannot represent raises instead of being stored as its repr."""
    with pytest.raises(TypeError):
        serialize({"k": object()})
