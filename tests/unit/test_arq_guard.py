"""Guards for the arq members we use (its task API only), and for task registration."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from arq import Retry
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.cron import cron

from src.config import Settings
from src.infrastructure.queue import keys
from src.jobs.registry import REGISTRY
from src.worker.app_worker import ARQ_MEMBERS_USED
from src.worker.settings import ARQ_TRY_CEILING, TASK_ENFORCES_TIMEOUT, cron_jobs, task_functions


def test_arq_is_the_pinned_minor_version() -> None:
    """The members we use are checked against arq 0.28.x; another version must be reviewed first."""
    assert version("arq").startswith("0.28.")


def _member(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_arq_member_we_use_exists_with_its_fields() -> None:
    """Each arq name in `ARQ_MEMBERS_USED` still exists, with the fields and arguments we use."""
    for dotted, fields in ARQ_MEMBERS_USED.items():
        member = _member(dotted)
        if dotted == "arq.connections.ArqRedis":  # its constructor's keyword arguments
            parameters = inspect.signature(member.__init__).parameters
            assert all(f in parameters for f in fields), f"{dotted} lost one of {fields}"
            continue
        if dataclasses.is_dataclass(member):
            names = {f.name for f in dataclasses.fields(member)} | set(dir(member))
            assert set(fields) <= names, f"{dotted} lost {set(fields) - names}"
    assert Retry(defer=2).defer_score == 2000
    job = cron(_noop, name="tick", second=0, run_at_startup=True)
    assert job.next_run is None and job.run_at_startup and job.job_id is None
    job.calculate_next(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    assert job.next_run is not None
    assert job.next_run.replace(microsecond=0) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def test_src_uses_no_arq_member_outside_the_list() -> None:
    """Every `from arq... import X` in src/ and workers.py names a listed member: nothing private,
    no module internals (arq's worker loop, keys and payload format are ours)."""
    root = Path(__file__).resolve().parents[2]
    used: set[str] = set()
    for path in [*(root / "src").rglob("*.py"), root / "workers.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "arq":
                used |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "arq" for a in node.names), f"{path}: import arq"
    assert used == set(ARQ_MEMBERS_USED), f"unlisted: {used - set(ARQ_MEMBERS_USED)}"


def test_our_job_keys_are_arqs() -> None:
    """A job's keys keep arq's names, so arq's client tools (`Job(...).info()`) read our jobs."""
    assert (
        keys.JOB_PREFIX,
        keys.RESULT_PREFIX,
        keys.IN_PROGRESS_PREFIX,
        keys.RETRY_PREFIX,
        keys.ABORT_SET,
    ) == (job_key_prefix, result_key_prefix, in_progress_key_prefix, retry_key_prefix, abort_jobs_ss)


async def _noop(ctx: dict[str, object]) -> None:
    return None


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
