"""Chunked batches and keyset pagination against real servers, every driver
(source of the generated sync tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from pgharbor._async.database import AsyncDatabase
from pgharbor._batch import BatchProgress
from pgharbor.drivers.query import Row
from pgharbor.errors import BatchError, ConfigError
from pgharbor.testing import TempDatabase

from .helpers import ph

DbFactory = Callable[..., AsyncDatabase]


@pytest.fixture
async def make_db(
    pg_database: TempDatabase, app_name: str, driver: str
) -> AsyncIterator[DbFactory]:
    dbs: list[AsyncDatabase] = []

    def factory(**kwargs: Any) -> AsyncDatabase:
        kwargs.setdefault("min_size", 1)
        kwargs.setdefault("max_size", 2)
        db = AsyncDatabase(
            pg_database.conninfo(), driver=driver, kwargs={"application_name": app_name}, **kwargs
        )
        dbs.append(db)
        return db

    yield factory
    for db in dbs:
        await db.close()


def rows(n: int) -> Iterator[tuple[int, str]]:
    """A generator: the input has no length."""
    for i in range(n):
        yield (i, f"item {i}")


async def test_executemany_in_chunks_reports_progress(make_db: DbFactory, driver: str) -> None:
    """executemany with chunk_size sends the sets a chunk at a time in one
    transaction, calls progress after each chunk and once committed, and
    returns the count; without chunks it returns the count too."""
    async with make_db() as db:
        await db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        insert = f"INSERT INTO items VALUES ({ph(driver, 1)}, {ph(driver, 2)})"
        seen: list[BatchProgress] = []

        async def on_progress(p: BatchProgress) -> None:
            seen.append(p)

        data = list(rows(2500))
        assert await db.executemany(insert, data, chunk_size=1000, progress=on_progress) == 2500
        assert [(p.done, p.committed, p.chunks) for p in seen] == [
            (1000, 0, 1),
            (2000, 0, 2),
            (2500, 0, 3),
            (2500, 2500, 3),
        ]
        assert {p.total for p in seen} == {2500} and seen[-1].fraction == 1.0
        assert await db.fetchval("SELECT count(*) FROM items") == 2500
        await db.execute("DELETE FROM items")
        assert await db.executemany(insert, rows(30)) == 30  # a generator, unchunked
        assert await db.executemany(insert, [(100, "x")]) == 1
        assert await db.fetchval("SELECT count(*) FROM items") == 31


async def test_executemany_per_chunk_commits_what_it_can(make_db: DbFactory, driver: str) -> None:
    """atomic=False commits each chunk: a failing chunk raises BatchError with
    how many were committed, and those stay; atomic=True keeps nothing."""
    async with make_db() as db:
        await db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        insert = f"INSERT INTO items VALUES ({ph(driver, 1)}, {ph(driver, 2)})"
        data = [*rows(250), (10, "duplicate")]  # the last chunk fails
        with pytest.raises(BatchError, match="failed in chunk 3") as info:
            await db.executemany(insert, data, chunk_size=100, atomic=False)
        assert (info.value.committed, info.value.done) == (200, 200)
        assert await db.fetchval("SELECT count(*) FROM items") == 200
        await db.execute("DELETE FROM items")
        with pytest.raises(BatchError, match="all rolled back") as info:
            await db.executemany(insert, data, chunk_size=100)
        assert (info.value.committed, info.value.done) == (0, 200)
        assert await db.fetchval("SELECT count(*) FROM items") == 0

        async def stop(p: BatchProgress) -> None:  # a callback may stop the batch
            if p.chunks == 2:
                raise KeyboardInterruptLike("stop")

        with pytest.raises(BatchError, match="progress callback failed after chunk 2") as info:
            await db.executemany(insert, rows(250), chunk_size=100, atomic=False, progress=stop)
        assert info.value.committed == 200
        assert await db.fetchval("SELECT count(*) FROM items") == 200


class KeyboardInterruptLike(Exception):
    """What a user's progress callback might raise to stop a batch."""


async def test_copy_records_in_chunks(make_db: DbFactory) -> None:
    """copy_records with chunk_size copies chunk by chunk, one transaction or
    one per chunk, reporting progress; a generator input has no total."""
    async with make_db() as db:
        await db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        seen: list[tuple[int, int | None, int]] = []
        copied = await db.copy_records(
            "items",
            rows(25_000),
            columns=["id", "name"],
            chunk_size=10_000,
            progress=lambda p: seen.append((p.done, p.total, p.committed)),
        )
        assert copied == 25_000
        assert seen == [
            (10_000, None, 0),
            (20_000, None, 0),
            (25_000, None, 0),
            (25_000, None, 25_000),
        ]
        data = [(i, None) for i in range(25_000, 25_100)] + [(0, "duplicate")]
        with pytest.raises(BatchError) as info:
            await db.copy_records("items", data, chunk_size=50, atomic=False)
        assert info.value.committed == 100
        assert await db.fetchval("SELECT count(*) FROM items") == 25_100


