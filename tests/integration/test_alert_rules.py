"""deploy/prometheus/alerts.yml is valid for promtool and only uses metrics the API exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunBurstWorker
from tests.deploy import alert_tests
from tests.support.debian import ensure_debian_binary

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def test_promtool_accepts_the_alert_rules() -> None:
    """`promtool check rules` (Debian's prometheus package) passes on the shipped rules."""
    promtool = ensure_debian_binary("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_tests.rules())} rules found" in result.stdout


def test_every_rule_fires_on_its_fixture_and_stays_quiet_when_healthy() -> None:
    """`promtool test rules` on the shipped fixtures: each rule fires under the series of its fault
    and stays quiet under healthy ones (a dead worker's counters included); the fixtures file is the
    one `tests/deploy/alert_tests.py` generates."""
    promtool = ensure_debian_binary("promtool", "prometheus")
    shipped = RULES.parent / "alerts.test.yml"
    assert shipped.read_text() == alert_tests.text(), (
        "regenerate: .venv/bin/python -m tests.deploy.alert_tests > deploy/prometheus/alerts.test.yml"
    )
    covered = {(case.rule, case.fires) for case in alert_tests.CASES}
    assert covered == {(rule, fires) for rule in alert_tests.rules() for fires in (True, False)}
    result = subprocess.run(
        [promtool, "test", "rules", shipped.name],
        cwd=shipped.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


async def test_every_metric_in_the_rules_is_exported(
    api: httpx.AsyncClient, run_burst_worker: RunBurstWorker
) -> None:
    """Each clinic_* metric an alert uses appears in a real scrape of /metrics."""
    await api.post(
        "/api/v1/appointments",
        json={
            "paciente": "A",
            "documento": "52998224725",
            "endereco": "Rua A 1",
            "data_hora": "2026-12-01T10:00:00Z",
        },
    )
    used = set(re.findall(r"\b(clinic_[a-z_]+)", RULES.read_text()))
    exported = (await api.get("/metrics")).text
    families = set(re.findall(r"^# TYPE (clinic_[a-z_]+) ", exported, flags=re.MULTILINE))
    counters = {f"{name}_total" for name in families}
    missing = {m for m in used if m not in families and m not in counters}
    assert not missing, f"alerts use metrics /metrics does not export: {sorted(missing)}"
