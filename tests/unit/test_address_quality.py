"""The labelled address set (tests/data/addresses.jsonl) and the rules' accuracy on its dev part.

The held-out part is deliberately not asserted on: it is measured by `python -m bench.quality` only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.quality import DATA, NORMALIZERS, SCORED, accuracy, comparable, load, normalize_all
from tests.data.make_addresses import build

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_committed_set_is_what_the_generator_writes() -> None:
    """`tests/data/make_addresses.py` reproduces the committed file row for row."""
    committed = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert committed == build()


def test_set_is_large_split_and_labelled() -> None:
    """At least 300 rows, both parts well filled, unique ids, every scored field labelled (None allowed)."""
    rows = load()
    assert len(rows) >= 300
    assert len({row.id for row in rows}) == len(rows)
    for split in ("dev", "heldout"):
        assert sum(row.split == split for row in rows) >= 150
    assert all(set(SCORED) <= set(row.expected) for row in rows)
    forms = {row.form for row in rows}
    assert {"road_km", "quadra_lote", "conjunto", "rural", "number_joined_by_hyphen"} <= forms


def test_comparison_ignores_case_accents_and_punctuation() -> None:
    """`Zona de Expansão (Aruana)` matches `ZONA DE EXPANSAO ARUANA`; absent matches absent only."""
    assert comparable("Zona de Expansão (Aruana)") == comparable("ZONA DE EXPANSAO ARUANA")
    assert comparable(None) == comparable("") != comparable("Centro")


async def test_rules_get_at_least_95_percent_of_each_field_on_the_dev_part() -> None:
    """Number, bairro, cidade, UF and CEP are each right on >= 95 % of the dev rows."""
    rows = [row for row in load() if row.split == "dev"]
    async with NORMALIZERS["rules"]() as normalize:
        scores = accuracy(rows, await normalize_all(rows, normalize))
    assert {name: scores[name] for name in SCORED} == pytest.approx(
        {name: max(scores[name], 0.95) for name in SCORED}
    )


def test_bench_quality_prints_both_parts_before_and_after(tmp_path: Path) -> None:
    """`python -m bench.quality` runs, prints the table and writes figures for dev and held-out,
    before (the base commit's rules, when git has it) and after."""
    figures_path = tmp_path / "quality.json"
    has_base = (
        subprocess.run(["git", "cat-file", "-e", "2c5b443^{commit}"], cwd=REPO_ROOT, check=False).returncode
        == 0
    )
    args = [] if has_base else ["--no-baseline"]
    completed = subprocess.run(
        [sys.executable, "-m", "bench.quality", *args, "--json", str(figures_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "5 scored fields" in completed.stdout
    figures = json.loads(figures_path.read_text())
    columns = figures["accuracy"]
    expected = (
        {"dev before", "dev after", "heldout before", "heldout after"} if has_base else {"dev", "heldout"}
    )
    assert set(columns) == expected
    for column in columns.values():
        assert all(0.0 <= column[name] <= 1.0 for name in (*SCORED, "fields", "rows"))
    if has_base:
        assert columns["dev after"]["fields"] > columns["dev before"]["fields"]
