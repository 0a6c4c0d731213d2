"""Test hook: an append-only JSON-lines file of side effects, one line per (job, attempt, item).

Lines are written with O_APPEND in one `write`, so lines from several worker processes never
interleave; a reader counts duplicates per item.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence


class JsonlEffectsLog:
    def __init__(self, path: str) -> None:
        self._path = path

    def record_now(self, job_id: str, attempt: int, item_ids: Sequence[str]) -> None:
        self._append(
            "".join(
                json.dumps({"job": job_id, "attempt": attempt, "item": item}) + "\n" for item in item_ids
            ).encode()
        )

    def _append(self, data: bytes) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
