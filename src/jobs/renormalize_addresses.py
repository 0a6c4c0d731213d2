"""Ask the LLM again for the addresses stored while it could not be used (source `rules_fallback`).

A cron of the normalization queue, run by the workers in LLM mode once per tick. Each run asks for
at most `RENORMALIZE_PER_RUN` addresses (its rate limit) and stops at the first sign that the LLM is
still unavailable (its circuit open, a timeout, a 5xx ...). An address is replaced only while it is
still a fallback, in the same store statement: an address the normalization wrote since, or another
run replaced, is never overwritten. Each address asked gets this kind's result, with its own
provenance, whether the LLM's answer replaced it or not, so an address the LLM cannot do (its answer
refused) is asked once, not on every run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from src.config import Settings
from src.domain.addresses import AddressSource
from src.domain.appointments import KindResult
from src.jobs.context import JobContext, run_info
from src.jobs.spec import Cron, NoPayload

log = structlog.get_logger(__name__)

KIND = "renormalize_addresses"
# Fallback reasons that say the LLM is still unavailable: stop the run and leave the address as is.
UNAVAILABLE = frozenset(
    {
        "breaker_open",
        "timeout",
        "connection_refused",
        "connection_error",
        "rate_limited",
        "server_error",
        "api_error",
    }
)


async def renormalize_addresses(ctx: JobContext, payload: NoPayload) -> dict[str, Any]:
    normalizer = ctx["address_normalizer"]
    if not normalizer.uses_llm:
        return {"skipped": "rules mode"}
    repository = ctx["repository"]
    pending = await repository.rules_fallback_appointments(
        after_id=None, limit=ctx["settings"].renormalize_per_run, without_result=KIND
    )
    replaced = kept = 0
    for appointment in pending:
        started = datetime.now(UTC)
        address = await normalizer.normalize(appointment.endereco)
        if address.source is not AddressSource.LLM and address.fallback_reason in UNAVAILABLE:
            log.info("re-normalization paused: the LLM is still unavailable", reason=address.fallback_reason)
            break
        provenance = run_info(ctx).provenance(started, datetime.now(UTC))
        better = address.source is AddressSource.LLM
        outcome = "replaced" if better else f"kept ({address.fallback_reason})"
        result = KindResult(data={"outcome": outcome}, provenance=provenance)
        if await repository.settle_fallback_address(
            appointment.id, KIND, result, address if better else None
        ):
            replaced, kept = replaced + better, kept + (not better)
    if replaced or kept:
        log.info("addresses re-normalized", replaced=replaced, kept=kept, asked=len(pending))
    return {"asked": len(pending), "replaced": replaced, "kept": kept}


def renormalize_schedule(settings: Settings) -> Cron | None:
    """Every `RENORMALIZE_EVERY_SECONDS`; None (off) when it is 0."""
    every = settings.renormalize_every_seconds
    return Cron.every(every) if every else None