async def test_bad_chunk_size_fails_at_once(make_db: DbFactory) -> None:
    """A chunk_size that is not a positive integer raises ConfigError naming it."""
    async with make_db() as db:
        with pytest.raises(ConfigError, match="chunk_size"):
            await db.executemany("SELECT 1", [()], chunk_size=0)


async def collect(pages: AsyncIterator[list[Row]]) -> list[list[Row]]:
    return [page async for page in pages]


async def test_paginate_composite_key_with_ties(make_db: DbFactory) -> None:
    """Pages by (day, id) where many rows share a day: every row exactly once,
    in key order, pages of page_size; also descending."""
    async with make_db() as db:
        await db.execute(
            "CREATE TABLE events AS SELECT i AS id, date '2024-01-01' + (i / 37) AS day,"
            " i % 7 AS kind FROM generate_series(1, 1000) AS i"
        )
        await db.execute("CREATE INDEX ON events (day, id)")
        pages = await collect(
            db.paginate("SELECT day, id FROM events", key=("day", "id"), page_size=64)
        )
        assert [len(p) for p in pages] == [64] * 15 + [40]
        flat = [(r["day"], r["id"]) for p in pages for r in p]
        assert flat == sorted(flat) and len(set(flat)) == 1000
        newest = await collect(
            db.paginate(
                "SELECT day, id FROM events", key=["day", "id"], page_size=100, descending=True
            )
        )
        assert [(r["day"], r["id"]) for p in newest for r in p] == sorted(flat, reverse=True)
        exact = await collect(db.paginate("SELECT id FROM events", key="id", page_size=500))
        assert [len(p) for p in exact] == [500, 500]


async def test_paginate_with_parameters_and_percent(make_db: DbFactory, driver: str) -> None:
    """The query's own parameters, in the driver's style, work with the
    key's; without parameters a literal % stays literal."""
    async with make_db() as db:
        await db.execute(
            "CREATE TABLE t AS SELECT i AS id, CASE WHEN i % 2 = 0 THEN 'a%' ELSE 'b' END AS tag"
            " FROM generate_series(1, 100) AS i"
        )
        query = f"SELECT id, tag FROM t WHERE id > {ph(driver, 1)} AND tag = {ph(driver, 2)}"
        pages = await collect(db.paginate(query, (10, "a%"), key="id", page_size=7))
        ids = [r["id"] for p in pages for r in p]
        assert ids == list(range(12, 101, 2))
        literal = await collect(
            db.paginate("SELECT id FROM t WHERE tag LIKE 'a%'", key="id", page_size=20)
        )
        assert sum(len(p) for p in literal) == 50
        if driver != "asyncpg":
            named = await collect(
                db.paginate(
                    "SELECT id FROM t WHERE id <= %(top)s", {"top": 30}, key="id", page_size=8
                )
            )
            assert [len(p) for p in named] == [8, 8, 8, 6]


async def test_paginate_refuses_what_would_skip_rows(make_db: DbFactory) -> None:
    """A query with its own ORDER BY/LIMIT is refused at the call; a NULL or
    repeated key is refused when met, instead of silently skipping rows."""
    async with make_db() as db:
        await db.execute(
            "CREATE TABLE t AS SELECT i AS id, i / 10 AS grp, nullif(i, 5) AS maybe"
            " FROM generate_series(1, 30) AS i"
        )
        with pytest.raises(ConfigError, match="ORDER BY"):
            db.paginate("SELECT id FROM t ORDER BY id", key="id")
        with pytest.raises(ConfigError, match="LIMIT"):
            db.paginate("SELECT id FROM t LIMIT 5", key="id")
        with pytest.raises(ConfigError, match="page_size"):
            db.paginate("SELECT id FROM t", key="id", page_size=0)
        with pytest.raises(ConfigError, match="'maybe' is NULL"):
            await collect(db.paginate("SELECT maybe FROM t", key="maybe", page_size=50))
        with pytest.raises(ConfigError, match="two rows share the key"):
            await collect(db.paginate("SELECT grp FROM t", key="grp", page_size=50))
