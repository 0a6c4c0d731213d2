"""Idempotency keys: a request repeated with the same key gets the first one's answer, once.

The first request with a key reserves it (across API processes: the store is shared), does the
work and stores its answer with a fingerprint of its payload. A repeat with the same payload gets
that answer; one with a different payload is refused (422: a key names one request, not a slot);
one that arrives while the first is still running waits up to `wait_s`, then gets 409 with a
`Retry-After`. A first request that fails releases the key, so the client may retry with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable

from src.application.ports import IdempotencyStore
from src.errors import Conflict, InvalidInput

POLL_S = 0.05
RETRY_AFTER_S = 1


def fingerprint(payload: bytes) -> str:
    """What identifies a request's payload (a digest: nothing of the payload is kept)."""
    return hashlib.sha256(payload).hexdigest()


async def once(
    store: IdempotencyStore,
    scope: str,
    payload: bytes,
    work: Callable[[], Awaitable[str]],
    *,
    wait_s: float,
) -> str:
    """`work()`'s answer (JSON text) for the first request of `scope`, that same answer for every
    repeat of it; see the module docstring for conflicts."""
    mine = fingerprint(payload)
    deadline = time.monotonic() + wait_s
    while True:
        stored = await store.reserve(scope, json.dumps({"fingerprint": mine}))
        if stored is None:
            break
        entry = _entry(stored)
        if entry.get("fingerprint", mine) != mine:
            raise InvalidInput(
                "this Idempotency-Key was already used for a request with a different payload: "
                "use a new key for a new request",
                field="Idempotency-Key",
            )
        answer = entry.get("answer")
        if isinstance(answer, str):
            return answer
        if time.monotonic() >= deadline:
            raise Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        await asyncio.sleep(POLL_S)
    try:
        answer = await work()
    except BaseException:
        await store.release(scope)  # nothing was done under it: the client may retry with the key
        raise
    await store.complete(scope, json.dumps({"fingerprint": mine, "answer": answer}))
    return answer


def _entry(stored: str) -> dict[str, object]:
    """A stored entry; one written by a release before fingerprints (a bare answer, or `pending`)
    is read as matching any payload."""
    if stored == "pending":
        return {}
    try:
        entry = json.loads(stored)
    except ValueError:
        return {}
    if isinstance(entry, dict) and "fingerprint" in entry:
        return entry
    return {"answer": stored}  # a bare answer of an earlier release
