"""Prometheus metrics for the whole fleet from one scrape of the API.

Nothing is kept in this process: every scrape reads the queues, the ledger counts, the worker
registry (each worker publishes its counters and histograms with its heartbeat) and the health
model, and renders them. Task counters carry a `worker` label: a worker's series ends when it dies,
which `rate()` reads as the end of a series, never as a counter reset of a fleet-wide sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from src.application.services.alarms import ALARM_KINDS
from src.application.services.health import Health, Level
from src.application.services.queue_admin import QueueInfo
from src.domain.jobs import JobCount
from src.domain.workers import BreakerState, Histogram, WorkerRecord


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    running, out = 0, []
    for bound, count in zip([*h.bounds, float("inf")], h.counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
    return out


class FleetSnapshot(Collector):
    """A one-shot collector over data already read for this scrape."""

    def __init__(
        self,
        queues: list[QueueInfo],
        counts: list[JobCount],
        workers: list[WorkerRecord],
        health: Health | None = None,
    ) -> None:
        self.queues, self.counts, self.workers, self.health = queues, counts, workers, health

    def collect(self) -> Iterator[Metric]:
        yield from self._health()
        yield from self._queues()
        yield from self._ledger()
        yield from self._alarms()
        yield from self._workers()
        yield from self._tasks()
        yield from self._llm()

    def _queues(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "clinic_queue_depth", "Jobs waiting on the queue", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "clinic_queue_oldest_age_seconds", "Age of the oldest ready job", labels=["queue"]
        )
        for q in self.queues:
            depth.add_metric([q.name, "ready"], q.length)
            depth.add_metric([q.name, "deferred"], q.deferred)
            oldest.add_metric([q.name], q.oldest_queued_age_s or 0.0)
        return [depth, oldest]

    def _ledger(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "clinic_jobs",
            "Ledger records by queue, status and error category",
            labels=["queue", "status", "category"],
        )
        for c in self.counts:
            jobs.add_metric(
                [c.queue, c.status.value, c.error_category.value if c.error_category else ""], c.count
            )
        return [jobs]

    def _health(self) -> Iterable[Metric]:
        """Each check of the health model (1 ok, 0 not), and the overall status (0 ok, 1 degraded,
        2 down): the alert rules read these, as /api/v1/queue/health and doctor do."""
        if self.health is None:
            return []
        checks = GaugeMetricFamily(
            "clinic_health", "Health model checks: 1 ok, 0 degraded or down", labels=["check"]
        )
        for check in self.health.checks:
            checks.add_metric([check.name], 1.0 if check.level is Level.OK else 0.0)
        status = GaugeMetricFamily("clinic_health_status", "Health model status: 0 ok, 1 degraded, 2 down")
        status.add_metric([], float(list(Level).index(self.health.status)))
        return [checks, status]

    def _alarms(self) -> Iterable[Metric]:
        """Jobs of each alarm kind in the last hour: every kind is always exported (0 when quiet), so
        an alert can compare against it without `absent()`."""
        alarms = GaugeMetricFamily(
            "clinic_alarm_jobs",
            "Jobs taken by a consumer outside the fleet, quarantined, or failed by timeout in the last hour",
            labels=["kind"],
        )
        found = {a.kind: a.count for a in (self.health.alarms if self.health else [])}
        for kind in ALARM_KINDS:
            alarms.add_metric([kind.value], found.get(kind, 0))
        return [alarms]

    def _workers(self) -> Iterable[Metric]:
        live = GaugeMetricFamily(
            "clinic_workers", "Live workers by queue, version and state", labels=["queue", "version", "state"]
        )
        grouped: dict[tuple[str, str, str], int] = {(q.name, "", "ok"): 0 for q in self.queues}
        for w in self.workers:
            key = (_queue(w.queue), w.version, w.state.value)
            grouped[key] = grouped.get(key, 0) + 1
        for (queue, version, state), n in sorted(grouped.items()):
            if n or not version:  # every queue has an ok series, 0 when nobody consumes it
                live.add_metric([queue, version, state], n)
        lost = GaugeMetricFamily(
            "clinic_workers_lost",
            "Workers that stopped beating without a clean stop in the last 10 minutes",
            labels=["queue"],
        )
        counted = {q.name: 0 for q in self.queues}
        for gone in self.health.lost_workers if self.health else []:
            queue = _queue(gone.queue or "unknown")
            counted[queue] = counted.get(queue, 0) + 1
        for queue, n in sorted(counted.items()):
            lost.add_metric([queue], n)
        age = GaugeMetricFamily(
            "clinic_worker_heartbeat_age_seconds", "Seconds since a worker's beat", labels=["worker"]
        )
        in_progress = GaugeMetricFamily(
            "clinic_jobs_in_progress", "Jobs running on a worker", labels=["worker"]
        )
        rss = GaugeMetricFamily("clinic_worker_rss_bytes", "Resident memory of a worker", labels=["worker"])
        now = datetime.now(UTC)
        for w in self.workers:
            age.add_metric([w.worker_id], (now - w.last_beat_at).total_seconds())
            in_progress.add_metric([w.worker_id], len(w.current_jobs))
            rss.add_metric([w.worker_id], (w.rss_mb or 0) * 1_048_576)
        return [live, lost, age, in_progress, rss]

    def _tasks(self) -> Iterable[Metric]:
        done = CounterMetricFamily(
            "clinic_task_runs", "Job runs by task, outcome and worker (since that worker started)",
            labels=["task", "outcome", "category", "worker"],
        )  # fmt: skip
        duration = HistogramMetricFamily("clinic_task_duration_seconds", "Job run duration", labels=["task"])
        merged: dict[str, Histogram] = {}
        for w in self.workers:
            for task, s in sorted(w.task_stats.items()):
                for outcome, n in (
                    ("succeeded", s.succeeded),
                    ("retried", s.retried),
                    ("interrupted", s.interrupted),
                ):
                    done.add_metric([task, outcome, "", w.worker_id], n)
                for category, n in sorted(s.failed.items()):
                    done.add_metric([task, "failed", category, w.worker_id], n)
                merged[task] = _merge(merged.get(task), s.duration_s)
        for task, h in sorted(merged.items()):
            duration.add_metric([task], _buckets(h), h.total)
        return [done, duration]

    def _llm(self) -> Iterable[Metric]:
        calls = CounterMetricFamily(
            "clinic_llm_calls", "Address normalizations asked of the LLM", labels=["result"]
        )
        latency = HistogramMetricFamily("clinic_llm_latency_seconds", "LLM request latency", labels=[])
        in_flight = GaugeMetricFamily("clinic_llm_in_flight", "LLM requests in flight", labels=["worker"])
        breaker = GaugeMetricFamily(
            "clinic_llm_breaker_state",
            "A worker's LLM circuit breaker: 0 closed, 1 half open (probing), 2 open (rules answer at once)",
            labels=["worker"],
        )
        opened = CounterMetricFamily(
            "clinic_llm_breaker_opened",
            "Times a worker's LLM circuit opened (since it started)",
            labels=["worker"],
        )
        used, merged = 0, None
        fallbacks: dict[str, int] = {}
        for w in self.workers:
            if w.llm is None:
                continue
            used += w.llm.llm_used
            for reason, n in w.llm.fallbacks.items():
                fallbacks[reason] = fallbacks.get(reason, 0) + n
            merged = _merge(merged, w.llm.latency_s)
            in_flight.add_metric([w.worker_id], w.llm.in_flight)
            breaker.add_metric([w.worker_id], float(list(BreakerState).index(w.llm.breaker)))
            opened.add_metric([w.worker_id], w.llm.breaker_opened)
        calls.add_metric(["used"], used)
        for reason, n in sorted(fallbacks.items()):
            calls.add_metric([f"fallback:{reason}"], n)
        if merged is not None:
            latency.add_metric([], _buckets(merged), merged.total)
        return [calls, latency, in_flight, breaker, opened]


def _queue(key: str) -> str:
    """`jobs:v1:normalization` → `normalization`: the queue label."""
    return key.rpartition(":")[2]


def _merge(a: Histogram | None, b: Histogram) -> Histogram:
    if a is None:
        return b.model_copy(deep=True)
    return Histogram(
        bounds=a.bounds, counts=[x + y for x, y in zip(a.counts, b.counts, strict=True)],
        total=a.total + b.total, count=a.count + b.count,
    )  # fmt: skip
