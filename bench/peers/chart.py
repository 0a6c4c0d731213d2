"""The PNG of a bench/compare.py run: no-op and 50 ms I/O jobs/s per lib (grouped bars) and latency p50.

Run with the peers venv's python (matplotlib lives there, not in the project's .venv):

    PYTHON chart.py --json FIGURES.json --out CHART.png

Both panels use a log scale: the figures span RQ's tens of jobs/s to thousands.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402


def value(results: dict[str, Any], lib: str, scenario: str, name: str) -> float:
    v = results.get(lib, {}).get(scenario, {}).get(name)
    return float(v) if isinstance(v, int | float) else 0.0


def log_floor(values: list[float]) -> float:
    """A decade under the smallest bar, so a log axis does not zoom into a narrow range."""
    positive = [v for v in values if v > 0]
    return 10 ** math.floor(math.log10(min(positive))) if positive else 1.0


def label(ax: Any, xs: list[float], values: list[float], digits: int) -> None:
    for x, v in zip(xs, values, strict=True):
        if v > 0:
            ax.annotate(f"{v:,.{digits}f}", (x, v), ha="center", va="bottom", fontsize=7)


def draw(figures: dict[str, Any], out: Path) -> None:
    results: dict[str, Any] = figures["results"]
    libs = [lib for lib in figures["config"]["libs"] if lib in results]
    fig, (bars, lat) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]})
    x = list(range(len(libs)))
    width = 0.4
    noop = [value(results, lib, "noop", "jobs_per_s") for lib in libs]
    io50 = [value(results, lib, "io50", "jobs_per_s") for lib in libs]
    left, right = [i - width / 2 for i in x], [i + width / 2 for i in x]
    bars.bar(left, noop, width, label="no-op", color="tab:blue")
    bars.bar(right, io50, width, label="50 ms I/O", color="tab:orange")
    label(bars, left, noop, 0)
    label(bars, right, io50, 0)
    bars.set_xticks(x, libs, rotation=30, ha="right")
    bars.set_yscale("log")
    bars.set_ylim(bottom=log_floor(noop + io50))
    bars.set_ylabel("jobs/s (log)")
    bars.set_title("Throughput, one worker process")
    bars.legend()
    p50 = [value(results, lib, "latency", "p50_ms") for lib in libs]
    lat.bar(x, p50, 0.6, color=["tab:red" if lib == "ours" else "tab:green" for lib in libs])
    label(lat, [float(i) for i in x], p50, 1)
    lat.set_xticks(x, libs, rotation=30, ha="right")
    lat.set_yscale("log")
    lat.set_ylim(bottom=log_floor(p50))
    lat.set_ylabel("ms (log)")
    lat.set_title("Latency p50, enqueue -> result")
    reps = figures["config"].get("reps")
    fig.suptitle(f"bench/compare.py: medians over {reps} rep(s), {figures['machine'].get('cpus')} CPUs")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    draw(json.loads(args.json.read_text()), args.out)


if __name__ == "__main__":
    main()
