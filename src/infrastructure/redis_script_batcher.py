"""Calls of one Lua script made while a round trip is in flight go out together in the next one.

A worker finishing a hundred short jobs at once would otherwise make a hundred round trips, each a
socket write and read (system calls are what a busy worker spends most of its time on). A lone call
goes out at once, as a plain EVALSHA, so nothing waits for a batch to fill. Each call keeps its own
reply or error; an error of the round trip itself (Redis unreachable) goes to every call in it.

After an idle spell (no call for `DIRECT_AFTER_IDLE_S`: a lone job's finish), a call goes out from
its caller's task without waiting for the end of the loop turn; calls made while it is in flight go
out together after it, as they would after a batch. Under load every call is batched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]
DIRECT_AFTER_IDLE_S = 0.002


class ScriptBatcher:
    def __init__(self, redis: Redis, script: str) -> None:
        self._redis = redis
        self._script = redis.register_script(script)
        self._pending: list[Call] = []
        self._flushing = False
        self._last_call_at = float("-inf")  # loop time of the last call

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        now, last = loop.time(), self._last_call_at
        self._last_call_at = now
        if not self._flushing and now - last >= DIRECT_AFTER_IDLE_S:
            self._flushing = True
            try:
                return await self._script(keys=list(keys), args=list(args))
            finally:
                self._next()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._start)
        return await future

    def _start(self) -> None:
        batch, self._pending = self._pending, []
        asyncio.ensure_future(self._flush(batch))

    def _next(self) -> None:
        if self._pending:
            asyncio.get_running_loop().call_soon(self._start)
        else:
            self._flushing = False

    async def _flush(self, batch: list[Call]) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                replies: list[Any] = [await self._script(keys=list(keys), args=list(args))]
            else:
                replies = await self._pipelined(batch)
        except BaseException as exc:  # noqa: BLE001 - the round trip failed: every call in it fails
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        finally:
            self._next()

    async def _pipelined(self, batch: list[Call]) -> list[Any]:
        replies = await self._send(batch)
        if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted: its script cache is empty
            await self._redis.script_load(self._script.script)
            replies = await self._send(batch)
        return replies

    async def _send(self, batch: list[Call]) -> list[Any]:
        # Plain EVALSHA in the pipeline: redis-py's Script objects would add a SCRIPT EXISTS per batch.
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
