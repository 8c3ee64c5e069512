"""Keyset pagination against OFFSET, and what chunking costs a batch.

    python -m benchmarks.batches [--rows 200000] [--rounds 3]

One throwaway server (``pgharbor.testing``), one table of ``--rows`` rows
with an index on its key. Candidates take turns in each round; the report
gives the median of each figure and every round's raw times:

- reading the whole table in pages of 1000: ``db.paginate`` (keyset) against
  ``LIMIT 1000 OFFSET n`` pages, in total and for the deepest page;
- loading the rows with ``copy_records``: one COPY, against chunks of 10 000
  in one transaction, and chunks committed one by one (with a progress
  callback each time);
- ``executemany`` of 20 000 rows: unchunked against chunks of 1000.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import pgharbor
from pgharbor.testing import PostgresServer

PAGE = 1000


def ignore(progress: pgharbor.BatchProgress) -> None:
    """A progress callback that does nothing: the cost of calling one."""


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def keyset_all(db: pgharbor.Database) -> list[float]:
    """Seconds per page, reading everything by keyset."""
    times = []
    started = time.perf_counter()
    for _ in db.paginate("SELECT id, payload FROM items", key="id", page_size=PAGE):
        now = time.perf_counter()
        times.append(now - started)
        started = now
    return times


def offset_all(db: pgharbor.Database, rows: int) -> list[float]:
    """Seconds per page, reading everything with OFFSET."""
    times = []
    for offset in range(0, rows, PAGE):
        started = time.perf_counter()
        db.fetch("SELECT id, payload FROM items ORDER BY id LIMIT %s OFFSET %s", (PAGE, offset))
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = args.rows
    data = [(i, f"payload {i}") for i in range(rows)]
    few = data[:20_000]
    insert = "INSERT INTO sink VALUES (%s, %s)"
    results: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    with (
        PostgresServer() as server,
        pgharbor.Database(server.conninfo(), max_size=2, application_name="bench-batches") as db,
    ):
        print(f"PostgreSQL {server.version}, {rows} rows, {args.rounds} rounds")
        for _ in range(args.rounds):
            db.execute("DROP TABLE IF EXISTS items")
            db.execute("CREATE TABLE items (id int PRIMARY KEY, payload text)")
            note("copy: one COPY", timed(lambda: db.copy_records("items", data)))
            db.execute("TRUNCATE items")
            note(
                "copy: chunks of 10000, one transaction",
                timed(lambda: db.copy_records("items", data, chunk_size=10_000, progress=ignore)),
            )
            db.execute("TRUNCATE items")
            note(
                "copy: chunks of 10000, each committed",
                timed(
                    lambda: db.copy_records(
                        "items", data, chunk_size=10_000, atomic=False, progress=ignore
                    )
                ),
            )
            db.execute("VACUUM ANALYZE items")
            keyset = keyset_all(db)
            offset = offset_all(db, rows)
            note("read all: keyset", sum(keyset))
            note("read all: OFFSET", sum(offset))
            note("deepest page: keyset", keyset[-1])
            note("deepest page: OFFSET", offset[-1])
            db.execute("CREATE TABLE IF NOT EXISTS sink (id int, payload text)")
            db.execute("TRUNCATE sink")
            note("executemany 20000: unchunked", timed(lambda: db.executemany(insert, few)))
            db.execute("TRUNCATE sink")
            note(
                "executemany 20000: chunks of 1000",
                timed(lambda: db.executemany(insert, few, chunk_size=1000, progress=ignore)),
            )
    width = max(map(len, results))
    for name, values in results.items():
        rounds = ", ".join(f"{v * 1000:.1f}" for v in values)
        print(f"{name:<{width}}  {statistics.median(values) * 1000:9.1f} ms   ({rounds})")
    ratio = statistics.median(results["read all: OFFSET"]) / statistics.median(
        results["read all: keyset"]
    )
    deep = statistics.median(results["deepest page: OFFSET"]) / statistics.median(
        results["deepest page: keyset"]
    )
    print(f"keyset reads the whole table {ratio:.1f}x faster; its deepest page {deep:.0f}x")


if __name__ == "__main__":
    main()
