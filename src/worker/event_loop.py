"""The worker process's event loop: uvloop by default (`WORKER_EVENT_LOOP`).

uvloop (libuv underneath) runs the same asyncio code with less CPU per socket read, callback and
timer; a worker spends most of its CPU there (bench/compare.py: no-op jobs/s went up by about a
quarter). `asyncio` keeps the standard loop, and is what runs where uvloop is not installed (it
does not build on Windows).
"""

from __future__ import annotations

import asyncio

import structlog

from src.config import EventLoopKind

log = structlog.get_logger(__name__)


def new_event_loop(kind: EventLoopKind) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: running on the standard asyncio loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
