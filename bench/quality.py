"""Normalization quality: per-field accuracy on the labelled addresses (issue 25).

`python -m bench.quality [--mode rules] [--data PATH] [--baseline COMMIT | --no-baseline]
[--by-form] [--failures] [--json PATH]`

Reads `tests/data/addresses.jsonl` (how it was made: tests/data/README.md), normalizes every input
and compares the fields the issue scores (numero, bairro, cidade, uf, cep; logradouro and
complemento are printed too, not scored) with the labels, ignoring case, accents and punctuation.
The dev part and the held-out part are printed separately: the rules are tuned on dev only.

`--baseline COMMIT` (default: 2c5b443, the code before issue 25) also scores that commit's rules,
run from a `git archive` of its `src/` in a temporary directory, for the before/after table.
`--failures` lists the dev rows that miss a scored field (never the held-out ones).

Modes: `rules` (the default) calls `normalize_address_rules`. Another mode plugs in by adding to
`NORMALIZERS` an async context manager that yields an async `str -> NormalizedAddress` callable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from src.domain.address_rules import normalize_address_rules
from src.domain.addresses import NormalizedAddress

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "addresses.jsonl"
BASE_COMMIT = "2c5b443"  # the rules before issue 25
SCORED = ("numero", "bairro", "cidade", "uf", "cep")
SHOWN = ("logradouro", "complemento")
SPLITS = ("dev", "heldout")

Normalize = Callable[[str], Awaitable[NormalizedAddress]]
Fields = dict[str, str | None]


@dataclass(frozen=True)
class LabelledAddress:
    id: str
    split: str
    form: str
    input: str
    expected: Fields


def load(path: Path = DATA) -> list[LabelledAddress]:
    """The labelled rows of a JSON Lines file."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            rows.append(LabelledAddress(raw["id"], raw["split"], raw["form"], raw["input"], raw["expected"]))
    return rows


def comparable(value: str | None) -> str:
    """Case, accents and punctuation do not count: `Zona de Expansão (Aruana)` = `ZONA DE EXPANSAO ARUANA`."""
    if not value:
        return ""
    decomposed = unicodedata.normalize("NFD", value.casefold())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.split(r"[\W_]+", folded)).strip()


def field_hits(expected: Fields, got: Fields) -> dict[str, bool]:
    """For each field, whether the result matches the label (both absent counts as a match)."""
    return {name: comparable(expected.get(name)) == comparable(got.get(name)) for name in SCORED + SHOWN}


def accuracy(rows: Iterable[LabelledAddress], results: dict[str, Fields]) -> dict[str, float]:
    """Share of rows right per field, plus `fields` (all scored fields pooled) and `rows` (all five right)."""
    hits = [field_hits(row.expected, results[row.id]) for row in rows]
    if not hits:
        return {}
    out = {name: sum(h[name] for h in hits) / len(hits) for name in SCORED + SHOWN}
    out["fields"] = sum(h[name] for h in hits for name in SCORED) / (len(hits) * len(SCORED))
    out["rows"] = sum(all(h[name] for name in SCORED) for h in hits) / len(hits)
    return out


async def _rules(raw: str) -> NormalizedAddress:
    return normalize_address_rules(raw)


@asynccontextmanager
async def rules_mode() -> AsyncIterator[Normalize]:
    """Rules mode: nothing to start or close."""
    yield _rules


@asynccontextmanager
async def llm_mode() -> AsyncIterator[Normalize]:
    """LLM mode as the worker runs it (the SDK, the circuit breaker, the checks of the answer, the
    rules as fallback): against the real model when `OPENAI_API_KEY` is set (`OPENAI_MODEL`, else
    the settings' default), else against the project's fake server, which checks the plumbing only
    (its answers are not a model's). Prints who answered: every address should say `llm`."""
    from src.application.services.rules_address_normalizer import RulesAddressNormalizer
    from src.config import Settings
    from src.infrastructure.llm_address_normalizer import LLMAddressNormalizer, build_openai_client
    from src.logging import configure_logging
    from tests.fakes.openai_server import run_fake_openai_server

    configure_logging("WARNING", "console")  # one line per refused answer is the worker's DEBUG

    key = os.environ.get("OPENAI_API_KEY") or None
    model = os.environ.get("OPENAI_MODEL") or str(Settings.model_fields["openai_model"].default)
    with contextlib.ExitStack() as stack:
        base_url = None if key else stack.enter_context(run_fake_openai_server()).base_url
        client = build_openai_client(key, base_url, timeout_s=30.0, max_retries=2)
        normalizer = LLMAddressNormalizer(client, model, fallback=RulesAddressNormalizer(), concurrency=8)
        answered: Counter[str] = Counter()

        async def normalize(raw: str) -> NormalizedAddress:
            address = await normalizer.normalize(raw)
            answered[address.fallback_reason or address.source.value] += 1
            return address

        try:
            yield normalize
        finally:
            await client.close()
            where = "the real model" if key else "the fake server (plumbing only)"
            print(f"llm mode against {where}, model {model}: answered by {dict(answered)}", file=sys.stderr)


# mode -> context manager that starts what the mode needs (a server, a client), yields the
# normalizer and closes everything on exit.
NORMALIZERS: dict[str, Callable[[], AbstractAsyncContextManager[Normalize]]] = {
    "rules": rules_mode,
    "llm": llm_mode,
}


