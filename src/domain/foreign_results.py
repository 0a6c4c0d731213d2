"""What can be known of a job that a consumer outside the fleet took (pure, no I/O).

Such a consumer (a plain arq worker pointed at our queue, say) leaves its own result under the
job's id, in its own serializer: JSON, or pickle. A pickle is never loaded here (unpickling runs
code of the writer's choosing); `pickletools` walks its opcodes and keeps the plain values, which
for arq's result dict are its keys and values in order. The input is a stranger's: whatever it
holds, the account is short, JSON-able (and BSON-able), and made in bounded time and memory, so
one odd result can never stop the reconciler that reads it.
"""

from __future__ import annotations

import json
import math
import pickletools
from datetime import UTC, datetime
from typing import Any

MAX_BYTES = 65536  # the head of a result that is read (the reader passes no more; a cut pickle still tells)
MAX_TEXT = 200  # characters kept of any one value
MAX_VALUES = 24  # plain values kept of a pickle
MAX_OPCODES = 10_000  # opcodes walked of a pickle
MAX_MEMO = 1_000  # memo slots remembered of a pickle
SAFE_INT = 2**53  # beyond it an int is kept as text (BSON holds 64 bits, JSON readers often 53)
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


def describe_foreign_result(raw: bytes, size: int | None = None) -> dict[str, Any]:
    """A short account of a result some other consumer stored: its format, arq's fields when they
    can be read (function, success, result, start and finish times), else the values. `raw` may be
    the head of a longer value of `size` bytes. Never raises."""
    size = len(raw) if size is None else size
    head = raw[:MAX_BYTES]
    try:
        return {"bytes": size, **_describe(head)}
    except Exception as exc:  # noqa: BLE001 - a stranger's bytes: say it could not be read, never fail
        return {"bytes": size, "format": "unreadable", "error": type(exc).__name__, "head": _head(head)}


def _describe(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        return {"format": "json", **_arq_fields(data)}
    if raw[:1] == b"\x80":  # pickle protocol 2 and later start with PROTO
        values = _pickle_values(raw)
        if values:
            pairs = _as_arq_pairs(values)
            described = _arq_fields(pairs) if pairs else {"values": [_short(v) for v in values[:MAX_VALUES]]}
            return {"format": "pickle", **described}
    return {"format": "unknown", "head": _head(raw)}


def _arq_fields(data: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, name in ARQ_RESULT_FIELDS.items():
        if key in data:
            found[name] = _plain(data[key])
    for name in ("started_ms", "finished_ms"):
        value = found.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            when = _instant(value)
            if when is not None:
                found[name.replace("_ms", "_at")] = when
    return found or {"keys": sorted(_short(k) for k in data)[:MAX_VALUES]}


def _instant(ms: float) -> str | None:
    """Milliseconds since the epoch as ISO text, or None when they are not a plausible instant."""
    if not math.isfinite(ms) or not 0 < ms < 253402300800000:  # before year 10000
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _plain(value: Any) -> Any:
    """A JSON- and BSON-safe stand-in for one value: small numbers, booleans and None as they are,
    everything else as short text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and -SAFE_INT < value < SAFE_INT:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _short(value)


class _Global(str):
    """The name of a class or function a pickle would import (never imported here)."""


_NOTHING = object()  # the last opcode pushed something that is not a plain value


def _pickle_values(raw: bytes) -> list[Any]:
    """The plain values a pickle pushes, in order (strings, numbers, booleans, None, and the names of
    the classes it would import), memo references resolved; what was read before a malformed or cut
    opcode, or the opcode or memo limit, is kept."""
    values: list[Any] = []
    memo: dict[int, Any] = {}
    last: Any = _NOTHING
    try:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(raw)):
            if count >= MAX_OPCODES or len(values) >= 4 * MAX_VALUES:
                break
            name = opcode.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if len(memo) < MAX_MEMO:
                    memo[len(memo) if name == "MEMOIZE" else int(str(arg))] = last
                continue
            last = _NOTHING
            if name in ("GET", "BINGET", "LONG_BINGET"):
                last = memo.get(int(str(arg)), _NOTHING)
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                last = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name]
            elif name == "GLOBAL" and arg:
                last = _Global(str(arg).replace(" ", ".")[:MAX_TEXT])
            elif name == "STACK_GLOBAL" and len(values) >= 2:  # module and name were pushed
                qualname, module = values.pop(), values.pop()
                last = _Global(f"{module}.{qualname}"[:MAX_TEXT])
            elif isinstance(arg, str | int | float) and name not in ("PROTO", "FRAME"):
                last = arg
            if last is not _NOTHING:
                values.append(last)
    except Exception:  # noqa: BLE001, S110 - a malformed or cut pickle: keep what was read before it
        pass
    return values


def _as_arq_pairs(values: list[Any]) -> dict[str, Any]:
    """arq's result dict pushes each key (a short string) then its value: pair them up."""
    pairs: dict[str, Any] = {}
    for index, value in enumerate(values[:-1]):
        if isinstance(value, str) and value in ARQ_RESULT_FIELDS and value not in pairs:
            found = values[index + 1]
            after = values[index + 2] if index + 2 < len(values) else None
            if isinstance(found, _Global):  # an exception: its class, then its message
                found = f"{found}({_short(after)!r})" if isinstance(after, str) else str(found)
            pairs[value] = found
    return pairs


def _head(raw: bytes) -> str:
    return _short(raw[:64].decode("latin-1"))


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (ValueError, RecursionError):
            text = repr(type(value))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
