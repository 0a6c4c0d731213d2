"""What an LLM outage writes to a worker's log: warning lines and requests to the failing server.

`python -m bench.llm_outage_log [--rows 5000] [--window-s 10]`

Starts a private redis-server, the API and one worker in LLM mode (`ARQ_MAX_JOBS` 40, the other
settings at their defaults) against the fake OpenAI server answering 500 to every call, imports
`--rows` rows, and after `--window-s` seconds from the import's start counts the worker's log lines
by level, its warning and error lines by event, and the requests the fake server received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.fakes.openai_server import run_fake_openai_server
from tests.fault.harness import Cluster


async def outage(rows: int, window_s: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-llm-outage-") as tmp:
        cluster = await Cluster.start(Path(tmp))
        try:
            with run_fake_openai_server("--status-code", "500") as fake:
                await cluster.start_api()
                env = {"OPENAI_BASE_URL": fake.base_url, "ARQ_MAX_JOBS": "40"}
                worker = await cluster.start_worker("worker", env=env)
                started = time.monotonic()
                await cluster.import_csv(rows)
                await asyncio.sleep(max(0.0, window_s - (time.monotonic() - started)))
                levels: Counter[str] = Counter()
                loud: Counter[str] = Counter()
                for line in worker.log_text().splitlines():
                    if not line.startswith("{"):
                        continue
                    entry = json.loads(line)
                    levels[entry.get("level", "?")] += 1
                    if entry.get("level") in ("warning", "error"):
                        loud[entry.get("event", "?")] += 1
                return {
                    "levels": dict(levels),
                    "warning_events": dict(loud),
                    "requests": fake.stats()["requests_total"],
                }
        finally:
            await cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--window-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    figures = asyncio.run(outage(args.rows, args.window_s))
    print(f"first {args.window_s:g} s of an LLM outage (500 on every call), {args.rows}-row import:")
    print(f"  worker log lines by level: {figures['levels']}")
    print(f"  warning and error lines by event: {figures['warning_events']}")
    print(f"  requests to the failing server: {figures['requests']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
