"""Calls of one Lua script made while a round trip is in flight go out together in the next one.

A worker finishing a hundred short jobs at once would otherwise make a hundred round trips, each a
socket write and read (system calls are what a busy worker spends most of its time on). A lone call
goes out at once, as a plain EVALSHA, so nothing waits for a batch to fill. Each call keeps its own
reply or error; an error of the round trip itself (Redis unreachable) goes to every call in it.

After an idle spell (no call for `DIRECT_AFTER_IDLE_S`: a lone job's finish), a call goes out from
its caller's task without waiting for the end of the loop turn; calls made while it is in flight go
out together after it, as they would after a batch. Under load every call is batched. `call_now`
sends one call at once, unbatched (a worker's claim, one at a time anyway).

Calls go out on a pooled connection as EVALSHA commands written together, their replies read in
order: redis-py's Script and Pipeline objects cost more CPU per call than the round trip itself on a
busy worker, and a Script would send a SCRIPT EXISTS per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

Script = tuple[Sequence[Any], Sequence[Any]]  # one call's keys and args
Call = tuple[Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]
DIRECT_AFTER_IDLE_S = 0.002
T = TypeVar("T")


class ScriptBatcher:
    def __init__(self, redis: Redis, script: str) -> None:
        self._redis = redis
        self._script = redis.register_script(script)
        self._pending: list[Call] = []
        self._flushing = False
        self._last_call_at = float("-inf")  # loop time of the last call
        self._task: asyncio.Task[None] | None = None  # the batch being sent (a reference keeps it alive)

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        now, last = loop.time(), self._last_call_at
        self._last_call_at = now
        if not self._flushing and now - last >= DIRECT_AFTER_IDLE_S:
            self._flushing = True
            try:
                return await self.call_now(keys, args)
            finally:
                self._next()
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue(keys, args, future)
        return await future

    def submit(self, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue a call for the next batch and return its reply's future, which cancelling whoever
        awaits it cannot cancel: a caller that must see its call through (a job's finish while the
        worker stops) awaits it with `through_cancellation`, in its own task (no task of its own)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = _Unstoppable(loop=loop)
        self._last_call_at = loop.time()
        self._enqueue(keys, args, future)
        return future

    def _enqueue(self, keys: Sequence[Any], args: Sequence[Any], future: asyncio.Future[Any]) -> None:
        """Add a call to the next batch, starting that batch's task unless one is in flight."""
        self._pending.append((keys, args, future))
        if not self._flushing:
            self._flushing = True
            self._start()

    async def call_now(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """One call sent at once from the caller's task, never batched (a worker's claim: one at a
        time, and the next poll waits for it)."""
        reply = (await self._pipelined([(keys, args)]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _start(self) -> None:
        """A task that sends what is pending when it first runs, at the next loop turn: every call
        made in this turn is in that batch (a loop turn earlier than a callback that then starts it)."""
        self._task = asyncio.get_running_loop().create_task(self._flush_pending())

    async def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        await self._flush(batch)

    def _next(self) -> None:
        if self._pending:
            self._start()
        else:
            self._flushing = False

    async def _flush(self, batch: list[Call]) -> None:
        try:
            replies = await self._pipelined([(keys, args) for keys, args, _ in batch])
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

    async def _pipelined(self, batch: list[Script]) -> list[Any]:
        replies = await self._send(batch)
        if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted: its script cache is empty
            await self._redis.script_load(self._script.script)
            replies = await self._send(batch)
        return replies

    async def _send(self, batch: list[Script]) -> list[Any]:
        """The batch's EVALSHAs written at once on one pooled connection, then their replies read in
        order, each reply or error its call's: what a non-transactional pipeline does, without
        redis-py's Pipeline object, command stack and reset per batch."""
        pool = self._redis.connection_pool
        connection = await pool.get_connection()
        try:
            sha = self._script.sha
            commands = [("EVALSHA", sha, len(keys), *keys, *args) for keys, args in batch]
            await connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in batch:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:  # this call's error (its reply was read whole)
                    replies.append(exc)
        except BaseException:
            await connection.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            await pool.release(connection)
        return replies


class _Unstoppable(asyncio.Future[Any]):
    """A call's reply (`submit`): `cancel` refuses, so a task cancelled while awaiting it gets its
    CancelledError once the reply is in, and the call is never cut off half-way."""

    def cancel(self, msg: Any = None) -> bool:
        return False


async def through_cancellation(reply: asyncio.Future[T]) -> T:
    """Await a `submit`ted call's reply to its end. A cancel of the awaiting task meanwhile (a worker
    stopping as the call goes out) is taken back once the reply is in: what the task was doing is
    done, and it carries on and ends normally. A reply that is itself a cancellation (the batch
    was cancelled) is raised."""
    try:
        return await reply
    except asyncio.CancelledError:
        if not reply.done():
            raise
        task = asyncio.current_task()
        while task is not None and task.uncancel() > 0:
            pass
        return reply.result()
