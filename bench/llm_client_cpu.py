"""CPU of one LLM call on our side, per HTTP transport of the OpenAI SDK (`OPENAI_HTTP_TRANSPORT`).

`python -m bench.llm_client_cpu [--calls 2000] [--concurrency 32] [--reps 2] [--smoke] [--json PATH]
[--compare parse]`

For each transport (`httpx`, the SDK's default, and `aiohttp`, its `DefaultAioHttpClient`), and each
repetition, alternating: a fresh fake OpenAI server (`tests/fakes/openai_server.py`, no latency),
our `LLMAddressNormalizer` on the worker's event loop (`WORKER_EVENT_LOOP`'s default, uvloop) making
`--calls` calls with `--concurrency` in flight; it measures this process's CPU time per call (the
client's cost), the server's CPU per call (from /proc) and calls/s. Prints the medians and the ratio
aiohttp ÷ httpx of the client's CPU per call (lower is better).

`--compare parse`: instead of the two transports, the two ways of asking on the default transport
(aiohttp): our raw request (`raw`) and the SDK's `chat.completions.parse` with the pydantic model
(`parse`, `bench/llm_parse_call.py`); prints parse ÷ raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import types
from pathlib import Path

from bench.common import cpu_seconds
from bench.llm_parse_call import ask_with_parse
from src.application.services.rules_address_normalizer import RulesAddressNormalizer
from src.config import HttpTransport
from src.infrastructure.llm_address_normalizer import LLMAddressNormalizer, build_openai_client
from src.worker.event_loop import new_event_loop
from tests.fakes.openai_server import run_fake_openai_server

TRANSPORTS: tuple[HttpTransport, ...] = ("httpx", "aiohttp")
CALLS = ("raw", "parse")
WARMUP_CALLS = 50


async def calls(
    url: str, transport: HttpTransport, count: int, concurrency: int, call: str = "raw"
) -> tuple[float, float, int]:
    """(client CPU ms per call, calls/s, answers the LLM path used) for `count` timed calls."""
    client = build_openai_client("bench", f"{url}/v1", 30.0, 2, transport)
    normalizer = LLMAddressNormalizer(client, "bench-model", RulesAddressNormalizer(), concurrency)
    if call == "parse":
        normalizer._ask = types.MethodType(ask_with_parse, normalizer)  # type: ignore[method-assign]
    raws = [f"Rua das Flores {i}, Centro, Sao Paulo - SP, 01001-000" for i in range(count)]
    try:
        await asyncio.gather(*(normalizer.normalize(raw) for raw in raws[:WARMUP_CALLS]))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(normalizer.normalize(raw) for raw in raws))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await client.close()
    return cpu / count * 1000, count / wall, normalizer.counters.llm_used - WARMUP_CALLS


def measure(transport: HttpTransport, count: int, concurrency: int, call: str = "raw") -> dict[str, float]:
    with run_fake_openai_server() as server:
        before = cpu_seconds(server.process.pid)
        loop = new_event_loop("uvloop")
        try:
            client_ms, rate, used = loop.run_until_complete(
                calls(server.url, transport, count, concurrency, call)
            )
        finally:
            loop.close()
        server_ms = (cpu_seconds(server.process.pid) - before) / (count + WARMUP_CALLS) * 1000
    if used != count:
        raise RuntimeError(f"{transport}: {used} of {count} calls answered by the LLM path")
    return {"client_cpu_ms": client_ms, "server_cpu_ms": server_ms, "calls_per_s": rate}


def describe(figures: dict[str, float]) -> str:
    return (
        f"client {figures['client_cpu_ms']:.2f} ms CPU/call, server {figures['server_cpu_ms']:.2f} ms/call, "
        f"{figures['calls_per_s']:.0f} calls/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="100 calls, 1 repetition")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare", choices=("transports", "parse"), default="transports")
    args = parser.parse_args(argv)
    count, reps = (100, 1) if args.smoke else (args.calls, args.reps)
    variants: dict[str, tuple[HttpTransport, str]] = (
        {t: (t, "raw") for t in TRANSPORTS}
        if args.compare == "transports"
        else {c: ("aiohttp", c) for c in CALLS}
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for rep in range(reps):
        for name, (transport, call) in variants.items():
            figures = measure(transport, count, args.concurrency, call)
            runs[name].append(figures)
            print(f"  rep {rep + 1} {name:8s} " + describe(figures), flush=True)
    medians = {n: {k: statistics.median(r[k] for r in runs[n]) for k in runs[n][0]} for n in variants}
    base, other = list(variants)
    ratio = medians[other]["client_cpu_ms"] / medians[base]["client_cpu_ms"]
    print(f"client CPU per call, medians: {base} {medians[base]['client_cpu_ms']:.2f} ms, "
          f"{other} {medians[other]['client_cpu_ms']:.2f} ms; {other} / {base} {ratio:.2f}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"calls": count, "runs": runs, "medians": medians, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
