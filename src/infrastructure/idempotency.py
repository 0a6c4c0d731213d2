"""Idempotency keys in Redis: the first request to `SET NX` a key does the work; the others get its
stored answer. The guarantee comes from Redis, so it holds across API processes and hosts."""

from __future__ import annotations

from arq.connections import ArqRedis

from src.infrastructure.queue.keys import idempotency_key as _key

PENDING = "pending"


class RedisIdempotencyStore:
    def __init__(self, pool: ArqRedis, ttl_s: int = 24 * 3600) -> None:
        self._pool = pool
        self._ttl_s = ttl_s

    async def reserve(self, scope: str, pending: str = PENDING) -> str | None:
        """None when this caller now owns the key (`pending` stored under it); otherwise what is
        stored (another caller's pending value, or an answer)."""
        if await self._pool.set(_key(scope), pending, nx=True, ex=self._ttl_s):
            return None
        stored = await self._pool.get(_key(scope))
        return pending if stored is None else stored.decode()

    async def complete(self, scope: str, answer: str) -> None:
        await self._pool.set(_key(scope), answer, ex=self._ttl_s)

    async def release(self, scope: str) -> None:
        await self._pool.delete(_key(scope))
