"""The peers' runner retries a sample whose job ended without its result, a few times per run and
reported (SAQ's sweep race), and fails the run past that."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.peers import runner


@pytest.fixture(autouse=True)
def fresh_retries() -> Iterator[None]:
    runner.RETRIED_SAMPLES.clear()
    yield
    runner.RETRIED_SAMPLES.clear()


def test_a_sample_without_its_result_is_retried_and_reported() -> None:
    results = iter([1, None, 1, 1, 1])
    durations = runner._timed_sync(lambda: next(results), warmups=1, samples=3, check=lambda: None)
    assert len(durations) == 3  # every measured sample had its result
    assert runner.RETRIED_SAMPLES == ["None"]


def test_more_bad_samples_than_allowed_fail_the_run() -> None:
    with pytest.raises(RuntimeError, match="unexpected result 2"):
        runner._timed_sync(lambda: 2, warmups=0, samples=5, check=lambda: None)
    assert len(runner.RETRIED_SAMPLES) == runner.MAX_RETRIED_SAMPLES
