"""Prometheus metrics for the whole fleet from one scrape of the API.

Nothing is kept in this process: every scrape reads the queues, the ledger counts and the worker
registry (each worker publishes its counters and histograms with its heartbeat) and renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from src.application.services.alarms import ALARM_KINDS, Alarm
from src.application.services.queue_admin import QueueInfo
from src.domain.jobs import JobCount
from src.domain.workers import Histogram, WorkerRecord


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
        alarms: list[Alarm] | None = None,
    ) -> None:
        self.queues, self.counts, self.workers, self.alarms = queues, counts, workers, alarms or []

    def collect(self) -> Iterator[Metric]:
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
                [c.queue.value, c.status.value, c.error_category.value if c.error_category else ""], c.count
            )
        return [jobs]

    def _alarms(self) -> Iterable[Metric]:
        """Jobs of each alarm kind in the last hour: every kind is always exported (0 when quiet), so
        an alert can compare against it without `absent()`."""
        alarms = GaugeMetricFamily(
            "clinic_alarm_jobs",
            "Jobs taken by a consumer outside the fleet, quarantined, or failed by timeout in the last hour",
            labels=["kind"],
        )
        found = {a.kind: a.count for a in self.alarms}
        for kind in ALARM_KINDS:
            alarms.add_metric([kind.value], found.get(kind, 0))
        return [alarms]

    def _workers(self) -> Iterable[Metric]:
        live = GaugeMetricFamily(
            "clinic_workers", "Live workers by version and state", labels=["version", "state"]
        )
        grouped: dict[tuple[str, str], int] = {}
        for w in self.workers:
            grouped[(w.version, w.state.value)] = grouped.get((w.version, w.state.value), 0) + 1
        for (version, state), n in sorted(grouped.items()):
            live.add_metric([version, state], n)
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
        return [live, age, in_progress, rss]

    def _tasks(self) -> Iterable[Metric]:
        done = CounterMetricFamily(
            "clinic_task_runs", "Job runs by task and outcome (live workers, since their start)",
            labels=["task", "outcome", "category"],
        )  # fmt: skip
        duration = HistogramMetricFamily("clinic_task_duration_seconds", "Job run duration", labels=["task"])
        totals: dict[tuple[str, str, str], int] = {}
        merged: dict[str, Histogram] = {}
        for w in self.workers:
            for task, s in w.task_stats.items():
                for key, n in (((task, "succeeded", ""), s.succeeded), ((task, "retried", ""), s.retried),
                               ((task, "interrupted", ""), s.interrupted)):  # fmt: skip
                    totals[key] = totals.get(key, 0) + n
                for category, n in s.failed.items():
                    totals[(task, "failed", category)] = totals.get((task, "failed", category), 0) + n
                merged[task] = _merge(merged.get(task), s.duration_s)
        for labels, n in sorted(totals.items()):
            done.add_metric(list(labels), n)
        for task, h in sorted(merged.items()):
            duration.add_metric([task], _buckets(h), h.total)
        return [done, duration]

    def _llm(self) -> Iterable[Metric]:
        calls = CounterMetricFamily(
            "clinic_llm_calls", "Address normalizations asked of the LLM", labels=["result"]
        )
        latency = HistogramMetricFamily("clinic_llm_latency_seconds", "LLM request latency", labels=[])
        in_flight = GaugeMetricFamily("clinic_llm_in_flight", "LLM requests in flight", labels=["worker"])
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
        calls.add_metric(["used"], used)
        for reason, n in sorted(fallbacks.items()):
            calls.add_metric([f"fallback:{reason}"], n)
        if merged is not None:
            latency.add_metric([], _buckets(merged), merged.total)
        return [calls, latency, in_flight]


def _merge(a: Histogram | None, b: Histogram) -> Histogram:
    if a is None:
        return b.model_copy(deep=True)
    return Histogram(
        bounds=a.bounds, counts=[x + y for x, y in zip(a.counts, b.counts, strict=True)],
        total=a.total + b.total, count=a.count + b.count,
    )  # fmt: skip
