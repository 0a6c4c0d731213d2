"""Cursor pagination for every list: `limit` and `cursor` in, `items`, `next_cursor` and `total` out.

A cursor is opaque to clients: base64url JSON naming the list it belongs to, the filters it was made
with and the position of the last item returned (a time and an id, or an id). Keyset positions,
not offsets, so a page never repeats or skips an item when new ones arrive at the head. A cursor that
does not decode, belongs to another list or to other filters is a 422 that says so.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from src.errors import InvalidInput

T = TypeVar("T")

CursorQuery = Annotated[
    str | None,
    Query(max_length=1024, description="`next_cursor` of the previous page; absent for the first page"),
]


class Page(BaseModel, Generic[T]):
    """One page of a list: its items, the cursor of the next page (null on the last) and the total."""

    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: the last page")
    total: int = Field(description="items in the whole list (with the same filters), all pages")


def encode_cursor(kind: str, filters: dict[str, str | None], position: dict[str, str]) -> str:
    raw = json.dumps({"k": kind, "f": filters, "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, filters: dict[str, str | None]) -> dict[str, str]:
    """The position a cursor holds; InvalidInput (422) when it is not a cursor of this list and filters."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        made_for, made_with, position = data["k"], data["f"], data["p"]
        if not isinstance(position, dict) or not all(isinstance(v, str) for v in position.values()):
            raise ValueError("position")
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise InvalidInput("invalid cursor: pass the `next_cursor` of a previous page unchanged") from None
    if made_for != kind:
        raise InvalidInput(f"invalid cursor: it was made for another list ({made_for}), not {kind}")
    if made_with != filters:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(made_with.items()) if v is not None) or "none"
        raise InvalidInput(f"invalid cursor: it was made with other filters ({wanted})")
    return position


def time_position(position: dict[str, str]) -> tuple[datetime, str]:
    """A (time, id) keyset position, as the stores take it."""
    try:
        return datetime.fromisoformat(position["at"]), position["id"]
    except (KeyError, ValueError):
        raise InvalidInput("invalid cursor: pass the `next_cursor` of a previous page unchanged") from None


def keyset_page(
    rows: list[T], *, limit: int, total: int, kind: str, filters: dict[str, str | None], at: str, key: str
) -> Page[T]:
    """A page from `limit + 1` rows read after the cursor's position: the extra row, when there is
    one, says a next page exists (`at`, `key`: the time and id attributes of an item)."""
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        position = {"at": getattr(last, at).isoformat(), "id": str(getattr(last, key))}
        next_cursor = encode_cursor(kind, filters, position)
    return Page[T](items=items, next_cursor=next_cursor, total=total)


def page_by_id(
    items: list[T],
    key: Callable[[T], str],
    *,
    kind: str,
    limit: int,
    cursor: str | None,
    filters: dict[str, str | None] | None = None,
) -> Page[T]:
    """A page of an in-memory list (a live snapshot such as the workers), ordered by `key`."""
    filters = filters or {}
    ordered = sorted(items, key=key)
    if cursor is not None:
        after = decode_cursor(cursor, kind, filters).get("id", "")
        ordered = [item for item in ordered if key(item) > after]
    chunk = ordered[:limit]
    more = len(ordered) > limit
    next_cursor = encode_cursor(kind, filters, {"id": key(chunk[-1])}) if more else None
    return Page[T](items=chunk, next_cursor=next_cursor, total=len(items))