async def normalize_all(rows: list[LabelledAddress], normalize: Normalize) -> dict[str, Fields]:
    """Results by row id, as plain field dicts."""
    results = await asyncio.gather(*(normalize(row.input) for row in rows))
    return {
        row.id: {name: getattr(address, name) for name in SCORED + SHOWN}
        for row, address in zip(rows, results, strict=True)
    }


_BASELINE_SCRIPT = """
import json, sys
from src.domain.address_rules import normalize_address_rules
fields = json.loads(sys.argv[1])
out = {}
for line in sys.stdin:
    row = json.loads(line)
    address = normalize_address_rules(row["input"])
    out[row["id"]] = {name: getattr(address, name) for name in fields}
print(json.dumps(out))
"""


def baseline_results(rows: list[LabelledAddress], commit: str) -> dict[str, Fields]:
    """The rules of `commit`, run in a subprocess from that commit's `src/` unpacked in a temp dir."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="quality-baseline-") as workdir:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(workdir, filter="data")
        stdin = "".join(json.dumps({"id": row.id, "input": row.input}) + "\n" for row in rows)
        done = subprocess.run(
            [sys.executable, "-c", _BASELINE_SCRIPT, json.dumps(SCORED + SHOWN)],
            cwd=workdir,
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        )
    results: dict[str, Fields] = json.loads(done.stdout)
    return results


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f} %"


def render(
    rows: list[LabelledAddress], after: dict[str, Fields], before: dict[str, Fields] | None, mode: str
) -> tuple[str, dict[str, object]]:
    """The per-field table (dev and held-out, before and after) and the same figures as JSON."""
    by_split = {split: [row for row in rows if row.split == split] for split in SPLITS}
    figures: dict[str, object] = {"mode": mode, "rows": {s: len(r) for s, r in by_split.items()}}
    columns: list[tuple[str, dict[str, float]]] = []
    for split, split_rows in by_split.items():
        if before is not None:
            columns.append((f"{split} before", accuracy(split_rows, before)))
        columns.append((f"{split} after" if before is not None else split, accuracy(split_rows, after)))
    figures["accuracy"] = dict(columns)
    counts = ", ".join(f"{len(r)} {s}" for s, r in by_split.items())
    lines = [f"{mode} mode on {len(rows)} labelled addresses ({counts})", ""]
    lines.append(f"{'field':<22}" + "".join(f"{title:>17}" for title, _ in columns))
    labels = {name: name for name in SCORED + SHOWN}
    labels |= {"fields": "5 scored fields", "rows": "rows with all 5 right"}
    for name in (*SCORED, "fields", "rows", *SHOWN):
        note = " (not scored)" if name in SHOWN else ""
        cells = "".join(f"{_percent(acc.get(name)):>17}" for _, acc in columns)
        lines.append(f"{labels[name] + note:<22}{cells}")
    return "\n".join(lines), figures


def by_form(rows: list[LabelledAddress], after: dict[str, Fields], before: dict[str, Fields] | None) -> str:
    """Pooled accuracy of the 5 scored fields per form and part (scores only, no held-out rows shown)."""
    runs = [("before", before), ("after", after)] if before is not None else [("", after)]
    titles = [f"{split} {name}".strip() for split in SPLITS for name, _ in runs]
    lines = ["", f"{'form (5 scored fields)':<26}{'rows':>10}" + "".join(f"{t:>17}" for t in titles)]
    for form in sorted({row.form for row in rows}):
        subsets = [[row for row in rows if row.form == form and row.split == split] for split in SPLITS]
        cells = "".join(
            f"{_percent(accuracy(subset, results).get('fields')):>17}"
            for subset in subsets
            for _, results in runs
            if results is not None
        )
        counts = " + ".join(str(len(subset)) for subset in subsets)
        lines.append(f"{form:<26}{counts:>10}{cells}")
    return "\n".join(lines)


def dev_failures(rows: list[LabelledAddress], results: dict[str, Fields]) -> list[str]:
    """One line per scored field missed on a dev row."""
    out = []
    for row in rows:
        if row.split != "dev":
            continue
        for name, hit in field_hits(row.expected, results[row.id]).items():
            if not hit and name in SCORED:
                out.append(f"{row.id} [{row.form}] {name}: want {row.expected.get(name)!r} "
                           f"got {results[row.id].get(name)!r}  <- {row.input}")  # fmt: skip
    return out


async def _run_mode(mode: str, rows: list[LabelledAddress]) -> dict[str, Fields]:
    async with NORMALIZERS[mode]() as normalize:
        return await normalize_all(rows, normalize)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(NORMALIZERS), default="rules")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--baseline", default=BASE_COMMIT, help="commit whose rules give 'before'")
    parser.add_argument("--no-baseline", action="store_true", help="skip the before column")
    parser.add_argument("--by-form", action="store_true", help="also the accuracy per address form")
    parser.add_argument("--failures", action="store_true", help="list the dev rows that miss a field")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    rows = load(args.data)
    after = asyncio.run(_run_mode(args.mode, rows))
    before = None
    if not args.no_baseline:
        try:
            before = baseline_results(rows, args.baseline)
        except (subprocess.CalledProcessError, OSError) as error:
            print(f"baseline {args.baseline} unavailable ({error}); printing 'after' only", file=sys.stderr)
    table, figures = render(rows, after, before, args.mode)
    print(table)
    if args.by_form:
        print(by_form(rows, after, before))
    if args.failures:
        print("\n".join(["", "dev misses:", *dev_failures(rows, after)]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
