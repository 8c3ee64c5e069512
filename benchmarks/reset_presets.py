"""What each ``reset=`` preset costs, side by side in one run.

For every driver, a pool of P = 5 connections and W workers (``SELECT 1``,
borrow and return each time) is measured with ``reset="rollback"`` (the
default), ``"session"`` and ``"discard"``, taking turns round after round
against the same server; the report gives each preset's median throughput and
its ratio to ``"rollback"``. What each preset undoes (and so what the others
leave behind for the next borrower) is in docs/pool.md; this measures the
price:

    python -m benchmarks.reset_presets [--rounds 3] [--duration 1.5] [--workers 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from pgharbor import AsyncPool, Pool
from pgharbor.testing import PostgresServer

from ._harness import run_async_pool, run_sync_pool
from ._workloads import async_query, sync_query

PRESETS = ("rollback", "session", "discard")
CASES = [("async", "psycopg"), ("async", "asyncpg"), ("sync", "psycopg"), ("sync", "psycopg2")]


def _sync(conninfo: str, driver: str, reset: Any, workers: int, duration: float) -> float:
    with Pool(conninfo, driver=driver, min_size=5, max_size=5, reset=reset) as pool:
        sample = run_sync_pool(
            pool.connection, sync_query(driver, "select1"), workers, 0.3, duration
        )
    return sample.rate


async def _async(conninfo: str, driver: str, reset: Any, workers: int, duration: float) -> float:
    async with AsyncPool(conninfo, driver=driver, min_size=5, max_size=5, reset=reset) as pool:
        sample = await run_async_pool(
            pool.connection, async_query(driver, "select1"), workers, 0.3, duration
        )
    return sample.rate


def main(argv: list[str] | None = None) -> None:
    """Run every case and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.5)
    parser.add_argument("--workers", type=int, default=5)
    args = parser.parse_args(argv)
    rates: dict[tuple[str, str, str], list[float]] = {}
    with PostgresServer(settings={"max_connections": 100}) as pg:
        conninfo = pg.conninfo(application_name="bench-reset")
        for _ in range(args.rounds):
            for flavour, driver in CASES:
                for reset in PRESETS:
                    if flavour == "async":
                        rate = asyncio.run(
                            _async(conninfo, driver, reset, args.workers, args.duration)
                        )
                    else:
                        rate = _sync(conninfo, driver, reset, args.workers, args.duration)
                    rates.setdefault((flavour, driver, reset), []).append(rate)
    print(f"P = 5, W = {args.workers}, SELECT 1; median of {args.rounds} rounds (ops/s)\n")
    print("| pool | " + " | ".join(PRESETS) + " | session / rollback | discard / rollback |")
    print("|---|" + "---|" * (len(PRESETS) + 2))
    for flavour, driver in CASES:
        med: dict[str, Any] = {r: statistics.median(rates[(flavour, driver, r)]) for r in PRESETS}
        name = f"{'AsyncPool' if flavour == 'async' else 'Pool'} {driver}"
        cells = " | ".join(f"{med[r]:,.0f}" for r in PRESETS)
        print(
            f"| {name} | {cells} | {med['session'] / med['rollback']:.2f} "
            f"| {med['discard'] / med['rollback']:.2f} |"
        )


if __name__ == "__main__":
    main()
