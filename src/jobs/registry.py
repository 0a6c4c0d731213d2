"""Every job type, declared once. The worker of each queue, its crons, the API's and the CLI's lists
and the banner are derived from this list.

Adding a job type: write its module (a payload model and a handler, like `normalize_appointment.py`),
add its `JobSpec` below, and test it. A new queue needs nothing more here; it needs a worker
(`python workers.py --queue <name>`) in each deployment. See docs/architecture.md, "Add a job type".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from src.domain.jobs import DEFAULT_QUEUE, MAINTENANCE_QUEUE
from src.jobs.maintenance import cleanup, reconcile, reconcile_schedule, reconcile_timeout_s
from src.jobs.normalize_appointment import NormalizeAppointment, normalize_appointment
from src.jobs.normalize_batch_chunk import NormalizeBatchChunk, normalize_batch_chunk
from src.jobs.renormalize_addresses import KIND, renormalize_addresses, renormalize_schedule
from src.jobs.spec import Cron, JobSpec, NoPayload


class JobRegistry:
    """Job specs by name; queues in the order their first job was declared."""

    def __init__(self, specs: Iterable[JobSpec[Any]]) -> None:
        self._specs: dict[str, JobSpec[Any]] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: JobSpec[Any]) -> None:
        if spec.name in self._specs:
            raise ValueError(f"job {spec.name!r} is declared twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> JobSpec[Any]:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self._specs)
            raise KeyError(f"no job named {name!r} in the registry (jobs: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[JobSpec[Any]]:
        return iter(self._specs.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(spec.queue for spec in self._specs.values()))

    def on_queue(self, queue: str) -> list[JobSpec[Any]]:
        """The queue's jobs, crons included."""
        return [spec for spec in self._specs.values() if spec.queue == queue]

    def queue_of(self, name: str) -> str:
        return self.get(name).queue


NORMALIZE_APPOINTMENT = JobSpec(
    name="normalize_appointment", handler=normalize_appointment, payload=NormalizeAppointment
)
NORMALIZE_BATCH_CHUNK = JobSpec(
    name="normalize_batch_chunk", handler=normalize_batch_chunk, payload=NormalizeBatchChunk
)
RENORMALIZE_ADDRESSES = JobSpec(  # LLM mode: the addresses stored while the LLM was down, asked again
    name=KIND,
    handler=renormalize_addresses,
    payload=NoPayload,
    timeout_s=600.0,
    cron=renormalize_schedule,
)
RECONCILE = JobSpec(
    name="reconcile",
    handler=reconcile,
    payload=NoPayload,
    queue=MAINTENANCE_QUEUE,
    timeout_s=reconcile_timeout_s,
    cron=reconcile_schedule,
)
CLEANUP = JobSpec(
    name="cleanup",
    handler=cleanup,
    payload=NoPayload,
    queue=MAINTENANCE_QUEUE,
    timeout_s=600.0,
    cron=Cron(second={0}, minute={17}),  # hourly
)

REGISTRY = JobRegistry(
    [NORMALIZE_APPOINTMENT, NORMALIZE_BATCH_CHUNK, RENORMALIZE_ADDRESSES, RECONCILE, CLEANUP]
)

__all__ = ["CLEANUP", "DEFAULT_QUEUE", "NORMALIZE_APPOINTMENT", "NORMALIZE_BATCH_CHUNK", "RECONCILE",
           "REGISTRY", "RENORMALIZE_ADDRESSES", "JobRegistry"]  # fmt: skip
