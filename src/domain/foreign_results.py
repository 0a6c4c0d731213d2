"""What can be known of a job that a consumer outside the fleet took (pure, no I/O).

Such a consumer (a plain arq worker pointed at our queue, say) leaves its own result under the
job's id, in its own serializer: JSON, or pickle. A pickle is never loaded here (unpickling runs
code of the writer's choosing); `pickletools` walks its opcodes and keeps the plain values, which
for arq's result dict are its keys and values in order. What comes back is short and JSON-able.
"""

from __future__ import annotations

import json
import pickletools
from datetime import UTC, datetime
from typing import Any

MAX_TEXT = 200  # characters kept of any one value
MAX_VALUES = 24  # plain values kept of a pickle
# arq's result fields (`arq.jobs.serialize_result`): what they mean to an operator
ARQ_RESULT_FIELDS = {
    "f": "function",
    "s": "success",
    "r": "result",
    "st": "started_ms",
    "ft": "finished_ms",
    "q": "queue",
    "t": "tries",
}


def describe_foreign_result(raw: bytes) -> dict[str, Any]:
    """A short, JSON-able account of a result some other consumer stored: its format, arq's fields
    when they can be read (function, success, result, start and finish times), else the values."""
    size = len(raw)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        data = None
    if isinstance(data, dict):
        return {"format": "json", "bytes": size, **_arq_fields(data)}
    if raw[:1] == b"\x80":  # pickle protocol 2 and later start with PROTO
        values = _pickle_values(raw)
        if values is not None:
            pairs = _as_arq_pairs(values)
            described = _arq_fields(pairs) if pairs else {"values": [_short(v) for v in values[:MAX_VALUES]]}
            return {"format": "pickle", "bytes": size, **described}
    return {"format": "unknown", "bytes": size, "head": _short(raw[:64].decode("latin-1"))}


def _arq_fields(data: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, name in ARQ_RESULT_FIELDS.items():
        if key in data:
            value = data[key]
            found[name] = value if isinstance(value, bool | int | float) or value is None else _short(value)
    for name in ("started_ms", "finished_ms"):
        value = found.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            found[name.replace("_ms", "_at")] = datetime.fromtimestamp(value / 1000, UTC).isoformat()
    return found or {"keys": sorted(str(k) for k in data)[:MAX_VALUES]}


class _Global(str):
    """The name of a class or function a pickle would import (never imported here)."""


_NOTHING = object()  # the last opcode pushed something that is not a plain value


def _pickle_values(raw: bytes) -> list[Any] | None:
    """The plain values a pickle pushes, in order (strings, numbers, booleans, None, and the names of
    the classes it would import), memo references resolved; None when it is not a readable pickle."""
    values: list[Any] = []
    memo: dict[int, Any] = {}
    last: Any = _NOTHING
    try:
        for opcode, arg, _ in pickletools.genops(raw):
            name = opcode.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else int(str(arg))] = last
                continue
            last = _NOTHING
            if name in ("GET", "BINGET", "LONG_BINGET"):
                last = memo.get(int(str(arg)), _NOTHING)
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                last = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name]
            elif name == "GLOBAL" and arg:
                last = _Global(str(arg).replace(" ", "."))
            elif name == "STACK_GLOBAL" and len(values) >= 2:  # module and name were pushed
                qualname, module = values.pop(), values.pop()
                last = _Global(f"{module}.{qualname}")
            elif isinstance(arg, str | int | float) and name not in ("PROTO", "FRAME"):
                last = arg
            if last is not _NOTHING:
                values.append(last)
            if len(values) >= 4 * MAX_VALUES:
                break
    except (ValueError, TypeError, UnicodeDecodeError):  # pickletools' own errors: not a pickle
        return None
    return values


def _as_arq_pairs(values: list[Any]) -> dict[str, Any]:
    """arq's result dict pushes each key (a short string) then its value: pair them up."""
    pairs: dict[str, Any] = {}
    for index, value in enumerate(values[:-1]):
        if isinstance(value, str) and value in ARQ_RESULT_FIELDS and value not in pairs:
            found = values[index + 1]
            after = values[index + 2] if index + 2 < len(values) else None
            if isinstance(found, _Global):  # an exception: its class, then its message
                found = f"{found}({after!r})" if isinstance(after, str) else str(found)
            pairs[value] = found
    return pairs


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
