"""`CompletionFeed` over Redis pub/sub: workers publish a job id on `DONE_CHANNEL` when they finish
it; this process keeps one subscription and wakes the waiters of that id."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from src.infrastructure.queue.keys import DONE_CHANNEL
from src.infrastructure.redis_subscription import RedisSubscription


class RedisCompletionFeed:
    def __init__(self, redis: Redis) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._subscription = RedisSubscription(redis, DONE_CHANNEL, self._announced)

    def watch(self, job_id: str) -> asyncio.Event:
        self._subscription.start()  # lazily: a process that never waits holds no subscriber connection
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        return event

    def unwatch(self, job_id: str, event: asyncio.Event) -> None:
        waiting = self._waiters.get(job_id)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self._waiters[job_id]

    async def ready(self, timeout: float) -> bool:
        if self._subscription.live.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscription.live.wait(), timeout)
        return self._subscription.live.is_set()

    async def close(self) -> None:
        await self._subscription.stop()

    def _announced(self, job_id: bytes) -> None:
        for event in self._waiters.get(job_id.decode(errors="replace"), ()):
            event.set()
