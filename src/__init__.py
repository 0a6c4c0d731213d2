"""Clinic appointment normalization: the API, the workers and their shared code.

The one piece of default wiring lives here, in the package every `src.*` import runs first:
`TaskService()` built without a queue (the deployment guide's connection check,
`asyncio.run(TaskService().get_pool())`) uses the Redis queue made from the settings, built on its
first use. The application layer declares the hook; only this root package knows the
infrastructure that fills it.
"""

from src.application.ports import JobQueue
from src.application.services import task_service as _task_service


def _redis_queue_from_settings() -> JobQueue:
    from src.infrastructure.queue import RedisJobQueue  # on use: importing `src` stays cheap

    return RedisJobQueue()  # its pool is made from get_settings() on first use


_task_service.default_queue_factory = _redis_queue_from_settings
