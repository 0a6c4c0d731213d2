"""Normalization of appointments: documents (rules) and addresses (rules or LLM), written back with
the provenance of the run that produced them.

Batch chunks run in pages: each page is normalized concurrently, written in one batched call, and
then the cursor is checkpointed, so a killed run resumes re-processing at most one page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from src.application.ports import AddressNormalizer, Repository
from src.domain.addresses import reconcile_uf_with_cep
from src.domain.appointments import Appointment, NormalizationResult, NormalizationStatus, Provenance
from src.domain.documents import mask_document, normalize_document
from src.domain.jobs import JobProgress
from src.errors import NotFound, PolicyError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """The job run doing the work: its id, fencing attempt, worker and code version."""

    job_id: str
    attempt: int
    worker_id: str
    version: str

    def provenance(self, started_at: datetime, finished_at: datetime) -> Provenance:
        """This run's provenance of a result made between the two times (any job kind's)."""
        return Provenance(
            job_id=self.job_id,
            attempt=self.attempt,
            worker_id=self.worker_id,
            version=self.version,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=int((finished_at - started_at).total_seconds() * 1000),
        )


class StaleAttempt(PolicyError):
    """This run's attempt is no longer current (another worker took the job over)."""


Checkpoint = Callable[[JobProgress], Awaitable[bool]]


class NormalizationService:
    def __init__(
        self,
        repository: Repository,
        address_normalizer: AddressNormalizer,
        *,
        documents_enabled: bool,
        addresses_enabled: bool,
        concurrency: int,
        page_size: int = 100,
    ) -> None:
        self._repository = repository
        self._addresses = address_normalizer
        self._documents_enabled = documents_enabled
        self._addresses_enabled = addresses_enabled
        self._limit = asyncio.Semaphore(concurrency)
        self._page_size = page_size

    async def normalize_appointment(
        self, appointment_id: str, run: RunInfo, *, still_current: Checkpoint
    ) -> dict[str, object]:
        """Normalize one appointment; NotFound (permanent) when it no longer exists. An earlier attempt
        of the same job that already wrote the result is not redone (no duplicate side effect)."""
        appointment = await self._repository.get_appointment(appointment_id)
        if appointment is None:
            raise NotFound(f"appointment {appointment_id} no longer exists")
        if _written_by(appointment, run):  # an earlier run wrote it and died before its outcome
            if not await still_current(JobProgress(done=1, total=1)):
                raise StaleAttempt(f"attempt {run.attempt} of {run.job_id} was superseded")
            return {"normalized": 0, "already_done": 1}
        result = await self._normalize(appointment, run)
        # The run's one write: checked, then written, with the progress it leaves behind (1 of 1).
        await self._write([result], run, still_current, JobProgress(done=1, total=1))
        return _summary([result])

    async def normalize_batch_range(
        self,
        batch_id: str,
        seq_from: int,
        seq_to: int,
        run: RunInfo,
        *,
        resume_from: int | None,
        checkpoint: Checkpoint,
    ) -> dict[str, object]:
        """Normalize appointments with seq in [seq_from, seq_to), page by page, checkpointing the cursor."""
        cursor = max(seq_from, resume_from or seq_from)
        total = seq_to - seq_from
        processed: list[NormalizationResult] = []
        while cursor < seq_to:
            page = await self._repository.list_batch_appointments(
                batch_id, seq_from=cursor, seq_to=seq_to, limit=self._page_size
            )
            if not page:
                break
            todo = [a for a in page if not _written_by(a, run)]
            results = list(await asyncio.gather(*(self._normalize(a, run) for a in todo)))
            before = JobProgress(done=cursor - seq_from, total=total, cursor=cursor)
            cursor = page[-1].seq + 1
            progress = JobProgress(done=cursor - seq_from, total=total, cursor=cursor)
            await self._write(results, run, checkpoint, before)
            processed.extend(results)
            if not await checkpoint(progress):
                raise StaleAttempt(f"attempt {run.attempt} of {run.job_id} was superseded at cursor {cursor}")
        summary = _summary(processed)
        summary["resumed_from"] = resume_from
        return summary

    async def _write(
        self,
        results: list[NormalizationResult],
        run: RunInfo,
        still_current: Checkpoint,
        progress: JobProgress,
    ) -> None:
        """Write only while this run's attempt is still the job's current one (the fencing check)."""
        if not results:
            return
        if not await still_current(progress):
            raise StaleAttempt(f"attempt {run.attempt} of {run.job_id} was superseded; results discarded")
        # shielded: a write the store has started is finished even if this run is cancelled meanwhile
        save = asyncio.ensure_future(
            self._repository.save_normalizations(results, job_id=run.job_id, attempt=run.attempt)
        )
        written = await asyncio.shield(save)
        if written < len(results):
            raise StaleAttempt(f"attempt {run.attempt} of {run.job_id} was superseded; results discarded")

    async def _normalize(self, appointment: Appointment, run: RunInfo) -> NormalizationResult:
        started = datetime.now(UTC)
        async with self._limit:
            document = normalize_document(appointment.documento) if self._documents_enabled else None
            if document is not None and not document.valid:
                # masked (***.982.247-**): never a whole document in a log line
                log.debug(
                    "invalid document",
                    appointment_id=appointment.id,
                    document=mask_document(appointment.documento),
                    reason=document.reason,
                )
            address = (
                await self._addresses.normalize(appointment.endereco) if self._addresses_enabled else None
            )
            if address is not None:  # whatever the source, a UF is checked against its CEP's range
                address = reconcile_uf_with_cep(address)
        return NormalizationResult(
            appointment_id=appointment.id,
            status=NormalizationStatus.NORMALIZED,
            documento_normalizado=document,
            endereco_normalizado=address,
            provenance=run.provenance(started, datetime.now(UTC)),
        )


def _written_by(appointment: Appointment, run: RunInfo) -> bool:
    """An earlier run of the same logical job (any attempt, any generation) already wrote it: a run
    that resumes past its checkpoint, or a later generation, does not write it again."""
    provenance = appointment.provenance
    if provenance is None:
        return False
    if provenance.job_id == run.job_id:
        return True
    return provenance.job_id.rpartition(":")[0] == run.job_id.rpartition(":")[0]


def _summary(results: Sequence[NormalizationResult]) -> dict[str, object]:
    """A small JSON-able summary without personal data."""
    sources: dict[str, int] = {}
    invalid_documents = 0
    for r in results:
        if r.endereco_normalizado is not None:
            key = r.endereco_normalizado.source.value
            sources[key] = sources.get(key, 0) + 1
        if r.documento_normalizado is not None and not r.documento_normalizado.valid:
            invalid_documents += 1
    return {"normalized": len(results), "address_sources": sources, "invalid_documents": invalid_documents}
