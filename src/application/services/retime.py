"""The one-off correction of appointment times stored before APP_TIMEZONE was the one time rule.

Before it, `POST /api/v1/appointments` took a `data_hora` without an offset as UTC, while imports
took it as America/Sao_Paulo. This moves appointments created one by one before a cut-off (the
upgrade) from that UTC wall time to the same wall time in APP_TIMEZONE. Each is marked once moved,
so running it twice changes nothing more. Only run it if your clients sent times without an offset:
a time sent with one was stored right and would be moved wrongly (docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from src.application.ports import Repository
from src.domain.appointments import retimed_as_local

PAGE = 500


@dataclass
class RetimeReport:
    examined: int = 0  # appointments created one by one, not yet retimed
    to_move: int = 0  # of those, created before the cut-off
    moved: int = 0  # written (0 in a dry run)
    samples: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # id, stored, corrected


async def retime_naive_times(
    repository: Repository, *, zone: tzinfo, created_before: datetime, apply: bool, samples: int = 5
) -> RetimeReport:
    report = RetimeReport()
    after: str | None = None
    while page := await repository.single_appointments_to_retime(after_id=after, limit=PAGE):
        after = page[-1].id
        report.examined += len(page)
        times = [
            (a.id, a.data_hora, retimed_as_local(a.data_hora, zone))
            for a in page
            if a.created_at < created_before
        ]
        report.to_move += len(times)
        report.samples.extend(times[: max(0, samples - len(report.samples))])
        if apply and times:
            report.moved += await repository.retime_appointments([(i, new) for i, _, new in times])
    return report
