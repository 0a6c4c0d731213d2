"""The hand-off inbox item format (`parse_handed_job`), as the enqueue script writes it."""

from __future__ import annotations

import pytest

from src.infrastructure.queue.keys import ClaimedJob, parse_handed_job


def test_an_item_gives_back_id_score_payload_try_and_abort_flag() -> None:
    payload = b'{"t":null,"f":"normalize_appointment","a":[],"k":{"envelope":{"x":"a b"}},"et":1}'
    item = b"3 1732372800123 1 %d odd id: with spaces%s" % (len("odd id: with spaces"), payload)
    assert parse_handed_job(item) == ClaimedJob(
        job_id="odd id: with spaces", score=1732372800123, payload=payload, job_try=3, aborted=True
    )


@pytest.mark.parametrize(
    "item",
    [b"", b"1 2 0", b"1 2 0 x id{}", b"1 2 0 99 short{}", b"1 2 0 0 {}", b"one 2 0 2 id{}"],
    ids=["empty", "truncated", "length-not-a-number", "length-past-the-end", "empty-id", "try-not-a-number"],
)
def test_a_malformed_item_is_refused(item: bytes) -> None:
    with pytest.raises(ValueError):
        parse_handed_job(item)
