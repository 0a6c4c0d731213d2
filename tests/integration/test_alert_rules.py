"""deploy/prometheus/alerts.yml is valid for promtool and only uses metrics the API exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import RunBurstWorker
from tests.deploy import alert_tests
from tests.support.debian import ensure_debian_binary

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"


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
    exported = await exported_series(api)
    used = set(re.findall(r"\b(clinic_[a-z_]+)", RULES.read_text()))
    missing = used - exported
    assert not missing, f"alerts use metrics /metrics does not export: {sorted(missing)}"


async def exported_series(api: httpx.AsyncClient) -> set[str]:
    """Every series name a scrape of /metrics can hold: families, and their _total, _bucket, _sum
    and _count series."""
    text = (await api.get("/metrics")).text
    families = set(re.findall(r"^# TYPE (clinic_[a-z_]+) ", text, flags=re.MULTILINE))
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    return {f"{name}{suffix}" for name in families for suffix in suffixes}


async def test_the_grafana_dashboard_loads_and_names_only_exported_metrics(api: httpx.AsyncClient) -> None:
    """deploy/grafana: the dashboard is valid JSON with panels that each query something, every metric
    it names is one /metrics exports, and the provisioning files point Grafana at it."""
    dashboard = json.loads(GRAFANA.joinpath("dashboards", "clinic-normalization.json").read_text())
    assert dashboard["uid"] == "clinic-normalization" and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert all(p["targets"] for p in panels) and all(exprs)
    used = {m for e in exprs for m in re.findall(r"\b(clinic_[a-z_]+)", e)}
    missing = used - await exported_series(api)
    assert not missing, f"the dashboard queries metrics /metrics does not export: {sorted(missing)}"
    assert {"clinic_health", "clinic_workers_lost", "clinic_task_runs_total"} <= used
    provider = yaml.safe_load(GRAFANA.joinpath("provisioning", "dashboards", "clinic.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    source = yaml.safe_load(GRAFANA.joinpath("provisioning", "datasources", "prometheus.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"


def test_the_alertmanager_example_is_valid_and_routes_to_email_and_a_webhook() -> None:
    """`amtool check-config` (Debian's prometheus-alertmanager) accepts the example; critical alerts
    go to e-mail and the chat webhook, the others to the webhook."""
    amtool = ensure_debian_binary("amtool", "prometheus-alertmanager")
    example = RULES.parent / "alertmanager.example.yml"
    result = subprocess.run(
        [amtool, "check-config", str(example)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    config = yaml.safe_load(example.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    critical = next(r for r in config["route"]["routes"] if 'severity="critical"' in r["matchers"])
    assert {"email_configs", "slack_configs"} <= set(receivers[critical["receiver"]])
    assert "slack_configs" in receivers[config["route"]["receiver"]]
