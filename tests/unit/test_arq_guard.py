"""Guards for the arq internals we override or rely on, and for task registration."""

from __future__ import annotations

import asyncio
import inspect
import time
from importlib.metadata import version
from pathlib import Path

import arq.utils
import pytest
from arq.worker import Worker, func

from src.config import Settings
from src.jobs.registry import REGISTRY
from src.worker.arq_worker import RELIED_ON_ARQ_ATTRIBUTES, RELIED_ON_ARQ_METHODS
from src.worker.settings import ARQ_TRY_CEILING, TASK_ENFORCES_TIMEOUT, cron_jobs, task_functions


def test_arq_is_the_pinned_minor_version() -> None:
    """Our worker subclass is written against arq 0.28.x; another version must be reviewed first."""
    assert version("arq").startswith("0.28.")


def test_every_relied_on_arq_method_exists_with_its_parameters() -> None:
    """Each arq Worker method we use still exists and still takes the parameters we pass."""
    for name, params in RELIED_ON_ARQ_METHODS.items():
        method = getattr(Worker, name, None)
        assert callable(method), f"arq Worker.{name} is gone"
        signature = inspect.signature(method)
        for param in params:
            assert param in signature.parameters, f"arq Worker.{name} lost its {param!r} parameter"


async def test_every_relied_on_arq_attribute_exists_on_a_built_worker() -> None:
    """Each arq Worker attribute our poll loop reads or sets is still set by arq's `__init__`."""

    async def noop(ctx: dict[str, object]) -> None:
        return None

    worker = Worker(functions=[func(noop, name="noop")], queue_name="q", handle_signals=False)
    for name in RELIED_ON_ARQ_ATTRIBUTES:
        assert hasattr(worker, name), f"arq Worker no longer has {name!r}"
    assert worker.queue_read_limit >= worker.max_jobs  # a read can fill every free slot
    assert worker.loop is asyncio.get_running_loop()  # arq's __init__ took the running loop


def test_every_registered_job_is_a_function_or_cron_of_its_queues_worker() -> None:
    """Each registry entry is consumed by its queue's worker, under its name: ledger jobs as
    functions whose arq limits are off (the job runner enforces the entry's), crons as crons."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    registered = []
    for queue in REGISTRY.queues:
        functions = task_functions(settings, queue)
        crons = cron_jobs(settings, queue)
        registered += [f.name for f in functions] + [c.name for c in crons]
        # the job runner enforces each job's timeout (tests/unit/test_job_runner.py): arq's is off
        assert TASK_ENFORCES_TIMEOUT == 0
        assert all(f.max_tries == ARQ_TRY_CEILING and f.timeout_s == TASK_ENFORCES_TIMEOUT for f in functions)
    assert sorted(registered) == sorted(REGISTRY.names)
    assert REGISTRY.queues == ("normalization", "maintenance")


def test_api_and_worker_never_import_each_other() -> None:
    """The dependency direction: api and worker share job names only through the domain."""
    root = Path(__file__).resolve().parents[2] / "src"
    for package, forbidden in (("api", "src.worker"), ("worker", "src.api")):
        for path in (root / package).rglob("*.py"):
            assert forbidden not in path.read_text(), f"{path} imports {forbidden}"
    for path in (root / "domain").rglob("*.py"):
        text = path.read_text()
        for layer in ("src.application", "src.infrastructure", "src.api", "src.worker", "src.jobs"):
            assert layer not in text, f"{path} (domain) imports {layer}"
    # the application names job types and uses the queue through its port (src/infrastructure/queue)
    for path in (root / "application").rglob("*.py"):
        text = path.read_text()
        for layer in ("src.jobs", "src.api", "src.worker", "src.infrastructure", "arq", "redis"):
            assert f"from {layer}" not in text and f"import {layer}" not in text, f"{path} imports {layer}"


async def test_arq_poll_does_not_sleep_after_an_iteration_that_used_up_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our `_poll_iteration` waits for wake-ups itself for up to one poll delay; that only works if
    arq's `poll` sleeps the step *minus* the iteration's duration (so nothing after a full wait)."""
    requested: list[float] = []

    async def record_sleep(delay: float) -> None:
        requested.append(delay)

    monkeypatch.setattr(arq.utils.asyncio, "sleep", record_sleep)
    step = 0.02
    iterations = 0
    async for _ in arq.utils.poll(step):
        iterations += 1
        if iterations == 1:
            time.sleep(step * 1.5)  # an iteration longer than the step
        if iterations == 3:
            break
    assert requested[0] == 0
    assert 0 < requested[1] <= step
