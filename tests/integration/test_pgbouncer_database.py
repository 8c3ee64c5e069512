"""Database through a real PgBouncer in transaction mode, for every driver."""

from __future__ import annotations

import asyncio

import pytest

from pgharbor import AsyncDatabase, Database, Guard, GuardRefused
from pgharbor.testing import PgBouncer

pytestmark = pytest.mark.pgbouncer


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sync_database_through_pgbouncer(pgbouncer: PgBouncer, app_name: str, driver: str) -> None:
    """Queries, transactions and the application_name work through PgBouncer."""
    with Database(
        pgbouncer.conninfo(),
        driver=driver,
        pgbouncer=True,
        application_name=app_name,
        min_size=1,
        max_size=2,
    ) as db:
        for _ in range(3):  # PgBouncer may hand each statement another server
            assert db.fetchval("SELECT 1") == 1
            assert db.fetchval("SHOW application_name") == app_name
        with db.transaction() as tx:
            tx.execute("CREATE TEMP TABLE t (x int)")
            tx.execute("INSERT INTO t VALUES (1), (2)")
            assert tx.fetchval("SELECT count(*) FROM t") == 2
        assert db.stats()["connections_lost"] == 0


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_async_database_through_pgbouncer(pgbouncer: PgBouncer, app_name: str, driver: str) -> None:
    """The async drivers work through PgBouncer with prepared statements off."""

    async def run() -> None:
        async with AsyncDatabase(
            pgbouncer.url(),
            driver=driver,
            pgbouncer=True,
            application_name=app_name,
            min_size=1,
            max_size=2,
        ) as db:
            placeholder = "$1" if driver == "asyncpg" else "%s"
            for i in range(5):  # would break on a second server with cached statements
                assert await db.fetchval(f"SELECT {placeholder}::int + 1", (i,)) == i + 1
            assert await db.fetchval("SHOW application_name") == app_name
            async with db.transaction() as tx:
                assert await tx.fetchval("SELECT 42") == 42

    asyncio.run(run())


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_guarded_runs_and_bounded_fetches_through_pgbouncer(
    pgbouncer: PgBouncer, app_name: str, driver: str
) -> None:
    """Guarded runs, bounded fetches and streams keep each statement inside
    one transaction, so they work through PgBouncer in transaction mode."""

    async def run() -> None:
        async with AsyncDatabase(
            pgbouncer.url(),
            driver=driver,
            pgbouncer=True,
            application_name=app_name,
            min_size=1,
            max_size=2,
        ) as db:
            for _ in range(3):
                rows = await db.run_guarded(
                    "SELECT generate_series(1, 50) AS g", guard=Guard(max_rows=10)
                )
                assert len(rows) == 10 and rows.truncated and rows.columns == ("g",)
                bounded = await db.fetch("SELECT generate_series(1, 50) AS g", max_rows=5)
                assert len(bounded) == 5 and bounded.truncated
                batches = [
                    b async for b in db.stream("SELECT generate_series(1, 25)", batch_size=10)
                ]
                assert [len(b) for b in batches] == [10, 10, 5]
            with pytest.raises(GuardRefused):
                await db.run_guarded("SELECT 1; SELECT 2")

    asyncio.run(run())
