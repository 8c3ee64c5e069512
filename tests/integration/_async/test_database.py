"""AsyncDatabase and AsyncDatabaseManager against real servers (source of the
generated sync tests for Database and DatabaseManager)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from time import monotonic
from typing import Any

import pytest

from pgharbor._async.database import AsyncDatabase, AsyncTransaction
from pgharbor._async.manager import AsyncDatabaseManager
from pgharbor.errors import CommitOutcomeUnknown, PoolTimeout, UnsupportedServerVersion
from pgharbor.privileges import TableSelect
from pgharbor.testing import ChaosProxy, PostgresServer, TempDatabase

from .helpers import ph

DbFactory = Callable[..., AsyncDatabase]


@pytest.fixture
async def make_db(
    pg_database: TempDatabase, app_name: str, driver: str
) -> AsyncIterator[DbFactory]:
    """Databases on a fresh PostgreSQL database, tagged with the test's app name."""
    dbs: list[AsyncDatabase] = []

    def factory(conninfo: str | None = None, **kwargs: Any) -> AsyncDatabase:
        kwargs.setdefault("min_size", 1)
        kwargs.setdefault("max_size", 3)
        kw = {"application_name": app_name, **kwargs.pop("kwargs", {})}
        db = AsyncDatabase(
            conninfo if conninfo is not None else pg_database.conninfo(),
            driver=driver,
            kwargs=kw,
            **kwargs,
        )
        dbs.append(db)
        return db

    yield factory
    for db in dbs:
        await db.close()


async def test_query_helpers_and_rows_by_name(make_db: DbFactory, driver: str) -> None:
    """fetch/fetchrow/fetchval/execute/executemany/copy_records work; rows
    answer to column names."""
    async with make_db() as db:
        await db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        assert (
            await db.execute(
                f"INSERT INTO items VALUES ({ph(driver, 1)}, {ph(driver, 2)})", (1, "one")
            )
            == 1
        )
        await db.executemany(
            f"INSERT INTO items VALUES ({ph(driver, 1)}, {ph(driver, 2)})",
            [(2, "two"), (3, "three")],
        )
        copied = await db.copy_records("items", [(4, "four"), (5, None)], columns=["id", "name"])
        assert copied == 2
        rows = await db.fetch("SELECT id, name FROM items ORDER BY id")
        assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
        assert rows[4]["name"] is None and rows[0][1] == "one"
        row = await db.fetchrow(f"SELECT name FROM items WHERE id = {ph(driver, 1)}", (3,))
        assert row is not None and row["name"] == "three"
        assert await db.fetchrow("SELECT 1 WHERE false") is None
        assert await db.fetchval("SELECT count(*) FROM items") == 5
        assert await db.execute("UPDATE items SET name = 'x' WHERE id > 3") == 2
        assert db.stats()["in_use"] == 0


async def test_transactions_commit_and_roll_back(make_db: DbFactory) -> None:
    """A transaction commits when its block ends and rolls back when it raises."""
    async with make_db() as db:
        await db.execute("CREATE TABLE t (x int)")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (1)")
            assert await tx.fetchval("SELECT count(*) FROM t") == 1
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("boom")
        assert await db.fetchval("SELECT count(*) FROM t") == 1
        assert db.stats()["in_use"] == 0 and db.stats()["connections_lost"] == 0


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
async def test_isolation_and_read_only(make_db: DbFactory, isolation: str) -> None:
    """Isolation levels and read-only transactions reach the server."""
    async with make_db() as db:
        async with db.transaction(isolation) as tx:
            assert await tx.fetchval("SHOW transaction_isolation") == isolation
        async with db.transaction(read_only=True) as tx:
            assert await tx.fetchval("SHOW transaction_read_only") == "on"
        with pytest.raises(Exception) as info:
            async with db.transaction(read_only=True) as tx:
                await tx.execute("CREATE TABLE nope (x int)")
        assert "read-only" in str(info.value)


