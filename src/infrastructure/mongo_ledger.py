"""The job ledger on MongoDB: every write of a run is a single-document update whose filter carries
the run's `attempt` (the fencing token), so a stale run matches nothing."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from src.domain.jobs import (
    ErrorCategory,
    JobClaim,
    JobCount,
    JobEnvelope,
    JobOutcome,
    JobProgress,
    JobRecord,
    JobStatus,
    LostLease,
)
from src.domain.workers import WorkerRegistration
from src.infrastructure import store_codec as codec
from src.infrastructure.mongo_common import (
    CODEC_OPTIONS,
    Document,
    after_position,
    insert_many,
    insert_op,
    unavailable_on_connection_errors,
)

_NOT_TERMINAL = {"$nin": list(codec.TERMINAL_STATUSES)}
_WAITING = {"$in": [JobStatus.QUEUED.value, JobStatus.INTERRUPTED.value]}  # what a run may claim
_FINISHED = {"$in": list(codec.FINISHED_STATUSES)}
_RUNNING = JobStatus.RUNNING.value

JOB_INDEXES = [
    IndexModel([("logical_key", ASCENDING), ("generation", DESCENDING)], name="key_generation", unique=True),
    IndexModel([("status", ASCENDING), ("enqueued_at", DESCENDING)], name="status_enqueued"),
    IndexModel([("status", ASCENDING), ("heartbeat_at", ASCENDING)], name="status_heartbeat"),
    IndexModel([("status", ASCENDING), ("finished_at", DESCENDING)], name="status_finished"),
    IndexModel([("enqueued_at", DESCENDING)], name="enqueued"),
]


class MongoLedger:
    """The `jobs` and `workers` collections of `database`."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._jobs = database.get_collection("jobs", codec_options=CODEC_OPTIONS)
        self._workers = database.get_collection("workers", codec_options=CODEC_OPTIONS)

    # job ledger

    async def create_jobs(self, records: Sequence[JobRecord]) -> int:
        """Insert the ledger records whose job id is new; return how many were inserted. A later
        generation then supersedes the earlier ones of its logical key (two conditioned updates,
        not one transaction: should the process die between the insert and them, the earlier
        generation stays runnable until the next enqueue of a later one; a succeeded generation is
        never superseded)."""
        ops = [insert_op(record.job_id, codec.job_doc(record)) for record in records]
        inserted = await insert_many(self._jobs, ops)
        for record in records:
            if record.generation > 1:
                await self._supersede(record)
        return inserted

    async def _supersede(self, successor: JobRecord) -> None:
        earlier = {
            "logical_key": successor.logical_key,
            "generation": {"$lt": successor.generation},
            "superseded_by": None,
        }
        replaced = {"superseded_by": successor.job_id}
        with unavailable_on_connection_errors():
            await self._jobs.update_many(
                {**earlier, "status": _NOT_TERMINAL},
                {
                    "$set": {
                        **replaced,
                        "status": JobStatus.SUPERSEDED.value,
                        "finished_at": successor.enqueued_at,
                    }
                },
            )
            await self._jobs.update_many(
                {**earlier, "status": {"$ne": JobStatus.SUCCEEDED.value}}, {"$set": replaced}
            )

    async def create_queued_jobs(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str,
        *,
        enqueued_at: datetime,
        progress: JobProgress,
    ) -> int:
        # The insert's round trip dominates here, so the records go through the one document codec.
        return await self.create_jobs(
            [
                JobRecord(
                    job_id=e.job_id,
                    logical_key=e.logical_key,
                    generation=e.generation,
                    task=e.task,
                    queue=queue,
                    envelope=e,
                    enqueued_at=enqueued_at,
                    progress=progress,
                )
                for e in envelopes
            ]
        )

    async def get_job(self, job_id: str) -> JobRecord | None:
        with unavailable_on_connection_errors():
            doc = await self._jobs.find_one({"_id": job_id})
        return None if doc is None else codec.job_from_doc(doc)

    async def latest_job(self, logical_key: str) -> JobRecord | None:
        """The record of the highest generation of a logical key."""
        with unavailable_on_connection_errors():
            doc = await self._jobs.find_one({"logical_key": logical_key}, sort=[("generation", DESCENDING)])
        return None if doc is None else codec.job_from_doc(doc)

    async def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 100, before: tuple[datetime, str] | None = None
    ) -> list[JobRecord]:
        """Most recently enqueued first, ties by job id; after `before` when given."""
        query: dict[str, Any] = {} if before is None else after_position("enqueued_at", before)
        if status is not None:
            query["status"] = status.value
        order = [("enqueued_at", DESCENDING), ("_id", DESCENDING)]
        with unavailable_on_connection_errors():
            docs = await self._jobs.find(query).sort(order).limit(limit).to_list()
        return [codec.job_from_doc(doc) for doc in docs]

    async def claim_job(self, job_id: str, claim: JobClaim) -> int | None:
        """Start a run of a non-terminal job: increment and return its attempt; None otherwise."""
        update = {
            "$inc": {"attempt": 1},
            "$set": {
                "status": _RUNNING,
                "worker_id": claim.worker_id,
                "version": claim.version,
                "started_at": claim.started_at,
                "heartbeat_at": claim.started_at,
                "finished_at": None,
                "duration_ms": None,
                "error_category": None,
                "error_message": None,
                "result": None,
            },
        }
        with unavailable_on_connection_errors():
            doc = await self._jobs.find_one_and_update(
                {"_id": job_id, "status": _WAITING},
                update,
                projection={"attempt": True},
                return_document=ReturnDocument.AFTER,
            )
        return None if doc is None else int(doc["attempt"])

    async def record_lost_lease(
        self, job_id: str, *, at: datetime, max_losses: int, attempt: int | None = None
    ) -> LostLease | None:
        """Count a lost lease of a running job: queued again, or quarantined at `max_losses`."""
        running: Document = {"_id": job_id, "status": _RUNNING}
        if attempt is not None:
            running["attempt"] = attempt
        counted = {"attempt": 1, "lease_losses": 1}
        requeue = {
            "$inc": counted,
            "$set": {"status": JobStatus.QUEUED.value, "error_category": None,
                     "error_message": codec.lost_lease_message(max_losses)},
        }  # fmt: skip
        quarantine = {
            "$inc": counted,
            "$set": {"status": JobStatus.FAILED.value, "error_category": ErrorCategory.QUARANTINED.value,
                     "error_message": codec.quarantine_message(max_losses), "finished_at": at},
        }  # fmt: skip
        fields = {"status": True, "attempt": True, "lease_losses": True, "worker_id": True}
        with unavailable_on_connection_errors():
            doc = await self._jobs.find_one_and_update(
                {**running, "lease_losses": {"$not": {"$gte": max_losses - 1}}},  # also when missing
                requeue,
                projection=fields,
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                doc = await self._jobs.find_one_and_update(
                    running, quarantine, projection=fields, return_document=ReturnDocument.AFTER
                )
        if doc is None:
            return None
        return LostLease(
            status=JobStatus(doc["status"]),
            attempt=int(doc["attempt"]),
            lease_losses=int(doc["lease_losses"]),
            worker_id=doc.get("worker_id"),
        )

    async def fail_waiting_job(
        self,
        job_id: str,
        *,
        at: datetime,
        category: ErrorCategory,
        message: str,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Mark a queued or interrupted job failed with `category`; False when it is not waiting."""
        update = {
            "$set": {"status": JobStatus.FAILED.value, "finished_at": at, "error_category": category.value,
                     "error_message": message, "result": result},
        }  # fmt: skip
        with unavailable_on_connection_errors():
            written = await self._jobs.update_one({"_id": job_id, "status": _WAITING}, update)
        return written.matched_count == 1

    async def heartbeat_job(
        self, job_id: str, attempt: int, *, at: datetime, progress: JobProgress | None = None
    ) -> bool:
        """Refresh a running job's heartbeat (and progress); False when `attempt` is not current."""
        fields: Document = {"heartbeat_at": at}
        if progress is not None:
            fields["progress"] = progress.model_dump()
        return await self._update_run(job_id, attempt, {"$set": fields})

    async def heartbeat_jobs(self, runs: Sequence[tuple[str, int]], *, at: datetime) -> int:
        """Refresh the heartbeat of many running jobs in one bulk write; return how many matched."""
        if not runs:
            return 0
        ops = [
            UpdateOne(
                {"_id": job_id, "attempt": attempt, "status": "running"}, {"$set": {"heartbeat_at": at}}
            )
            for job_id, attempt in runs
        ]
        with unavailable_on_connection_errors():
            result = await self._jobs.bulk_write(ops, ordered=False)
        return int(result.matched_count)

    async def find_stale_jobs(
        self, *, running_heartbeat_before: datetime, waiting_enqueued_before: datetime, limit: int
    ) -> list[JobRecord]:
        """Stale running jobs and long-waiting queued/interrupted jobs, oldest first."""
        query = {
            "$or": [
                {"status": "running", "heartbeat_at": {"$lt": running_heartbeat_before}},
                {
                    "status": {"$in": ["queued", "interrupted"]},
                    "enqueued_at": {"$lt": waiting_enqueued_before},
                },
            ]
        }
        with unavailable_on_connection_errors():
            cursor = self._jobs.find(query, sort=[("enqueued_at", ASCENDING)], limit=limit)
            docs = await cursor.to_list()
        return [codec.job_from_doc(doc) for doc in docs]

    async def count_jobs(self) -> list[JobCount]:
        pipeline: list[Document] = [
            {
                "$group": {
                    "_id": {"queue": "$queue", "status": "$status", "category": "$error_category"},
                    "count": {"$sum": 1},
                    "oldest": {"$min": "$enqueued_at"},
                }
            }
        ]
        with unavailable_on_connection_errors():
            cursor = await self._jobs.aggregate(pipeline)
            groups = await cursor.to_list()
        return [
            JobCount(
                queue=g["_id"]["queue"],
                status=JobStatus(g["_id"]["status"]),
                error_category=ErrorCategory(g["_id"]["category"]) if g["_id"].get("category") else None,
                count=g["count"],
                oldest_enqueued_at=g.get("oldest"),
            )
            for g in groups
        ]

    async def finished_since(
        self, since: datetime, *, limit: int, categories: Collection[ErrorCategory] | None = None
    ) -> list[JobRecord]:
        query: Document = {"status": _FINISHED, "finished_at": {"$gte": since}}
        if categories is not None:
            query["error_category"] = {"$in": [c.value for c in categories]}
        with unavailable_on_connection_errors():
            cursor = self._jobs.find(query, sort=[("finished_at", DESCENDING)], limit=limit)
            docs = await cursor.to_list()
        return [codec.job_from_doc(doc) for doc in docs]

    async def delete_finished_jobs(self, before: datetime, *, limit: int) -> list[str]:
        query = {"status": {"$in": list(codec.TERMINAL_STATUSES)}, "finished_at": {"$lt": before}}
        with unavailable_on_connection_errors():
            cursor = self._jobs.find(query, {"_id": 1}, sort=[("finished_at", ASCENDING)], limit=limit)
            ids = [str(doc["_id"]) for doc in await cursor.to_list()]
            if ids:
                await self._jobs.delete_many(
                    {"_id": {"$in": ids}, "status": {"$in": list(codec.TERMINAL_STATUSES)}}
                )
        return ids

    async def finish_job(self, job_id: str, attempt: int, outcome: JobOutcome) -> bool:
        """Record how a run ended; False when `attempt` is not current or the job is not running."""
        update = {
            "$set": {
                "status": outcome.status.value,
                "finished_at": outcome.finished_at,
                "duration_ms": outcome.duration_ms,
                "error_category": outcome.error_category.value if outcome.error_category else None,
                "error_message": outcome.error_message,
                "result": outcome.result,
            },
            "$inc": {"app_failures": int(outcome.app_failure), "interruptions": int(outcome.interruption)},
        }
        return await self._update_run(job_id, attempt, update)

    async def cancel_job(self, job_id: str, *, at: datetime) -> bool:
        """Mark a non-terminal job cancelled; False when it is unknown or already terminal."""
        update = {"$set": {"status": JobStatus.CANCELLED.value, "finished_at": at}}
        with unavailable_on_connection_errors():
            written = await self._jobs.update_one({"_id": job_id, "status": _NOT_TERMINAL}, update)
        return written.matched_count == 1

    # the fleet's workers

    async def register_worker(self, worker: WorkerRegistration) -> None:
        doc = worker.model_dump(exclude={"worker_id", "seen_at"})
        with unavailable_on_connection_errors():
            await self._workers.update_one(
                {"_id": worker.worker_id},
                {"$setOnInsert": doc, "$set": {"seen_at": worker.seen_at}},
                upsert=True,
            )

    async def known_workers(self, worker_ids: Collection[str]) -> set[str]:
        if not worker_ids:
            return set()
        with unavailable_on_connection_errors():
            docs = await self._workers.find({"_id": {"$in": list(worker_ids)}}, {"_id": 1}).to_list()
        return {str(doc["_id"]) for doc in docs}

    async def _update_run(self, job_id: str, attempt: int, update: Document) -> bool:
        """Apply `update` only while run `attempt` is the current, running one."""
        with unavailable_on_connection_errors():
            written = await self._jobs.update_one(
                {"_id": job_id, "attempt": attempt, "status": _RUNNING}, update
            )
        return written.matched_count == 1
