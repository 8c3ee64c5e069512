"""The guard's cost per statement: `run_guarded` against a plain `fetch`.

Usage::

    python -m benchmarks.guard            # ~1 min: 3 rounds x 2000 statements per driver
    python -m benchmarks.guard --n 5000 --rounds 5

One PostgreSQL server (``pgharbor.testing``), one connection per database
(min_size = max_size = 1), one caller: the figures are latency per statement,
not throughput. For each driver the steps alternate, round by round:

* ``fetch``: ``db.fetch(Q)`` -- the baseline;
* ``fetch max_rows``: ``db.fetch(Q, max_rows=100)`` (a cursor in a transaction);
* ``guarded``: ``db.run_guarded(Q)`` (parse, session state twice, BEGIN READ
  ONLY with three SET LOCALs, the statement through a cursor, ROLLBACK);
* ``guarded, no timeout``: the same with ``Guard(timeout=None)``: no
  ``statement_timeout`` and no client-side timer (in the sync flavour a timer
  is a thread start per statement);
* ``parse only``: ``Guard().check(Q)``, no I/O.

Q is a one-row primary-key lookup; the median of the rounds is reported in
microseconds per statement, with the ratio to ``fetch``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pgharbor
from pgharbor.guard import Guard
from pgharbor.testing.server import PostgresServer

Q = "SELECT id, name FROM items WHERE id = 42"


def _timed(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def _atimed(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n * 1e6


def _steps_sync(db: pgharbor.Database) -> dict[str, Callable[[], Any]]:
    guard, untimed = Guard(), Guard(timeout=None)
    return {
        "fetch": lambda: db.fetch(Q),
        "fetch max_rows": lambda: db.fetch(Q, max_rows=100),
        "guarded": lambda: db.run_guarded(Q, guard=guard),
        "guarded, no timeout": lambda: db.run_guarded(Q, guard=untimed),
        "parse only": lambda: guard.check(Q),
    }


async def _run_async(url: str, driver: str, n: int, rounds: int) -> dict[str, list[float]]:
    guard, untimed = Guard(), Guard(timeout=None)
    out: dict[str, list[float]] = {}
    async with pgharbor.AsyncDatabase(url, driver=driver, min_size=1, max_size=1) as db:
        steps: dict[str, Callable[[], Awaitable[Any]]] = {
            "fetch": lambda: db.fetch(Q),
            "fetch max_rows": lambda: db.fetch(Q, max_rows=100),
            "guarded": lambda: db.run_guarded(Q, guard=guard),
            "guarded, no timeout": lambda: db.run_guarded(Q, guard=untimed),
        }
        for fn in steps.values():
            await _atimed(fn, 200)  # warm up (prepared statements, caches)
        for _ in range(rounds):
            for name, fn in steps.items():
                out.setdefault(name, []).append(await _atimed(fn, n))
    out["parse only"] = [_timed(lambda: guard.check(Q), n) for _ in range(rounds)]
    return out


def _run_sync(url: str, driver: str, n: int, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    with pgharbor.Database(url, driver=driver, min_size=1, max_size=1) as db:
        steps = _steps_sync(db)
        for fn in steps.values():
            _timed(fn, 200)
        for _ in range(rounds):
            for name, fn in steps.items():
                out.setdefault(name, []).append(_timed(fn, n))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.guard", description=__doc__)
    p.add_argument("--n", type=int, default=2000, help="statements per step per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    with PostgresServer() as server:
        server.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);"
            " INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 1000) g"
        )
        url = server.url()
        runs: list[tuple[str, dict[str, list[float]]]] = []
        for label, driver, flavour in (
            ("psycopg (sync)", "psycopg", "sync"),
            ("psycopg2 (sync)", "psycopg2", "sync"),
            ("psycopg (async)", "psycopg", "async"),
            ("asyncpg (async)", "asyncpg", "async"),
        ):
            print(f"measuring {label}...", file=sys.stderr)
            if flavour == "sync":
                runs.append((label, _run_sync(url, driver, args.n, args.rounds)))
            else:
                runs.append((label, asyncio.run(_run_async(url, driver, args.n, args.rounds))))
        version = server.version
    print(
        f"## The guard (PostgreSQL {version}, Python {sys.version.split()[0]}, "
        f"{args.rounds} rounds x {args.n} statements, one connection)\n"
    )
    print(
        "| driver | fetch | fetch max_rows | guarded | guarded, no timeout | parse only "
        "| guarded / fetch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, out in runs:
        med = {name: statistics.median(values) for name, values in out.items()}
        print(
            f"| {label} | {med['fetch']:.0f} µs | {med['fetch max_rows']:.0f} µs "
            f"| {med['guarded']:.0f} µs | {med['guarded, no timeout']:.0f} µs "
            f"| {med['parse only']:.0f} µs "
            f"| {med['guarded'] / med['fetch']:.1f}x |"
        )


if __name__ == "__main__":
    main()