async def test_run_transaction_retries_serialization_failures(
    make_db: DbFactory, pg_database: TempDatabase, pg_server: PostgresServer, driver: str
) -> None:
    """A real serialization failure (40001) re-runs the whole transaction."""
    async with make_db() as db:
        await db.execute("CREATE TABLE counter (id int PRIMARY KEY, v int)")
        await db.execute("INSERT INTO counter VALUES (1, 0)")
        attempts = 0

        async def bump(tx: AsyncTransaction) -> int:
            nonlocal attempts
            attempts += 1
            await tx.fetchval("SELECT v FROM counter WHERE id = 1")  # takes the snapshot
            if attempts == 1:  # someone else updates the row meanwhile
                pg_server.execute(
                    "UPDATE counter SET v = v + 10 WHERE id = 1", dbname=pg_database.name
                )
            await tx.execute("UPDATE counter SET v = v + 1 WHERE id = 1")
            return attempts

        assert await db.run_transaction(bump, isolation="repeatable read") == 2
        assert await db.fetchval("SELECT v FROM counter WHERE id = 1") == 11


async def test_lost_commit_is_reported_not_retried(
    make_db: DbFactory, pg_database: TempDatabase, chaos_proxy: ChaosProxy
) -> None:
    """The connection lost at COMMIT raises CommitOutcomeUnknown; the pool heals."""
    target = pg_database.conninfo(host=chaos_proxy.host, port=chaos_proxy.port, sslmode="disable")
    async with make_db(target) as db:
        await db.execute("CREATE TABLE ledger (k int)")
        calls = 0

        async def write(tx: AsyncTransaction) -> None:
            nonlocal calls
            calls += 1
            await tx.execute("INSERT INTO ledger VALUES (1)")
            chaos_proxy.reset_all()

        with pytest.raises(CommitOutcomeUnknown, match="may or may not"):
            await db.run_transaction(write)
        assert calls == 1
        assert await db.fetchval("SELECT count(*) FROM ledger") in (0, 1)


@pytest.mark.timing
async def test_statement_timeout_per_call(make_db: DbFactory) -> None:
    """timeout= bounds one statement; the database stays usable."""
    async with make_db(max_size=1) as db:
        with pytest.raises(TimeoutError):
            await db.fetchval("SELECT pg_sleep(5)", timeout=0.3)
        assert await db.fetchval("SELECT 1") == 1


async def test_restart_between_two_calls_is_invisible(
    make_db: DbFactory, pg_server: PostgresServer, driver: str
) -> None:
    """A server restart between two calls: the second still succeeds, with
    every driver — the connections the restart ended are seen at checkout
    (the server's FATAL is waiting on their sockets) and replaced before
    anything is sent."""
    async with make_db(min_size=2, max_size=2) as db:
        assert await db.fetchval("SELECT 1") == 1
        pg_server.restart()
        assert await db.fetchval("SELECT 2") == 2
        assert await db.fetchval("SELECT 3") == 3
        assert await db.fetchval("SELECT 4") == 4


async def test_idempotent_reads_survive_a_network_reset(
    make_db: DbFactory, pg_database: TempDatabase, chaos_proxy: ChaosProxy
) -> None:
    """Connections reset while idle are replaced before anything is sent (the
    caller sees nothing); reset mid-statement, an unmarked call reports the
    loss and one marked idempotent is tried again on a new connection."""
    target = pg_database.conninfo(host=chaos_proxy.host, port=chaos_proxy.port, sslmode="disable")
    async with make_db(target, min_size=2, max_size=2, check_window=60.0) as db:
        assert await db.fetchval("SELECT 1") == 1
        chaos_proxy.reset_all()
        assert await db.fetchval("SELECT 2") == 2
        cut = threading.Timer(0.2, chaos_proxy.reset_all)
        cut.start()
        with pytest.raises(Exception, match=r"(?i)closed|reset|lost|terminat"):
            await db.fetchval("SELECT 3 FROM pg_sleep(0.6)")
        cut.join()
        cut = threading.Timer(0.2, chaos_proxy.reset_all)
        cut.start()
        assert await db.fetchval("SELECT 4 FROM pg_sleep(0.6)", idempotent=True) == 4
        cut.join()


async def test_session_settings_are_startup_parameters(make_db: DbFactory) -> None:
    """Session settings reach every connection and survive the return path."""
    async with make_db(
        max_size=1,
        statement_timeout=1.5,
        lock_timeout="250ms",
        search_path=["app", "public"],
        timezone="UTC",
    ) as db:
        for _ in range(2):  # the second time on a returned connection
            async with db.transaction() as tx:
                await tx.execute("SET LOCAL statement_timeout = 99")  # local: rolled back
                assert await tx.fetchval("SHOW statement_timeout") == "99ms"
            assert await db.fetchval("SHOW statement_timeout") == "1500ms"
            assert await db.fetchval("SHOW lock_timeout") == "250ms"
            assert (await db.fetchval("SHOW search_path")).replace(" ", "") == "app,public"
            assert await db.fetchval("SHOW TimeZone") == "UTC"


