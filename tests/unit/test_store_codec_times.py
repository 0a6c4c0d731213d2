"""Datetimes as the SQLite store writes them: UTC, fixed width, so text order is time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from src.infrastructure.store_codec import iso_utc, to_utc


def test_to_utc_converts_offsets_takes_naive_as_utc_and_keeps_utc() -> None:
    brasilia = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-3)))
    assert to_utc(brasilia) == brasilia and to_utc(brasilia).tzinfo is UTC
    assert to_utc(brasilia).hour == 15
    assert to_utc(datetime(2026, 1, 1, 12, 0)) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    now = datetime.now(UTC)
    assert to_utc(now) is now  # nothing to convert


def test_iso_utc_is_fixed_width_and_orders_like_time() -> None:
    early = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    late = datetime(2026, 1, 1, 9, 0, 0, 1, tzinfo=timezone(timedelta(hours=-3)))  # 12:00:00.000001 UTC
    assert iso_utc(early) == "2026-01-01T12:00:00.000000+00:00"
    assert len(iso_utc(early) or "") == len(iso_utc(late) or "")
    assert (iso_utc(early) or "") < (iso_utc(late) or "")
    assert iso_utc(None) is None
