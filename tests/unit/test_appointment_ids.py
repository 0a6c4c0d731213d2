"""Appointment ids: UUIDv7 hex, unique and increasing in creation order (what keeps the stores'
inserts of new appointments and their ledger records local in the B-trees)."""

from __future__ import annotations

import uuid

from src.domain.appointments import new_appointment_id


def test_ids_are_uuid7_in_32_hex_digits() -> None:
    appointment_id = new_appointment_id()
    assert len(appointment_id) == 32
    assert uuid.UUID(hex=appointment_id).version == 7


def test_ids_increase_in_creation_order_even_within_one_millisecond() -> None:
    ids = [new_appointment_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
