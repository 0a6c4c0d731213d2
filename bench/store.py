"""What the embedded store's appointment paths cost, here and at another commit.

`python -m bench.store [--rows 20000] [--rounds 5] [--baseline-ref COMMIT] [--smoke] [--json PATH]`

Every round is one fresh process per code tree (this checkout, and with `--baseline-ref` the
commit's code in a temporary git worktree, this script copied in; alternating which goes first),
each on a new SQLite file in a temporary directory. It uses only the `Repository` port, so an older
tree runs it as it is. In each process, on `--rows` appointments of one batch:

- `insert`: `insert_appointments` in pages of 1,000 (an import), µs per row;
- `save-page`: `save_normalizations` of pages of 100 results, each page a run of its own chunk job
  claimed in the ledger (what a chunk job writes), µs per row;
- `save-stale`: the same pages again from a stale attempt of those jobs (fenced: writes nothing),
  µs per row;
- `save-one`: `save_normalizations` of one result (a lone job, the inline path), µs per call;
- `get`: `get_appointment`, µs per call; `page`: `list_batch_appointments` of 100, µs per page;
- `count`: `count_batch` of the whole batch, ms per call.

Prints the median over rounds with the min–max per tree, and "this ÷ baseline".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = 100
SINGLES = 2_000
READS = 2_000
COUNTS = 20
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ADDRESS = "R. Augusta 123 ap 4, Consolação, São Paulo SP 01305000"
SCENARIOS = ("insert", "save-page", "save-stale", "save-one", "get", "page", "count")


async def measure(rows: int) -> dict[str, float]:
    """One round in this process, on a new file: every scenario in turn."""
    from src.infrastructure.sqlite_repository import SQLiteRepository

    with tempfile.TemporaryDirectory() as tmp:
        repo = SQLiteRepository(str(Path(tmp) / "store.sqlite3"))
        await repo.init()
        try:
            return await _scenarios(repo, rows)
        finally:
            await repo.close()


async def _scenarios(repo: Any, rows: int) -> dict[str, float]:
    from src.domain.appointments import Appointment

    figures: dict[str, float] = {}
    appointments = [  # the batch's rows, then single appointments (no batch)
        Appointment(id=f"b-{seq:06d}", batch_id="b" if seq < rows else None, seq=seq if seq < rows else 0,
                    paciente=f"Paciente {seq}", documento="529.982.247-25", endereco=ADDRESS,
                    data_hora=T0 + timedelta(minutes=seq), created_at=T0)
        for seq in range(rows + SINGLES)
    ]  # fmt: skip
    ids = [a.id for a in appointments]
    with timed(figures, "insert", rows):
        for start in range(0, rows, 1000):
            await repo.insert_appointments(appointments[start : min(rows, start + 1000)])
    await repo.insert_appointments(appointments[rows:])

    pages = await claimed(repo, [f"batch:b:{start}:1" for start in range(0, rows, PAGE)])
    current = [(job_id, attempt, results(ids[n * PAGE : (n + 1) * PAGE], job_id, attempt))
               for n, (job_id, attempt) in enumerate(pages.items())]  # fmt: skip
    with timed(figures, "save-page", rows):
        for job_id, attempt, page in current:
            assert await repo.save_normalizations(page, job_id=job_id, attempt=attempt) == len(page)
    stale = [(job_id, attempt - 1, results([r.appointment_id for r in page], job_id, attempt - 1))
             for job_id, attempt, page in current]  # fmt: skip
    with timed(figures, "save-stale", rows):
        for job_id, attempt, page in stale:
            assert await repo.save_normalizations(page, job_id=job_id, attempt=attempt) == 0

    singles = await claimed(repo, [f"normalize:{appointment_id}:1" for appointment_id in ids[rows:]])
    lone = [(job_id, attempt, results([job_id.split(":")[1]], job_id, attempt))
            for job_id, attempt in singles.items()]  # fmt: skip
    with timed(figures, "save-one", SINGLES):
        for job_id, attempt, one in lone:
            assert await repo.save_normalizations(one, job_id=job_id, attempt=attempt) == 1

    sample = ids[: rows : max(1, rows // READS)]
    with timed(figures, "get", len(sample)):
        for appointment_id in sample:
            assert await repo.get_appointment(appointment_id) is not None
    with timed(figures, "page", len(range(0, rows, PAGE))):
        for start in range(0, rows, PAGE):
            await repo.list_batch_appointments("b", seq_from=start, seq_to=start + PAGE, limit=PAGE)
    with timed(figures, "count", COUNTS, scale=1e3):
        for _ in range(COUNTS):
            counts = await repo.count_batch("b")
    assert (counts.total, counts.normalized) == (rows, rows)
    return figures


@contextmanager
def timed(figures: dict[str, float], name: str, count: int, scale: float = 1e6) -> Iterator[None]:
    started = time.perf_counter()
    yield
    figures[name] = scale * (time.perf_counter() - started) / count


async def claimed(repo: Any, job_ids: list[str]) -> dict[str, int]:
    """Ledger records of these jobs, each claimed once: job id → its attempt."""
    from src.domain.jobs import JobClaim, JobEnvelope, JobRecord, split_job_id

    records = []
    for job_id in job_ids:
        key, generation = split_job_id(job_id)
        envelope = JobEnvelope(task="bench", logical_key=key, generation=generation)
        records.append(JobRecord(job_id=job_id, logical_key=key, generation=generation, task="bench",
                                 queue="normalization", enqueued_at=T0, envelope=envelope))  # fmt: skip
    await repo.create_jobs(records)
    claim = JobClaim(worker_id="w", version="1", started_at=T0)
    return {job_id: await repo.claim_job(job_id, claim) for job_id in job_ids}


def results(appointment_ids: list[str], job_id: str, attempt: int) -> list[Any]:
    """What a run writes: a rules-normalized document and address per appointment."""
    from src.domain.address_rules import normalize_address_rules
    from src.domain.appointments import NormalizationResult, NormalizationStatus, Provenance
    from src.domain.documents import normalize_document

    address, document = normalize_address_rules(ADDRESS), normalize_document("529.982.247-25")
    provenance = Provenance(job_id=job_id, attempt=attempt, worker_id="w", version="1", started_at=T0,
                            finished_at=T0, duration_ms=3)  # fmt: skip
    return [
        NormalizationResult(
            appointment_id=appointment_id,
            status=NormalizationStatus.NORMALIZED,
            documento_normalizado=document,
            endereco_normalizado=address,
            provenance=provenance,
        )  # fmt: skip
        for appointment_id in appointment_ids
    ]


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """`ref`'s code in a temporary git worktree, with this script copied in (it may predate it)."""
    path = Path(tempfile.mkdtemp(prefix="bench-store-")) / "tree"
    add = ["git", "worktree", "add", "--detach", str(path), ref]
    subprocess.run(add, cwd=ROOT, check=True, capture_output=True)
    try:
        shutil.copy(Path(__file__), path / "bench" / "store.py")
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
        shutil.rmtree(path.parent, ignore_errors=True)


