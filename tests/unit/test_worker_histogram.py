"""The duration histogram a worker publishes: Prometheus buckets (value <= upper bound), +Inf last."""

from __future__ import annotations

from src.domain.workers import DURATION_BUCKETS_S, Histogram


def test_a_value_lands_in_the_first_bucket_whose_bound_is_not_below_it() -> None:
    h = Histogram()
    first, second = DURATION_BUCKETS_S[0], DURATION_BUCKETS_S[1]
    h.observe(0.0)
    h.observe(first)  # on the bound: that bucket (le)
    h.observe((first + second) / 2)
    h.observe(DURATION_BUCKETS_S[-1] * 10)  # above every bound: +Inf
    assert h.counts[0] == 2
    assert h.counts[1] == 1
    assert h.counts[-1] == 1
    assert sum(h.counts) == h.count == 4
    assert h.total == first + (first + second) / 2 + DURATION_BUCKETS_S[-1] * 10
    assert len(h.counts) == len(h.bounds) + 1
