"""The tests' two hooks into a worker, which the product does not have (nothing in src/ imports this):

- a delay on every read of work (a batch page, an appointment), so a kill, a freeze or a cancel
  lands while a job is mid-flight;
- an effects log: one JSON line per (job, attempt, item) the store committed, which is how fault
  tests count side effects written twice.

In-process tests call `install(monkeypatch, ...)`; worker processes run `python -m tests.worker_hooks
[workers.py's arguments]`, which reads TEST_ITEM_DELAY_MS and TEST_EFFECTS_PATH and runs workers.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from src.application.ports import Repository
from src.config import Settings
from src.domain.appointments import Appointment, NormalizationResult
from src.worker import hooks

if TYPE_CHECKING:  # a worker process started with the hooks does not import pytest
    import pytest


class JsonlEffectsLog:
    """Lines are written with O_APPEND in one `write`, so lines from several worker processes never
    interleave; a reader counts duplicates per item."""

    def __init__(self, path: str) -> None:
        self._path = path

    def record_now(self, job_id: str, attempt: int, item_ids: Sequence[str]) -> None:
        data = "".join(json.dumps({"job": job_id, "attempt": attempt, "item": i}) + "\n" for i in item_ids)
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)


class HookedRepository:
    """The worker's repository, with the delay and the effects log; everything else passes through."""

    def __init__(self, inner: Repository, *, delay_s: float, effects: JsonlEffectsLog | None) -> None:
        self._inner = inner
        self._delay_s = delay_s
        self._effects = effects

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def get_appointment(self, appointment_id: str) -> Appointment | None:
        found = await self._inner.get_appointment(appointment_id)
        if found is not None and self._delay_s:
            await asyncio.sleep(self._delay_s)
        return found

    async def list_batch_appointments(
        self, batch_id: str, *, seq_from: int, seq_to: int, limit: int
    ) -> list[Appointment]:
        page = await self._inner.list_batch_appointments(
            batch_id, seq_from=seq_from, seq_to=seq_to, limit=limit
        )
        if page and self._delay_s:
            await asyncio.sleep(self._delay_s)  # the page's items are normalized together: one delay
        return page

    async def save_normalizations(
        self, results: Sequence[NormalizationResult], *, job_id: str, attempt: int
    ) -> int:
        save = asyncio.ensure_future(self._inner.save_normalizations(results, job_id=job_id, attempt=attempt))
        effects = self._effects
        if effects is not None:
            ids = [r.appointment_id for r in results]

            # recorded when the write completes, even if the run awaiting it was cancelled meanwhile
            def record(done: asyncio.Future[int]) -> None:
                if not done.cancelled() and done.exception() is None and done.result() == len(ids):
                    effects.record_now(job_id, attempt, ids)

            save.add_done_callback(record)
        return await save


def hooked(
    build: Callable[[Settings], Repository], *, delay_s: float, effects_path: str | None
) -> Callable[[Settings], Repository]:
    effects = JsonlEffectsLog(effects_path) if effects_path else None

    def build_repository(settings: Settings) -> Repository:
        return HookedRepository(build(settings), delay_s=delay_s, effects=effects)  # type: ignore[return-value]

    return build_repository


def install(
    monkeypatch: pytest.MonkeyPatch, *, item_delay_ms: int = 0, effects_path: str | None = None
) -> None:
    """Workers built in this test get the hooks (their start-up hook builds the repository)."""
    build = hooked(hooks.build_repository, delay_s=item_delay_ms / 1000, effects_path=effects_path)
    monkeypatch.setattr(hooks, "build_repository", build)


def main(argv: list[str]) -> int:
    delay_ms = int(os.environ.get("TEST_ITEM_DELAY_MS") or 0)
    effects_path = os.environ.get("TEST_EFFECTS_PATH") or None
    hooks.build_repository = hooked(
        hooks.build_repository, delay_s=delay_ms / 1000, effects_path=effects_path
    )
    import workers

    return workers.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
