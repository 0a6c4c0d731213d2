"""The queue protocol in Redis (keys, scripts, payload format), behind the `JobQueue` port."""

from src.infrastructure.queue.redis_queue import RedisJobQueue

__all__ = ["RedisJobQueue"]
