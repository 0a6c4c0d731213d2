"""What a Redis pool checkout costs: the pool `create_redis_pool` builds against redis-py's stock
`BlockingConnectionPool`, and against the same at another commit.

`python -m bench.pool_checkout [--rounds 7] [--baseline-ref COMMIT]`

Every round is one fresh process per code tree (this checkout, and with `--baseline-ref` the
commit's code in a temporary git worktree, alternating which goes first), all on one redis-server.
In each process, for each pool (50 connections, as `REDIS_MAX_CONNECTIONS`; their order alternating
between rounds), it times:

- `checkout`: `get_connection()` + `release()` of a connected connection, nothing sent;
- `ping`: one `PING` through `Redis(connection_pool=pool)`, one caller (a command's round trip);
- `ping-200`: 200 tasks sending `PING`s over the pool's 50 connections (callers queue for one).

Prints µs per operation, the median over rounds with the min–max, and "project ÷ stock", the pool's
cost against the stock pool measured in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

ROOT = Path(__file__).resolve().parent.parent
MAX_CONNECTIONS = 50
CHECKOUTS = 20_000
PINGS = 4_000
CALLERS = 200
SCENARIOS = ("checkout", "ping", "ping-200")


def stock_pool(url: str) -> ConnectionPool:
    return BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=10)


def project_pool(url: str) -> ConnectionPool:
    from bench.common import bench_settings  # the tree this process runs in
    from src.infrastructure.redis_pool import create_redis_pool

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(url, Path(tmp), redis_max_connections=MAX_CONNECTIONS)
    pool: ConnectionPool = create_redis_pool(settings).connection_pool
    return pool


POOLS: dict[str, Callable[[str], ConnectionPool]] = {"stock": stock_pool, "project": project_pool}


async def per_op_us(operation: Callable[[], Awaitable[Any]], count: int) -> float:
    for _ in range(count // 10):  # warm up
        await operation()
    started = time.perf_counter()
    for _ in range(count):
        await operation()
    return 1e6 * (time.perf_counter() - started) / count


async def measure_pool(pool: ConnectionPool) -> dict[str, float]:
    client = Redis(connection_pool=pool)
    try:
        await client.ping()  # one connected connection

        async def checkout() -> None:
            await pool.release(await pool.get_connection())

        figures = {"checkout": await per_op_us(checkout, CHECKOUTS)}
        figures["ping"] = await per_op_us(client.ping, PINGS)

        async def caller() -> None:
            for _ in range(PINGS // CALLERS * 5):
                await client.ping()

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        figures["ping-200"] = 1e6 * (time.perf_counter() - started) / (PINGS * 5)
        return figures
    finally:
        await client.aclose(close_connection_pool=True)


async def measure(url: str, reverse: bool) -> dict[str, dict[str, float]]:
    """One round in this process: every pool in turn, in the given order (the second runs warmer)."""
    order = list(POOLS.items())
    return {name: await measure_pool(build(url)) for name, build in (order[::-1] if reverse else order)}


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """`ref`'s code in a temporary git worktree, with this script copied in (it may predate it)."""
    path = Path(tempfile.mkdtemp(prefix="bench-pool-")) / "tree"
    add = ["git", "worktree", "add", "--detach", str(path), ref]
    subprocess.run(add, cwd=ROOT, check=True, capture_output=True)
    try:
        shutil.copy(Path(__file__), path / "bench" / "pool_checkout.py")
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
        shutil.rmtree(path.parent, ignore_errors=True)


def run_round(tree: Path, url: str, reverse: bool) -> dict[str, dict[str, float]]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.pool_checkout", "--measure", url, *(["--reverse"] if reverse else [])],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, dict[str, float]] = json.loads(output.splitlines()[-1])
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.1f}–{max(values):.1f})"


def report(runs: dict[str, list[dict[str, dict[str, float]]]]) -> None:
    print(f"µs per operation, median (min–max) of {len(next(iter(runs.values())))} rounds")
    for tree, rounds in runs.items():
        for scenario in SCENARIOS:
            stock = [r["stock"][scenario] for r in rounds]
            project = [r["project"][scenario] for r in rounds]
            ratios = [p / s for p, s in zip(project, stock, strict=True)]
            print(
                f"{tree:>10} {scenario:>9}: stock {spread(stock)}  project {spread(project)}  "
                f"project ÷ stock {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline-ref", help="also measure this commit's pool (a git worktree)")
    parser.add_argument("--measure", metavar="REDIS_URL", help=argparse.SUPPRESS)  # one round, JSON out
    parser.add_argument("--reverse", action="store_true", help=argparse.SUPPRESS)  # its pools' order
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure, args.reverse))))
        return 0
    from bench.common import redis_server

    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as server:
        with worktree(args.baseline_ref) if args.baseline_ref else _no_tree() as baseline:
            trees = {"this": ROOT} | ({args.baseline_ref[:10]: baseline} if baseline else {})
            runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in trees}
            for n in range(args.rounds):
                order = list(trees.items())
                for name, tree in order if n % 2 == 0 else reversed(order):
                    runs[name].append(run_round(tree, server.url, reverse=n % 4 >= 2))
            report(runs)
    return 0


@contextmanager
def _no_tree() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    raise SystemExit(main())