@pytest.mark.timing
async def test_exhausted_pool_times_out_clearly(make_db: DbFactory) -> None:
    """With every connection held, a call fails after the short timeout with a
    PoolTimeout naming the database and its counts."""
    async with make_db(min_size=1, max_size=1, timeout=0.5, name="tiny_db") as db:
        async with db.transaction():
            start = monotonic()
            with pytest.raises(PoolTimeout) as info:
                await db.fetchval("SELECT 1")
            assert 0.5 <= monotonic() - start < 2.0
        assert "'tiny_db'" in str(info.value) and "in_use=1" in str(info.value)
        assert await db.fetchval("SELECT 1") == 1


async def test_server_facts_and_privileges(make_db: DbFactory, pg_server: PostgresServer) -> None:
    """server_version, info and privilege checks come from the server."""
    async with make_db() as db:
        version = await db.server_version()
        assert version.major == pg_server.version.major
        info = await db.info()
        assert info["server"]["max_connections"] > 0
        assert "password" not in str(info)
        report = await db.check_privileges()
        assert report.sufficient, str(report)
        report = await db.check_privileges([TableSelect("public", "no_such_table")])
        assert not report.sufficient


async def test_old_server_refused(make_db: DbFactory, pg_server: PostgresServer) -> None:
    """A server older than minimum_version is refused at open."""
    db = make_db(minimum_version=pg_server.version.major + 1)
    with pytest.raises(UnsupportedServerVersion):
        await db.open(timeout=10)


async def test_from_env_and_from_config(
    pg_database: TempDatabase, app_name: str, driver: str, tmp_path: Path
) -> None:
    """Databases and managers build from the environment and from a TOML file."""
    env = {
        "PGHARBOR_MAIN__URL": pg_database.url(),
        "PGHARBOR_MAIN__APPLICATION_NAME": app_name,
        "PGHARBOR_MAIN__DRIVER": driver,
        "PGHARBOR_MAIN__MIN_SIZE": "1",
    }
    async with AsyncDatabase.from_env("main", env=env) as db:
        assert await db.fetchval("SELECT current_database()") == pg_database.name
    config = tmp_path / "pgharbor.toml"
    config.write_text(
        f"""
[databases.source]
url = "{pg_database.url()}"
application_name = "{app_name}"
driver = "{driver}"
min_size = 1

[databases.target]
url = "{pg_database.url()}"
application_name = "{app_name}"
driver = "{driver}"
min_size = 1
"""
    )
    async with AsyncDatabaseManager.from_config(str(config), dotenv=None, env={}) as mgr:
        assert sorted(mgr) == ["source", "target"]
        assert await mgr["target"].fetchval("SELECT 1") == 1


async def test_manager_opens_side_by_side_and_isolates_failures(
    make_db: DbFactory, chaos_proxy: ChaosProxy, pg_database: TempDatabase
) -> None:
    """Named databases open together; one failing does not stop the other."""
    source = make_db(name="source")
    chaos_proxy.refuse()
    broken = make_db(
        pg_database.conninfo(host=chaos_proxy.host, port=chaos_proxy.port, sslmode="disable"),
        name="target",
    )
    mgr = AsyncDatabaseManager({"source": source, "target": broken})
    with pytest.raises(ExceptionGroup) as info:
        await mgr.open(timeout=1.0)
    assert len(info.value.exceptions) == 1
    assert "database: target" in str(info.value.exceptions[0].__notes__)
    assert await mgr["source"].fetchval("SELECT 1") == 1
    report = await mgr.check(timeout=1.0)
    by_name = {d.name: d for d in report.databases}
    assert by_name["source"].ok and by_name["source"].reachable
    assert not by_name["target"].ok and not report.ok
    # Each database has its own breaker: the failing one never trips the other.
    assert mgr["source"].stats()["breaker_open"] == 0
    chaos_proxy.heal()
    await mgr.close()
