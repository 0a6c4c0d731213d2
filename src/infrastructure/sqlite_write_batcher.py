"""Group the small writes of concurrent job runs into one SQLite transaction.

With 100 jobs running, each claims, heartbeats and finishes in the ledger: one transaction and one
thread hop apiece would make the store the bottleneck. Writes submitted while a batch is being
written wait and go out together in the next one: one thread hop, one commit. Each write keeps its
own result or error; an error of the transaction itself (the store is unavailable) goes to all.
Each write is one SQL statement, so a batch of one needs no transaction around it.

A batch is first offered to `run_now`, which writes it right there on the event loop's thread when it
can (a short batch, no other connection holding the lock): no task and no loop turn between the
submit and the commit, which is most of a lone job's ledger time. Otherwise it runs through
`run_in_transaction`, awaited in a task of its own.

When the store has been idle for a while (`DIRECT_AFTER_IDLE_S`: a lone job's claim), a write goes out
at once in its submitter's task, without waiting for the end of the loop turn; so does a later write
of that task in the same turn (the lone job's finish). Writes of other tasks in that turn go out
together after it, and under load (writes closer together than that) every write is batched.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
Outcomes = list[tuple[bool, Any]]
RunAll = Callable[[sqlite3.Connection], Outcomes]
# (the batch's writes as one function, how many writes it holds) → their outcomes
RunInTransaction = Callable[[RunAll, int], Awaitable[Outcomes]]
# the same, synchronously, or None when it cannot run here and now
RunNow = Callable[[RunAll, int], Outcomes | None]
Batch = list[tuple[Write, "asyncio.Future[Any]"]]
DIRECT_AFTER_IDLE_S = 0.002


class WriteBatcher:
    def __init__(self, run_in_transaction: RunInTransaction, run_now: RunNow) -> None:
        self._run = run_in_transaction
        self._run_now = run_now
        self._pending: Batch = []
        self._flushing = False
        self._last_write_at = float("-inf")  # loop time of the last write submitted
        self._direct_task: asyncio.Task[Any] | None = None  # the task writing directly this turn

    async def submit(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run `write` (one statement: the batcher owns the transaction) in the next batch, or at
        once when writes come one at a time (see the module docstring)."""
        loop = asyncio.get_running_loop()
        now, last = loop.time(), self._last_write_at
        self._last_write_at = now
        if not self._flushing and self._may_write_directly(now - last >= DIRECT_AFTER_IDLE_S):
            outcomes = self._run_now(_run_all([write]), 1)  # a store error propagates as is
            if outcomes is not None:
                ok, value = outcomes[0]
                if not ok:
                    raise value
                return cast(T, value)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((write, future))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._start)
        result: T = await future
        return result

    def _may_write_directly(self, idle: bool) -> bool:
        """After an idle spell, the first task to write in this turn; then that task only."""
        task = asyncio.current_task()
        if self._direct_task is None:
            if not idle:
                return False
            self._direct_task = task
            asyncio.get_running_loop().call_soon(self._end_turn)
        return self._direct_task is task

    def _end_turn(self) -> None:
        self._direct_task = None

    def _start(self) -> None:
        batch, self._pending = self._pending, []
        try:
            outcomes = self._run_now(_run_all([w for w, _ in batch]), len(batch))
        except BaseException as exc:  # noqa: BLE001 - the store's error belongs to every write
            _fail(batch, exc)
        else:
            if outcomes is None:  # it must wait for the store's thread
                asyncio.ensure_future(self._flush(batch))
                return
            _settle(batch, outcomes)
        self._next()

    async def _flush(self, batch: Batch) -> None:
        try:
            outcomes = await self._run(_run_all([w for w, _ in batch]), len(batch))
        except BaseException as exc:  # noqa: BLE001 - the store's error belongs to every write
            _fail(batch, exc)
        else:
            _settle(batch, outcomes)
        finally:
            self._next()

    def _next(self) -> None:
        if self._pending:
            asyncio.get_running_loop().call_soon(self._start)
        else:
            self._flushing = False


def _run_all(writes: list[Write]) -> RunAll:
    def run_all(conn: sqlite3.Connection) -> Outcomes:
        outcomes: Outcomes = []
        for write in writes:
            try:
                outcomes.append((True, write(conn)))
            except sqlite3.Error:
                raise  # the transaction itself is in trouble: fail the whole batch
            except Exception as exc:  # noqa: BLE001 - one write's own error belongs to its caller
                outcomes.append((False, exc))
        return outcomes

    return run_all


def _settle(batch: Batch, outcomes: Outcomes) -> None:
    for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
        if future.done():
            continue  # its caller was cancelled; the write still happened, as with a plain call
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _fail(batch: Batch, exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
