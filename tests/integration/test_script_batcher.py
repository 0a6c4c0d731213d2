"""ScriptBatcher against a real redis-server: calls made together share one round trip, each keeps
its own reply or error, and a flushed script cache (Redis restarted) is reloaded transparently."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import ArqRedis
from redis.exceptions import ResponseError

from src.infrastructure.queue import script_batcher
from src.infrastructure.queue.script_batcher import ScriptBatcher, through_cancellation

pytestmark = pytest.mark.integration

# Adds ARGV[1] to KEYS[1]; a negative amount is refused with an error of its own.
SCRIPT = """
if tonumber(ARGV[1]) < 0 then return redis.error_reply('negative amount') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


async def test_calls_made_together_share_one_round_trip(
    arq_pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(script_batcher, "DIRECT_AFTER_IDLE_S", 60.0)  # never idle after the first
    batcher = ScriptBatcher(arq_pool, SCRIPT)
    trips: list[int] = []
    real_send = batcher._send

    async def counting_send(batch: list[object]) -> list[object]:
        trips.append(len(batch))
        return await real_send(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(batcher, "_send", counting_send)
    await batcher(["warm"], [1])  # the first call: plain EVALSHA at once, loads the script
    assert set(trips) == {1}  # alone (sent twice when the script was not loaded yet)
    trips.clear()
    replies = await asyncio.gather(*(batcher([f"k{i % 3}"], [1]) for i in range(30)))
    assert trips == [30]
    assert sorted(replies)[-1] == 10 and await arq_pool.get("k0") == b"10"


async def test_after_an_idle_spell_a_call_goes_out_at_once(
    arq_pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone call is a plain EVALSHA from its caller's task (no batch task of the batcher's); one
    made while it is in flight waits for it, then goes in the next round trip."""
    monkeypatch.setattr(script_batcher, "DIRECT_AFTER_IDLE_S", 0.0)  # always idle
    batcher = ScriptBatcher(arq_pool, SCRIPT)
    batches: list[int] = []
    real_flush = batcher._flush

    async def counting_flush(batch: list[object]) -> None:
        batches.append(len(batch))
        await real_flush(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(batcher, "_flush", counting_flush)
    for expected in range(1, 6):
        assert await batcher(["d"], [1]) == expected
    assert batches == []  # each went out directly
    first = asyncio.ensure_future(batcher(["d"], [1]))
    await asyncio.sleep(0)  # the direct call is in flight
    assert await asyncio.gather(first, batcher(["d"], [5])) == [6, 11]
    assert batches == [1]  # the one made meanwhile went in a batch after it


async def test_each_call_keeps_its_own_error(arq_pool: ArqRedis) -> None:
    batcher = ScriptBatcher(arq_pool, SCRIPT)
    results = await asyncio.gather(
        batcher(["a"], [2]), batcher(["a"], [-1]), batcher(["a"], [3]), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 5
    assert isinstance(results[1], ResponseError) and "negative amount" in str(results[1])


async def test_a_flushed_script_cache_is_reloaded(arq_pool: ArqRedis) -> None:
    batcher = ScriptBatcher(arq_pool, SCRIPT)
    await batcher(["b"], [1])
    await arq_pool.script_flush()
    replies = await asyncio.gather(*(batcher(["b"], [1]) for _ in range(5)))
    assert sorted(replies) == [2, 3, 4, 5, 6]
    await arq_pool.script_flush()
    assert await batcher(["b"], [1]) == 7  # the lone path reloads too


async def test_call_now_sends_at_once_and_reloads_a_flushed_cache(arq_pool: ArqRedis) -> None:
    """The unbatched call (a worker's claim) gets its reply or its own error, and survives a Redis
    that lost its script cache (restarted) by loading the script again."""
    batcher = ScriptBatcher(arq_pool, SCRIPT)
    assert await batcher.call_now(["n"], [4]) == 4
    await arq_pool.script_flush()
    assert await batcher.call_now(["n"], [1]) == 5
    with pytest.raises(ResponseError, match="negative amount"):
        await batcher.call_now(["n"], [-1])
    assert await arq_pool.get("n") == b"5"


async def test_a_submitted_call_is_seen_through_a_cancel(arq_pool: ArqRedis) -> None:
    """A task cancelled (twice) while its submitted call is out still gets the reply, then carries
    on and ends normally; the call took effect once."""
    batcher = ScriptBatcher(arq_pool, SCRIPT)
    await batcher.call_now(["s"], [0])  # loads the script
    went_on: list[int] = []

    async def record(amount: int) -> None:
        reply = await through_cancellation(batcher.submit(["s"], [amount]))
        went_on.append(int(reply))
        await asyncio.sleep(0)  # a later await is not cancelled by the cancels taken back

    task = asyncio.create_task(record(7))
    await asyncio.sleep(0)  # the call is submitted
    task.cancel()
    task.cancel()
    await task
    assert not task.cancelled() and went_on == [7]
    assert await arq_pool.get("s") == b"7"


async def test_calls_during_a_round_trip_go_in_the_next_one(arq_pool: ArqRedis) -> None:
    """Nothing is lost or left waiting: calls arriving while a batch is in flight are sent after it."""
    batcher = ScriptBatcher(arq_pool, SCRIPT)

    async def later(delay: float) -> int:
        await asyncio.sleep(delay)
        return int(await batcher(["c"], [1]))

    replies = await asyncio.gather(*(later(i * 0.0005) for i in range(200)))
    assert sorted(replies) == list(range(1, 201))
