"""What the Prometheus sink costs per operation, measured as client CPU time.

Throughput on a shared 2-core machine swings ±10 % between rounds, more than
the cost being measured, so this measures the client process's own CPU time
per ``acquire → SELECT 1 → release`` (``time.process_time``), alternating
"sink off" and "sink on" for several rounds on one server, and reports the
median of each and their ratio. Usage::

    python -m benchmarks.experiments.metrics_cost [--driver asyncpg] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from prometheus_client import CollectorRegistry

from pgharbor import AsyncPool
from pgharbor.metrics.prometheus import PrometheusSink
from pgharbor.testing import PostgresServer

P = 5


async def _run(conninfo: str, driver: str, workers: int, ops: int, sink: bool) -> float:
    """CPU seconds per operation for ``ops`` operations by ``workers`` tasks."""
    metrics = PrometheusSink(CollectorRegistry()) if sink else None
    async with AsyncPool(conninfo, driver=driver, min_size=P, max_size=P, metrics=metrics) as pool:
        remaining = ops

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with pool.connection() as conn:
                    if driver == "asyncpg":
                        await conn.fetchval("SELECT 1")
                    else:
                        await conn.execute("SELECT 1")

        # Warm up, then measure.
        remaining = ops // 10
        await asyncio.gather(*(worker() for _ in range(workers)))
        remaining = ops
        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return (time.process_time() - cpu) / ops


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--driver", default="asyncpg", choices=["asyncpg", "psycopg"])
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--ops", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    off: list[float] = []
    on: list[float] = []
    with PostgresServer() as pg:
        conninfo = pg.conninfo()
        for _ in range(args.rounds):
            for sink, out in ((False, off), (True, on)):
                out.append(asyncio.run(_run(conninfo, args.driver, args.workers, args.ops, sink)))
    a, b = statistics.median(off), statistics.median(on)
    result: dict[str, Any] = {
        "driver": args.driver,
        "workers": args.workers,
        "cpu_us_per_op_off": round(a * 1e6, 2),
        "cpu_us_per_op_on": round(b * 1e6, 2),
        "extra_us_per_op": round((b - a) * 1e6, 2),
        "extra_percent": round((b / a - 1) * 100, 1),
    }
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
