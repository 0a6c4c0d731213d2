"""The peers' runner retries a sample whose job ended without its result, a few times per run and
reported (SAQ's sweep race), and fails the run past that; every lib's latency samples get the same
idle pause, passed by bench.compare to our runner and the peers' alike."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import compare, ours_runner
from bench.peers import runner


@pytest.fixture(autouse=True)
def fresh_retries() -> Iterator[None]:
    runner.RETRIED_SAMPLES.clear()
    yield
    runner.RETRIED_SAMPLES.clear()


def test_a_sample_without_its_result_is_retried_and_reported() -> None:
    results = iter([1, None, 1, 1, 1])
    durations = runner._timed_sync(lambda: next(results), warmups=1, samples=3, check=lambda: None, pause_s=0)
    assert len(durations) == 3  # every measured sample had its result
    assert runner.RETRIED_SAMPLES == ["None"]


def test_more_bad_samples_than_allowed_fail_the_run() -> None:
    with pytest.raises(RuntimeError, match="unexpected result 2"):
        runner._timed_sync(lambda: 2, warmups=0, samples=5, check=lambda: None, pause_s=0)
    assert len(runner.RETRIED_SAMPLES) == runner.MAX_RETRIED_SAMPLES


def test_each_sample_is_followed_by_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(runner.time, "sleep", lambda s: events.append(f"pause {s}"))

    def call() -> int:
        events.append("call")
        return 1

    runner._timed_sync(call, warmups=1, samples=2, check=lambda: None, pause_s=0.005)
    assert events == ["call", "pause 0.005"] * 3


def test_compare_gives_ours_and_the_peers_the_same_pause(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commands: dict[str, list[str]] = {}

    class Server:
        url = "redis://127.0.0.1:1/0"

        def stop(self) -> None:
            pass

    class Runner:
        returncode = 1

        def __init__(self, cmd: list[str], **_: Any) -> None:
            commands[cmd[cmd.index("--lib") + 1]] = cmd

        def communicate(self, timeout: float) -> tuple[str, str]:
            return "", ""

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(compare, "start_redis_server", lambda _path: Server())
    monkeypatch.setattr(subprocess, "Popen", Runner)
    for lib in ("ours", "saq"):
        compare.run_one(lib, "latency", 1, 10, tmp_path / "python", pause_ms=7.5)
    for cmd in commands.values():
        assert cmd[cmd.index("--pause-ms") + 1] == "7.5"
    assert set(commands) == {"ours", "saq"}
    # and both runners read it, with the same default as compare's
    base = ["--scenario", "latency", "--redis-url", "x", "--json", "x"]
    peer = [*base, "--lib", "saq", "--concurrency", "1"]
    for parse, argv in ((runner.parse_args, peer), (ours_runner.parse_args, base)):
        assert parse(argv).pause_ms == compare.LATENCY_PAUSE_MS
        assert parse([*argv, "--pause-ms", "7.5"]).pause_ms == 7.5
