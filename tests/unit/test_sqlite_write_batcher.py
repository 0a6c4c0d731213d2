"""WriteBatcher on a real SQLite connection: writes of one loop turn share a transaction; after an idle
spell a write goes out at once in its submitter's task (and that task's next writes of the same
turn); a write refused inline (the store's lock is held) goes to the store's thread; each write
keeps its own result or error."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from src.infrastructure import sqlite_write_batcher
from src.infrastructure.sqlite_write_batcher import Outcomes, RunAll, WriteBatcher


class Store:
    """The repository's side of the batcher: `run_now` inline, `run_in_transaction` "threaded"."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        self.batches: list[tuple[str, int]] = []  # (path, writes)
        self.events: list[str] = []
        self.busy = False  # run_now refuses, as when another connection holds the write lock

    def run_now(self, run_all: RunAll, writes: int) -> Outcomes | None:
        if self.busy:
            return None
        self.batches.append(("inline", writes))
        self.events.append("write")
        return run_all(self.conn)

    async def run_in_transaction(self, run_all: RunAll, writes: int) -> Outcomes:
        await asyncio.sleep(0)  # the thread hop
        self.batches.append(("thread", writes))
        self.events.append("write")
        return run_all(self.conn)


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store()
    yield s
    s.conn.close()


def insert(k: str, v: int) -> Any:
    return lambda conn: conn.execute("INSERT INTO t VALUES (?, ?)", (k, v)).rowcount


def value(store: Store, k: str) -> int | None:
    row = store.conn.execute("SELECT v FROM t WHERE k = ?", (k,)).fetchone()
    return None if row is None else int(row[0])


async def idle() -> None:
    """Let the store be idle for longer than the batcher's threshold."""
    await asyncio.sleep(3 * sqlite_write_batcher.DIRECT_AFTER_IDLE_S)


async def test_writes_of_one_turn_share_a_batch(store: Store) -> None:
    batcher = WriteBatcher(store.run_in_transaction, store.run_now)
    await idle()
    results = await asyncio.gather(*(batcher.submit(insert(f"k{i}", i)) for i in range(20)))
    assert results == [1] * 20
    # after the idle spell the first goes at once, the other tasks' writes of that turn together
    assert store.batches == [("inline", 1), ("inline", 19)]
    results = await asyncio.gather(*(batcher.submit(insert(f"m{i}", i)) for i in range(20)))
    assert store.batches[-1] == ("inline", 20)  # writes close together: all batched
    assert value(store, "k7") == 7 and value(store, "m19") == 19


async def test_after_an_idle_spell_a_write_goes_out_at_once(store: Store) -> None:
    batcher = WriteBatcher(store.run_in_transaction, store.run_now)
    await idle()
    loop = asyncio.get_running_loop()
    loop.call_soon(store.events.append, "turn")
    assert await batcher.submit(insert("a", 1)) == 1  # a lone job's claim
    assert await batcher.submit(insert("b", 2)) == 1  # the same task again (its finish)
    # written and answered before a callback scheduled ahead of them ran: no loop turn in between
    assert store.events == ["write", "write"]
    await asyncio.sleep(0)
    assert store.events == ["write", "write", "turn"]
    assert store.batches == [("inline", 1), ("inline", 1)]
    assert value(store, "a") == 1 and value(store, "b") == 2


async def test_writes_close_together_wait_for_the_end_of_the_turn(store: Store) -> None:
    batcher = WriteBatcher(store.run_in_transaction, store.run_now)
    await idle()
    await batcher.submit(insert("a", 1))
    await asyncio.sleep(0)  # a new loop turn, well within the idle threshold
    loop = asyncio.get_running_loop()
    loop.call_soon(store.events.append, "turn")
    assert await batcher.submit(insert("b", 2)) == 1
    assert store.events == ["write", "turn", "write"]  # batched: written after the turn's callbacks


async def test_a_write_refused_inline_goes_to_the_thread(store: Store) -> None:
    batcher = WriteBatcher(store.run_in_transaction, store.run_now)
    store.busy = True
    await idle()
    assert await batcher.submit(insert("b", 2)) == 1
    assert store.batches == [("thread", 1)]
    assert value(store, "b") == 2


async def test_each_write_keeps_its_own_error(store: Store) -> None:
    batcher = WriteBatcher(store.run_in_transaction, store.run_now)

    def failing(conn: sqlite3.Connection) -> int:
        raise ValueError("not this one")

    await idle()
    with pytest.raises(ValueError, match="not this one"):
        await batcher.submit(failing)  # the direct path
    results = await asyncio.gather(
        batcher.submit(insert("c", 3)), batcher.submit(failing), batcher.submit(insert("d", 4)),
        return_exceptions=True,
    )  # fmt: skip
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], ValueError)
    assert value(store, "c") == 3 and value(store, "d") == 4
