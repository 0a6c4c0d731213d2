"""One pub/sub subscription kept alive in the background: the process's single subscriber
connection for a channel, re-established with backoff when Redis drops it.

Messages are hints that something happened (a job was enqueued, a job finished), never the only
way to learn it: whoever listens also polls, more slowly, so a message lost while the connection
was down costs latency, not correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 5.0


class RedisSubscription:
    def __init__(self, redis: Redis, channel: str, on_message: Callable[[bytes], None]) -> None:
        self._redis = redis
        self._channel = channel
        self._on_message = on_message
        self._task: asyncio.Task[None] | None = None
        self.live = asyncio.Event()  # set while subscribed: messages published from now on arrive

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"subscription:{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.live.clear()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":  # Redis confirmed: nothing published is missed
                        self.live.set()
                        backoff = 0.1
                    elif message.get("type") == "message":
                        data = message["data"]
                        self._on_message(data if isinstance(data, bytes) else str(data).encode())
            except (RedisError, OSError) as exc:
                self.live.clear()
                log.warning(
                    "subscription lost: polling only until it is back",
                    channel=self._channel,
                    error=type(exc).__name__,
                    retry_in_s=backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            finally:
                self.live.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