def run_round(tree: Path, rows: int) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.store", "--measure", str(rows)],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.splitlines()[-1])
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):9.1f} ({min(values):.1f}–{max(values):.1f})"


def medians(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        name: {s: statistics.median(r[s] for r in rounds) for s in SCENARIOS} for name, rounds in runs.items()
    }


def report(runs: dict[str, list[dict[str, float]]], rows: int) -> None:
    units = {"count": "ms/call", "insert": "µs/row", "save-page": "µs/row", "save-stale": "µs/row"}
    print(f"{rows} rows; median (min–max) of {len(next(iter(runs.values())))} rounds")
    names = list(runs)
    for scenario in SCENARIOS:
        cells = [f"{name} {spread([r[scenario] for r in runs[name]])}" for name in names]
        line = f"{scenario:>10} [{units.get(scenario, 'µs/call'):>7}]: " + "  ".join(cells)
        if len(names) == 2:
            this = statistics.median(r[scenario] for r in runs[names[0]])
            base = statistics.median(r[scenario] for r in runs[names[1]])
            line += f"  this ÷ baseline {this / base:.2f}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-ref", help="also measure this commit's store (a git worktree)")
    parser.add_argument("--smoke", action="store_true", help="300 rows, 1 round: that it runs, no verdict")
    parser.add_argument("--json", type=Path, help="write the medians per tree here")
    parser.add_argument("--measure", type=int, metavar="ROWS", help=argparse.SUPPRESS)  # one round, JSON out
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure))))
        return 0
    if args.smoke:
        args.rows, args.rounds = 300, 1
    with worktree(args.baseline_ref) if args.baseline_ref else _no_tree() as baseline:
        trees = {"this": ROOT} | ({args.baseline_ref[:10]: baseline} if baseline else {})
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for n in range(args.rounds):
            order = list(trees.items())
            for name, tree in order if n % 2 == 0 else reversed(order):
                runs[name].append(run_round(tree, args.rows))
        report(runs, args.rows)
    if args.json:
        args.json.write_text(json.dumps(medians(runs), indent=2))
    return 0


@contextmanager
def _no_tree() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    raise SystemExit(main())
