"""Test hook: an append-only JSON-lines file of side effects, one line per (job, attempt, item).

Lines are written with O_APPEND in one `write`, so lines from several worker processes never
interleave; a reader counts duplicates per item.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence


class JsonlEffectsLog:
    def __init__(self, path: str) -> None:
        self._path = path

    async def record(self, job_id: str, attempt: int, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        data = "".join(
            json.dumps({"job": job_id, "attempt": attempt, "item": item}) + "\n" for item in item_ids
        ).encode()
        await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
