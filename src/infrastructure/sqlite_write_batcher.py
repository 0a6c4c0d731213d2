"""Group the small writes of concurrent job runs into one SQLite transaction.

With 100 jobs running, each claims, heartbeats and finishes in the ledger: one transaction and one
thread hop apiece would make the store the bottleneck. Writes submitted while a batch is being
written wait and go out together in the next one: one thread hop, one commit. Each write keeps its
own result or error; an error of the transaction itself (the store is unavailable) goes to all.
Each write is one SQL statement, so a batch of one needs no transaction around it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], Any]
# (the batch's writes as one function, how many writes it holds) → their outcomes
RunInTransaction = Callable[
    [Callable[[sqlite3.Connection], list[tuple[bool, Any]]], int], Awaitable[list[tuple[bool, Any]]]
]


class WriteBatcher:
    def __init__(self, run_in_transaction: RunInTransaction) -> None:
        self._run = run_in_transaction
        self._pending: list[tuple[Write, asyncio.Future[Any]]] = []
        self._flushing = False

    async def submit(self, write: Callable[[sqlite3.Connection], T]) -> T:
        """Run `write` (one statement: the batcher owns the transaction) in the next batch."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._start)
        result: T = await future
        return result

    def _start(self) -> None:
        batch, self._pending = self._pending, []
        asyncio.ensure_future(self._flush(batch))

    async def _flush(self, batch: list[tuple[Write, asyncio.Future[Any]]]) -> None:
        def run_all(conn: sqlite3.Connection) -> list[tuple[bool, Any]]:
            outcomes: list[tuple[bool, Any]] = []
            for write, _ in batch:
                try:
                    outcomes.append((True, write(conn)))
                except sqlite3.Error:
                    raise  # the transaction itself is in trouble: fail the whole batch
                except Exception as exc:  # noqa: BLE001 - one write's own error belongs to its caller
                    outcomes.append((False, exc))
            return outcomes

        try:
            outcomes = await self._run(run_all, len(batch))
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (ok, value), (_, future) in zip(outcomes, batch, strict=True):
                if future.done():
                    continue  # its caller was cancelled; the write still happened, as with a plain call
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        finally:
            if self._pending:
                asyncio.get_running_loop().call_soon(self._start)
            else:
                self._flushing = False
