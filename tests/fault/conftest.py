"""Fault tests: one `Cluster` (redis-server, API, workers as real processes) per test, always killed
at teardown; on failure the tail of every process's log is printed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.fault.harness import Cluster

FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    report = yield
    if getattr(report, "failed", False):
        item.stash[FAILED] = True
    return report


@pytest.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    cluster = await Cluster.start(tmp_path)
    try:
        yield cluster
    finally:
        if request.node.stash.get(FAILED, False):
            print(f"\n===== process logs (in {tmp_path}) =====\n{cluster.tails()}")
        await cluster.close()
