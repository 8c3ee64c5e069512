"""What a `Row` costs: making rows, making a result's row class, reading a
column, and (with ``--server``) fetching rows through psycopg and asyncpg.

Rows are made by their result's class, ``cls(values)``: that is the tuple's
own constructor, so anything `Row` adds (names, attributes, JSON) must not
show here. Figures are CPU time (``time.process_time``), the median of
``--rounds`` rounds::

    .venv/bin/python -m benchmarks.rows                       # no server: ~15 s
    .venv/bin/python -m benchmarks.rows --compare-with main   # before/after, ~30 s
    .venv/bin/python -m benchmarks.rows --server              # + fetches from PostgreSQL

The in-process figures are the best of ``--rounds`` rounds (the machine is
shared: the minimum is the repeatable figure). ``--compare-with REV`` loads
``query.py`` as it was at git revision REV beside the current one and the
two take turns in every round; ``n/a`` where REV has no attribute access.
The fetches with ``--server`` measure the current checkout only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pgharbor
from pgharbor.drivers import query
from pgharbor.drivers.queries_psycopg import cached_row_class

COLUMNS = ("id", "name", "email", "created", "score")
VALUES = [(i, f"user{i}", f"user{i}@example.org", 1_700_000_000 + i, i * 0.5) for i in range(1000)]


def _per_op(fn: Callable[[], int]) -> float:
    """CPU seconds per operation of one run of ``fn`` (which returns its count)."""
    started = time.process_time()
    n = fn()
    return (time.process_time() - started) / n


def _median(fn: Callable[[], int], rounds: int) -> float:
    return statistics.median(_per_op(fn) for _ in range(rounds))


def _make(cls: Callable[[Any], Any], repeat: int = 100) -> Callable[[], int]:
    values = VALUES

    def run() -> int:
        for _ in range(repeat):
            [cls(v) for v in values]
        return repeat * len(values)

    return run


def _classes(make_class: Callable[[Any], Any], n: int = 2000) -> Callable[[], int]:
    def run() -> int:
        for i in range(n):
            make_class((*COLUMNS, f"c{i}"))
        return n

    return run


def _access(get: Callable[[Any], Any], row: Any, n: int = 200_000) -> Callable[[], int]:
    def run() -> int:
        for _ in range(n):
            get(row)
        return n

    return run


def _cases(module: Any) -> dict[str, Callable[[], int] | None]:
    """The in-process measurements for one version of ``pgharbor.drivers.query``."""
    cls = module.row_class(COLUMNS)
    row = cls(VALUES[1])
    return {
        "tuple(values), baseline": _make(tuple),
        "Row: cls(values)": _make(cls),
        "Row class for a new column list": _classes(module.row_class),
        "row[1]": _access(lambda r: r[1], row),
        'row["name"]': _access(lambda r: r["name"], row),
        "row.name": _access(lambda r: r.name, row) if hasattr(row, "name") else None,
        'row.get("name")': _access(lambda r: r.get("name"), row),
        "dict(row)": _access(dict, row, 50_000),
    }


def in_process(rounds: int, before: Any = None) -> list[tuple[str, list[float | None]]]:
    """(what, [ns now, ns before]) without a server: the minimum over
    ``rounds`` rounds, the two versions taking turns within each round."""
    versions = [_cases(query)] + ([_cases(before)] if before is not None else [])
    best: dict[str, list[float | None]] = {}
    for _ in range(rounds):
        for v, cases in enumerate(versions):
            for what, fn in cases.items():
                figures = best.setdefault(what, [None] * len(versions))
                if fn is not None:
                    ns = _per_op(fn) * 1e9
                    old = figures[v]
                    figures[v] = ns if old is None else min(old, ns)
    return list(best.items())


def load_revision(rev: str) -> Any:
    """``pgharbor/drivers/query.py`` as it was at git revision ``rev``, as a
    module of its own (it imports only the standard library)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/pgharbor/drivers/query.py"],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    module = types.ModuleType(f"query_at_{rev}")
    sys.modules[module.__name__] = module
    exec(compile(source, f"query.py@{rev}", "exec"), module.__dict__)
    return module


def with_server(rounds: int) -> list[tuple[str, float]]:
    """(what, nanoseconds per row) fetching 20 000 rows of 5 columns."""
    from pgharbor.drivers.queries_asyncpg import AsyncpgQueries
    from pgharbor.drivers.queries_psycopg import PsycopgQueries
    from pgharbor.testing import PostgresServer

    sql = (
        "SELECT i AS id, 'user' || i AS name, 'user' || i || '@example.org' AS email, "
        "i * 10 AS created, i * 0.5 AS score FROM generate_series(1, 20000) AS i"
    )
    n = 20_000
    figures: list[tuple[str, float]] = []
    with PostgresServer() as server:
        import asyncpg
        import psycopg

        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            q = PsycopgQueries()
            plain = _median(lambda: len(conn.execute(sql).fetchall()), rounds)
            rows = _median(lambda: len(q.fetch(conn, sql, None, None)), rounds)
            figures += [
                ("psycopg fetchall (tuples), per row", plain * 1e9),
                ("psycopg Database fetch (Rows), per row", rows * 1e9),
            ]

        async def run_asyncpg() -> tuple[float, float]:
            conn = await asyncpg.connect(server.url())
            aq = AsyncpgQueries()
            loop_plain: list[float] = []
            loop_rows: list[float] = []
            try:
                for _ in range(rounds):
                    started = time.process_time()
                    await conn.fetch(sql)
                    loop_plain.append((time.process_time() - started) / n)
                    started = time.process_time()
                    await aq.fetch(conn, sql, None, None)
                    loop_rows.append((time.process_time() - started) / n)
            finally:
                await conn.close()
            return statistics.median(loop_plain), statistics.median(loop_rows)

        plain_a, rows_a = asyncio.run(run_asyncpg())
        figures += [
            ("asyncpg fetch (Records), per row", plain_a * 1e9),
            ("asyncpg Database fetch (Rows), per row", rows_a * 1e9),
        ]
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--compare-with", metavar="REV", help="also measure query.py at git revision REV"
    )
    parser.add_argument("--server", action="store_true", help="also fetch from PostgreSQL")
    args = parser.parse_args(argv)
    assert cached_row_class(COLUMNS) is cached_row_class(COLUMNS)
    before = load_revision(args.compare_with) if args.compare_with else None
    print(f"pgharbor {pgharbor.__file__}; CPU ns per operation, best of {args.rounds} rounds")
    header = "now" + (f"   {args.compare_with}" if before is not None else "")
    print(f"{'':<42} {header}")
    for what, figures in in_process(args.rounds, before):
        shown = "  ".join("      n/a" if ns is None else f"{ns:9.1f}" for ns in figures)
        print(f"{what:<42} {shown}")
    if args.server:
        print(f"fetching 20 000 rows, CPU ns per row, median of {args.rounds} rounds")
        for what, ns in with_server(args.rounds):
            print(f"{what:<42} {ns:9.1f}")


if __name__ == "__main__":
    main()
