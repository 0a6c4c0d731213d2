"""The worker's event loop (`WORKER_EVENT_LOOP`): uvloop by default, the standard loop on request or
where uvloop cannot be imported."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from src.config import Settings
from src.worker.event_loop import new_event_loop


def test_default_setting_is_uvloop() -> None:
    assert Settings(_env_file=None).worker_event_loop == "uvloop"  # type: ignore[call-arg]


def test_uvloop_kind_gives_a_uvloop_loop_that_runs_coroutines() -> None:
    loop = new_event_loop("uvloop")
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(asyncio.sleep(0, result=42)) == 42
    finally:
        loop.close()


def test_asyncio_kind_gives_the_standard_loop() -> None:
    loop = new_event_loop("asyncio")
    try:
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_falls_back_to_the_standard_loop_when_uvloop_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    loop = new_event_loop("uvloop")
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_an_unknown_kind_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="worker_event_loop"):
        Settings(_env_file=None, worker_event_loop="trio")  # type: ignore[call-arg,arg-type]
