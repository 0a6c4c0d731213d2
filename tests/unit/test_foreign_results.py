"""The account of a stranger's result is short, JSON- and BSON-safe, and made in bounded time
whatever bytes it is given (it runs in the reconciler: one odd result must never stop it)."""

from __future__ import annotations

import json
import pickle
import time

import bson
import pytest
from arq.jobs import DeserializationError, serialize_result

from src.domain.foreign_results import MAX_BYTES, MAX_TEXT, describe_foreign_result


def arq_result(
    serializer: str, result: object, success: bool, function: str = "normalize_appointment"
) -> bytes:
    dump = (lambda o: json.dumps(o, default=str).encode()) if serializer == "json" else pickle.dumps
    return serialize_result(
        function, (), {"envelope": {"ids": {"appointment_id": "a"}}}, 1, 1765000000000, success, result,
        1765000000000, 1765000000100, "ref", "jobs:v1:normalization", job_id="normalize:a:1", serializer=dump,
    )  # fmt: skip


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_arq_results_are_read_field_by_field(serializer: str) -> None:
    """Function, success, result, queue and times come out of either serializer; a pickle unloaded."""
    ran = describe_foreign_result(arq_result(serializer, "ran in the ghost", True))
    assert ran["format"] == serializer
    assert (ran["function"], ran["success"], ran["result"], ran["queue"]) == (
        "normalize_appointment", True, "ran in the ghost", "jobs:v1:normalization",
    )  # fmt: skip
    assert ran["finished_at"] == "2025-12-06T05:46:40.100000+00:00"
    failed = describe_foreign_result(
        arq_result(serializer, DeserializationError("unable to deserialize job"), False)
    )
    assert failed["success"] is False and "unable to deserialize job" in failed["result"]


HOSTILE = {
    "json infinite time": b'{"st": 1e300, "ft": -1e300, "t": 1e999}',
    "json time past year 9999": b'{"st": 1e20, "f": "x"}',
    "json huge int": b'{"t": 1180591620717411303424, "r": 123456789012345678901234567890}',
    "json deep nesting": b'{"r": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "json not an object": b"[1, 2, 3]",
    "pickle of a 5000-digit int": pickle.dumps({"t": 10**5000}),
    "pickle cut short": pickle.dumps({"f": "normalize_appointment", "r": "x" * 100})[:40],
    "pickle of memo opcodes": b"\x80\x04" + b"\x94" * 2_000_000 + b".",
    "pickle of marks": b"\x80\x04" + b"(0" * 2_000_000 + b".",
    "binary noise": bytes(range(256)) * 1000,
    "empty": b"",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_results_give_a_short_safe_account(raw: bytes) -> None:
    """Whatever the bytes, the account is a small dict that JSON and BSON both encode."""
    account = describe_foreign_result(raw)
    assert account["bytes"] == len(raw) and account["format"] in {"json", "pickle", "unknown", "unreadable"}
    assert len(json.dumps(account)) < 20 * MAX_TEXT
    bson.encode(account)


def test_only_the_head_of_a_large_result_is_read() -> None:
    """A reader passes at most MAX_BYTES of a value and its size; a long pickle's head still tells."""
    raw = pickle.dumps({"f": "normalize_appointment", "s": False, "r": "x" * (10 * MAX_BYTES)})
    started = time.process_time()
    account = describe_foreign_result(raw[:MAX_BYTES], len(raw))
    assert time.process_time() - started < 5  # a guard against unbounded work, not a timing test
    assert account["bytes"] == len(raw) and account["function"] == "normalize_appointment"
    assert account["success"] is False
