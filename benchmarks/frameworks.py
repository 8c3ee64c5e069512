"""The cost of the framework paths: pgharbor under SQLAlchemy and Django,
against each framework's own pool, side by side in one run.

Pairs (P = 5 connections, W = 16 threads or tasks, one ``SELECT 1`` per
operation through the framework's public API):

- SQLAlchemy, sync (psycopg): ``pgharbor.sqlalchemy.create_engine`` against
  ``sqlalchemy.create_engine`` (its `QueuePool`); an operation is
  ``with engine.connect() as c: c.execute(text("SELECT 1")).scalar()``.
- SQLAlchemy, asyncio (psycopg and asyncpg): ``create_async_engine`` of each
  (`AsyncAdaptedQueuePool`), the same operation awaited.
- Django: ``ENGINE "pgharbor.django"`` against Django's PostgreSQL backend
  with ``OPTIONS={"pool": ...}`` (psycopg_pool), and without a pool (a new
  connection per request, Django's default); an operation is one request's
  worth: a cursor, ``SELECT 1``, ``connection.close()``.

Candidates take turns (A B C ... A B C ...) for ``--rounds`` rounds of
``--duration`` seconds after a warm-up; the figure is the median ops/s and
each pgharbor candidate's ratio to the framework's own pool. Throughput on a
shared machine is noisy; the client's CPU time per operation (one worker,
operations in a row, after the timed turn) is the steadier figure of what
the path costs.
``python -m benchmarks.frameworks`` takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy

from benchmarks._harness import Sample, run_async_calls, run_sync_calls
from pgharbor.testing import PostgresServer

P = 5
SELECT1 = sqlalchemy.text("SELECT 1")


@dataclass
class Candidate:
    """One way through a framework; ``opener(server)`` yields the operation
    (a function, or a coroutine function for ``flavour="async"``)."""

    group: str
    name: str
    flavour: str
    opener: Callable[[PostgresServer], Any]
    baseline: bool = False


def _sa_url(pg: PostgresServer, driver: str) -> str:
    return pg.url().replace("postgresql://", f"postgresql+{driver}://", 1)


# -- SQLAlchemy ----------------------------------------------------------------


def _sa_sync(harbor: bool) -> Callable[[PostgresServer], Any]:
    @contextmanager
    def opener(pg: PostgresServer) -> Iterator[Callable[[], Any]]:
        from pgharbor.sqlalchemy import create_engine

        url = _sa_url(pg, "psycopg")
        if harbor:
            engine = create_engine(url, min_size=P, max_size=P)
        else:
            engine = sqlalchemy.create_engine(url, pool_size=P, max_overflow=0)

        def op() -> Any:
            with engine.connect() as conn:
                return conn.execute(SELECT1).scalar()

        try:
            yield op
        finally:
            engine.dispose()

    return opener


def _sa_async(driver: str, harbor: bool) -> Callable[[PostgresServer], Any]:
    def opener(pg: PostgresServer) -> Any:
        from sqlalchemy.ext.asyncio import create_async_engine as sa_create

        from pgharbor.sqlalchemy import create_async_engine

        url = _sa_url(pg, driver)

        class Opened:
            async def __aenter__(self) -> Callable[[], Awaitable[Any]]:
                if harbor:
                    self.engine = create_async_engine(url, min_size=P, max_size=P)
                else:
                    self.engine = sa_create(url, pool_size=P, max_overflow=0)
                engine = self.engine

                async def op() -> Any:
                    async with engine.connect() as conn:
                        return (await conn.execute(SELECT1)).scalar()

                return op

            async def __aexit__(self, *exc: object) -> None:
                await self.engine.dispose()

        return Opened()

    return opener


# -- Django ----------------------------------------------------------------------

_DJANGO_ALIASES = {"pgharbor": "pgharbor", "psycopg_pool": "psycopg_pool", "no pool": "plain"}


def _django_setup(pg: PostgresServer) -> None:
    """Configure Django once, with one alias per candidate."""
    import django
    from django.conf import settings

    if settings.configured:
        return

    def database(engine: str, pool: Any) -> dict[str, Any]:
        options: dict[str, Any] = {"application_name": "bench-django"}
        if pool is not None:
            options["pool"] = pool
        return {
            "ENGINE": engine,
            "NAME": "postgres",
            "USER": "postgres",
            "HOST": pg.host,
            "PORT": str(pg.port),
            "CONN_MAX_AGE": 0,
            "OPTIONS": options,
        }

    sizes = {"min_size": P, "max_size": P}
    settings.configure(
        DATABASES={
            "default": database("django.db.backends.postgresql", None),
            "pgharbor": database("pgharbor.django", sizes),
            "psycopg_pool": database("django.db.backends.postgresql", sizes),
            "plain": database("django.db.backends.postgresql", None),
        },
        USE_TZ=True,
        INSTALLED_APPS=[],
    )
    django.setup()


def _django(name: str) -> Callable[[PostgresServer], Any]:
    @contextmanager
    def opener(pg: PostgresServer) -> Iterator[Callable[[], Any]]:
        _django_setup(pg)
        from django.db import connections

        alias = _DJANGO_ALIASES[name]

        def op() -> Any:
            conn = connections[alias]  # this thread's
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                row = cur.fetchone()
            conn.close()  # the end of a request
            return row

        try:
            yield op
        finally:
            if name != "no pool":
                connections[alias].close_pool()

    return opener


CANDIDATES = [
    Candidate("sqlalchemy sync psycopg", "pgharbor", "sync", _sa_sync(True)),
    Candidate("sqlalchemy sync psycopg", "QueuePool", "sync", _sa_sync(False), baseline=True),
    Candidate("sqlalchemy async psycopg", "pgharbor", "async", _sa_async("psycopg", True)),
    Candidate(
        "sqlalchemy async psycopg",
        "AsyncAdaptedQueuePool",
        "async",
        _sa_async("psycopg", False),
        baseline=True,
    ),
    Candidate("sqlalchemy async asyncpg", "pgharbor", "async", _sa_async("asyncpg", True)),
    Candidate(
        "sqlalchemy async asyncpg",
        "AsyncAdaptedQueuePool",
        "async",
        _sa_async("asyncpg", False),
        baseline=True,
    ),
    Candidate("django psycopg", "pgharbor", "sync", _django("pgharbor")),
    Candidate("django psycopg", "psycopg_pool", "sync", _django("psycopg_pool"), baseline=True),
    Candidate("django psycopg", "no pool", "sync", _django("no pool")),
]


def measure(
    c: Candidate, pg: PostgresServer, workers: int, warmup: float, duration: float, cpu_ops: int
) -> tuple[Sample, float]:
    """One turn: open the candidate, warm it up, time it; then the client's
    CPU microseconds per operation over ``cpu_ops`` operations in a row (one
    worker); close it."""
    if c.flavour == "sync":
        with c.opener(pg) as op:
            sample = run_sync_calls(op, workers, warmup, duration)
            cpu = time.process_time()
            for _ in range(cpu_ops):
                op()
            return sample, (time.process_time() - cpu) / cpu_ops * 1e6

    async def turn() -> tuple[Sample, float]:
        async with c.opener(pg) as op:
            sample = await run_async_calls(op, workers, warmup, duration)
            cpu = time.process_time()
            for _ in range(cpu_ops):
                await op()
            return sample, (time.process_time() - cpu) / cpu_ops * 1e6

    return asyncio.run(turn())


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m benchmarks.frameworks [--rounds N] [--duration S]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--cpu-ops", type=int, default=500, help="operations for CPU/op")
    parser.add_argument("--only", help="keep groups containing this substring")
    args = parser.parse_args(argv)
    chosen = [c for c in CANDIDATES if not args.only or args.only in c.group]
    rates: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], int] = {}
    with PostgresServer(settings={"fsync": "off", "max_connections": 200}) as pg:
        for r in range(args.rounds):
            for c in chosen:
                print(f"round {r + 1}: {c.group} / {c.name} ...", file=sys.stderr, flush=True)
                sample, cpu = measure(c, pg, args.workers, args.warmup, args.duration, args.cpu_ops)
                rates.setdefault((c.group, c.name), []).append(sample.rate)
                cpus.setdefault((c.group, c.name), []).append(cpu)
                errors[(c.group, c.name)] = errors.get((c.group, c.name), 0) + sample.errors
                if sample.first_error:
                    print(f"  error: {sample.first_error}", file=sys.stderr)
    print(report(chosen, rates, cpus, errors, args))


def report(
    chosen: list[Candidate],
    rates: dict[tuple[str, str], list[float]],
    cpus: dict[tuple[str, str], list[float]],
    errors: dict[tuple[str, str], int],
    args: argparse.Namespace,
) -> str:
    """A markdown table: ops/s (median of the rounds) and client CPU per
    operation (best of the rounds), each against the framework's own pool."""
    lines = [
        f"W = {args.workers}, P = {P}, {args.rounds} rounds x {args.duration:g} s, SELECT 1; "
        f"CPU/op: client process time over {args.cpu_ops} operations in a row, best round",
        "",
        "| path | pool | ops/s | rounds | ops/s vs its pool | CPU µs/op | CPU vs its pool "
        "| errors |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]

    def ratio(c: Candidate, figures: dict[tuple[str, str], list[float]]) -> str:
        base = next((b for b in chosen if b.group == c.group and b.baseline), None)
        if base is None or c.baseline:
            return ""
        # Throughput: the median of the rounds; CPU: the best (noise only adds).
        pick = min if figures is cpus else statistics.median
        mine = pick(figures[(c.group, c.name)])
        return f"{mine / pick(figures[(base.group, base.name)]):.2f}x"

    for c in chosen:
        key = (c.group, c.name)
        rounds = ", ".join(f"{x:.0f}" for x in rates[key])
        lines.append(
            f"| {c.group} | {c.name} | {statistics.median(rates[key]):.0f} | {rounds} | "
            f"{ratio(c, rates)} | {min(cpus[key]):.0f} | {ratio(c, cpus)} | "
            f"{errors[key]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
