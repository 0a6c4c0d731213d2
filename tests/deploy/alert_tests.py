"""The unit tests of deploy/prometheus/alerts.yml for `promtool test rules`, made from one table of
series fixtures: for every rule, series under which it fires and series under which it stays quiet.
The expected annotations are rendered from the rules themselves, so the table holds no copy of them.

    .venv/bin/python -m tests.deploy.alert_tests > deploy/prometheus/alerts.test.yml
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


@dataclass(frozen=True)
class Case:
    rule: str
    series: dict[str, str]  # series → promtool values (`0x10`, `1 1 0`, `0+5x20`)
    eval_time: str
    fires: bool
    labels: dict[str, str] = field(default_factory=dict)  # the expression's output labels
    value: str = ""  # `$value` in the annotations, as Prometheus renders it


def health(check: str, values: str) -> dict[str, str]:
    return {f'clinic_health{{check="{check}"}}': values}


RUNS = (
    'clinic_task_runs_total{{task="normalize_appointment",outcome="{outcome}",category="{category}",'
    'worker="{worker}"}}'
)
CASES = [
    Case("WorkerLost", {'clinic_workers_lost{queue="normalization"}': "0 1 1"}, "2m", True,
         {"queue": "normalization"}, "1"),
    Case("WorkerLost", {'clinic_workers_lost{queue="normalization"}': "0 0 0"}, "2m", False),
    Case("NobodyConsuming", health("consumers", "0x5"), "3m", True),
    Case("NobodyConsuming", health("consumers", "1x5"), "3m", False),
    Case("NoMaintenanceWorker", health("maintenance", "0x10"), "6m", True),
    Case("NoMaintenanceWorker", health("maintenance", "1x10"), "6m", False),
    Case("RedisRefusesWrites", health("redis", "0x5"), "2m", True),
    Case("RedisRefusesWrites", health("redis", "1x5"), "2m", False),
    Case("StoreDown", health("store", "0x5"), "2m", True),
    Case("StoreDown", health("store", "1x5"), "2m", False),
    Case("LLMDegraded", health("llm", "0x10"), "6m", True),
    Case("LLMDegraded", health("llm", "1 1 1 0 0 1 1 0 0 0 1"), "10m", False),  # flapping: never 5 min
    Case("JobsStuck", health("stuck-jobs", "0x10"), "6m", True),
    Case("JobsStuck", health("stuck-jobs", "1x10"), "6m", False),
    Case("ForeignConsumerOnQueue", {'clinic_alarm_jobs{kind="foreign_consumer"}': "0 3"}, "1m", True,
         {}, "3"),
    Case("ForeignConsumerOnQueue", {'clinic_alarm_jobs{kind="foreign_consumer"}': "0 0"}, "1m", False),
    Case("JobQuarantined", {'clinic_alarm_jobs{kind="quarantined"}': "0 1"}, "1m", True, {}, "1"),
    Case("JobQuarantined", {'clinic_alarm_jobs{kind="quarantined"}': "0 0"}, "1m", False),
    Case("FencedOrMismatchedWorker",
         {'clinic_workers{queue="normalization",version="old",state="fenced"}': "1x5"}, "3m", True),
    Case("FencedOrMismatchedWorker",
         {'clinic_workers{queue="normalization",version="new",state="ok"}': "1x5"}, "3m", False),
    Case("QueueTooLong", {'clinic_queue_depth{queue="normalization",state="ready"}': "150x15"}, "11m", True,
         {"queue": "normalization"}),
    Case("QueueTooLong", {'clinic_queue_depth{queue="normalization",state="ready"}': "50x15"}, "11m", False),
    Case("HighErrorRate", {
        RUNS.format(outcome="failed", category="permanent", worker="w1"): "0+5x25",
        RUNS.format(outcome="succeeded", category="", worker="w1"): "0+5x25",
    }, "20m", True),
    # a worker dies (its series end) and another takes over: not a counter reset, no false alarm
    Case("HighErrorRate", {
        RUNS.format(outcome="succeeded", category="", worker="w1"): "0+10x12 _x13",
        RUNS.format(outcome="failed", category="permanent", worker="w1"): "0x12 _x13",
        RUNS.format(outcome="succeeded", category="", worker="w2"): "_x12 0+10x13",
    }, "20m", False),
    Case("WorkerMemoryHigh", {'clinic_worker_rss_bytes{worker="w1"}': "1000000000x15"}, "11m", True,
         {"worker": "w1"}),
    Case("WorkerMemoryHigh", {'clinic_worker_rss_bytes{worker="w1"}': "500000000x15"}, "11m", False),
]  # fmt: skip


def rules() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for group in loaded["groups"] for r in group["rules"]}


def render(template: str, case: Case) -> str:
    """The annotation as Prometheus renders it for `case` ($value and $labels only)."""
    text = template.replace("{{ $value }}", case.value)
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: case.labels[m.group(1)], text)


def document() -> dict[str, Any]:
    by_name = rules()
    tests = []
    for case in CASES:
        rule = by_name[case.rule]
        expected = []
        if case.fires:
            expected.append({
                "exp_labels": {**rule.get("labels", {}), **case.labels},
                "exp_annotations": {k: render(v, case) for k, v in rule.get("annotations", {}).items()},
            })  # fmt: skip
        tests.append({
            "name": f"{case.rule} {'fires' if case.fires else 'stays quiet'}",
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
            "alert_rule_test": [
                {"eval_time": case.eval_time, "alertname": case.rule, "exp_alerts": expected}
            ],
        })  # fmt: skip
    return {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}


def text() -> str:
    header = (
        "# Generated by `python -m tests.deploy.alert_tests`: run `promtool test rules alerts.test.yml`.\n"
    )
    return header + yaml.safe_dump(document(), sort_keys=False, width=200, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(text())
