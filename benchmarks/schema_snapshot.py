"""How long `Database.schema()` takes on a schema of many tables, per driver.

Builds one database with ``--tables`` tables (each: an identity primary key,
a defaulted column, a foreign key to the previous table, a check, an index,
a comment, a grant) and a view per 10 tables, then times snapshots of it
through `Database` / `AsyncDatabase` over every driver. Also counts the round
trips (statements sent by the reader, plus BEGIN and COMMIT) and the locks
the snapshot's transaction holds at its end (``pg_get_expr`` and
``pg_get_viewdef`` take ACCESS SHARE locks; they count against
``max_locks_per_transaction``).

    .venv/bin/python -m benchmarks.schema_snapshot               # 1,000 tables, 5 rounds
    .venv/bin/python -m benchmarks.schema_snapshot --tables 200 --version 18
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import psycopg

from pgharbor import AsyncDatabase, Database
from pgharbor.schema import SchemaSnapshot, read_schema_sync
from pgharbor.testing import PostgresServer


def build(server: PostgresServer, dbname: str, tables: int) -> None:
    """*tables* tables in schema ``bench``, chained by foreign keys, and views."""
    if not server.execute("SELECT FROM pg_roles WHERE rolname = 'bench_reader'"):
        server.create_role("bench_reader", login=False)
    statements = ["CREATE SCHEMA bench"]
    for i in range(tables):
        ref = f", ref bigint REFERENCES bench.t{i - 1} (id)" if i else ""
        statements += [
            f"CREATE TABLE bench.t{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            f" name text NOT NULL DEFAULT 'n{i}', created timestamptz DEFAULT now(){ref},"
            " CHECK (length(name) < 100))",
            f"CREATE INDEX ON bench.t{i} (name)",
            f"COMMENT ON TABLE bench.t{i} IS 'table {i}'",
            f"GRANT SELECT ON bench.t{i} TO bench_reader",
        ]
        if i % 10 == 9:
            statements.append(f"CREATE VIEW bench.v{i} AS SELECT id, name FROM bench.t{i}")
    with psycopg.connect(server.conninfo(dbname), autocommit=True) as conn:
        for start in range(0, len(statements), 200):
            conn.execute("; ".join(statements[start : start + 200]))


def round_trips_and_locks(conninfo: str) -> tuple[int, int, SchemaSnapshot]:
    """Statements the reader sends (+ BEGIN and COMMIT), and the locks held
    at the end of its transaction."""
    sent = 0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

        def fetch(sql: str, params: tuple[Any, ...]) -> list[Any]:
            nonlocal sent
            sent += 1
            return conn.execute(sql, params).fetchall()

        snap = read_schema_sync(fetch)
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()").fetchone()
        conn.execute("COMMIT")
    assert row is not None
    return sent + 2, int(row[0]), snap


def time_sync(conninfo: str, driver: str, rounds: int) -> list[float]:
    with Database(conninfo, driver=driver, min_size=1, max_size=1) as db:
        db.schema()  # warm-up
        out = []
        for _ in range(rounds):
            start = time.perf_counter()
            db.schema()
            out.append(time.perf_counter() - start)
        return out


async def time_async(conninfo: str, driver: str, rounds: int) -> list[float]:
    async with AsyncDatabase(conninfo, driver=driver, min_size=1, max_size=1) as db:
        await db.schema()
        out = []
        for _ in range(rounds):
            start = time.perf_counter()
            await db.schema()
            out.append(time.perf_counter() - start)
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--version", type=int, default=None, help="PostgreSQL major version")
    args = parser.parse_args(argv)
    with PostgresServer(version=args.version) as server:
        server.create_database("bench")
        started = time.perf_counter()
        build(server, "bench", args.tables)
        print(
            f"PostgreSQL {server.version}: built {args.tables} tables in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        conninfo = server.conninfo("bench")
        trips, locks, snap = round_trips_and_locks(conninfo)
        counts = snap.counts()
        print(
            f"snapshot: {counts['tables']} tables, {counts['columns']} columns, "
            f"{counts['constraints']} constraints, {counts['indexes']} indexes, "
            f"{counts['views']} views; {trips} round trips; {locks} locks held at the end"
        )
        print(f"{'driver':<22} {'min s':>8} {'median s':>9} {'max s':>8}")
        cases: list[tuple[str, Any]] = [
            ("Database psycopg", lambda: time_sync(conninfo, "psycopg", args.rounds)),
            ("Database psycopg2", lambda: time_sync(conninfo, "psycopg2", args.rounds)),
            (
                "AsyncDatabase psycopg",
                lambda: asyncio.run(time_async(conninfo, "psycopg", args.rounds)),
            ),
            (
                "AsyncDatabase asyncpg",
                lambda: asyncio.run(time_async(conninfo, "asyncpg", args.rounds)),
            ),
        ]
        for name, run in cases:
            times = run()
            print(
                f"{name:<22} {min(times):>8.3f} {statistics.median(times):>9.3f} {max(times):>8.3f}"
            )


if __name__ == "__main__":
    main()
