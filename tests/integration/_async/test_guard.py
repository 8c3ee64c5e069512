"""The guard against real servers, on every driver: the escape catalogue,
guarded runs, bounded fetches and streams (source of the generated sync tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgharbor._async.database import AsyncDatabase
from pgharbor.errors import ConfigError, GuardRefused
from pgharbor.guard import Guard
from pgharbor.testing import PostgresServer, TempDatabase

from ..escapes import CASES, SETUP, Escape
from .helpers import wait_until

CLEAN_SESSION = (
    "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
    " current_setting('default_transaction_read_only'), current_setting('transaction_read_only'),"
    " current_user = session_user,"
    " (SELECT count(*) FROM pg_listening_channels()),"
    " (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),"
    " (SELECT count(*) FROM pg_cursors WHERE is_holdable),"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())"
)
CLEAN = ("0", "0", "off", "off", True, 0, 0, 0, 0)
PWNED_FILE = "/tmp/pgharbor-pwned"


@pytest.fixture(scope="module")
def escape_db(pg_server: PostgresServer) -> Iterator[TempDatabase]:
    """One database for the whole catalogue, with its victims."""
    name = f"t_esc_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    try:
        pg_server.execute(SETUP, dbname=name)
        yield TempDatabase(pg_server, name)
    finally:
        if pg_server.is_running:
            pg_server.drop_database(name, force=True)


def placeholder(driver: str) -> str:
    return "$1" if driver == "asyncpg" else "%s"


async def outcome(db: AsyncDatabase, case: Escape, driver: str) -> tuple[str, Any]:
    """Run one catalogue text; its outcome as the catalogue spells it."""
    text = case.sql.replace("{p}", placeholder(driver)) if case.params else case.sql
    try:
        rows = await db.run_guarded(text, case.params)
    except GuardRefused as exc:
        return f"refused:{exc.rule}", exc
    except TimeoutError as exc:
        return "timeout", exc
    except Exception as exc:
        return "error", exc
    return "ok", rows


async def assert_harmless(
    db: AsyncDatabase, server: PostgresServer, database: TempDatabase, app_name: str
) -> None:
    """Nothing written, nothing held, nothing running, the next session clean."""
    name = database.name

    def settled() -> bool:
        busy = server.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'",
            (app_name,),
        )
        locks = server.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return bool(busy[0][0] == 0 and locks[0][0] == 0)

    await wait_until(settled, 5.0, "statements ended and advisory locks released")
    assert server.execute("SELECT count(*), min(note) FROM victim", dbname=name) == [(1, "intact")]
    assert server.execute("SELECT last_value, is_called FROM seq", dbname=name) == [(1, False)]
    assert server.execute("SELECT to_regclass('pwned')", dbname=name) == [(None,)]
    assert not Path(PWNED_FILE).exists()  # noqa: ASYNC240 (a stat, once)
    row = await db.fetchrow(CLEAN_SESSION)
    assert tuple(row or ()) == CLEAN


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_escape_catalogue(
    case: Escape, escape_db: TempDatabase, pg_server: PostgresServer, driver: str, app_name: str
) -> None:
    """Each text of the catalogue is refused or harmless: its outcome is the
    expected one, and nothing is written, held, running or left in the session."""
    async with AsyncDatabase(
        escape_db.conninfo(),
        driver=driver,
        min_size=1,
        max_size=1,
        kwargs={"application_name": app_name},
        guard=Guard(max_rows=100, timeout=1.0),
    ) as db:
        got, detail = await outcome(db, case, driver)
        expected = case.expect.split("|")
        if case.expect == "refused|error":
            assert got == "error" or got.startswith("refused:"), (got, detail)
        else:
            assert got in expected, (got, detail)
        if got == "ok" and case.truncated is not None:
            assert detail.truncated is case.truncated
            assert len(detail) <= 100
        await assert_harmless(db, pg_server, escape_db, app_name)


@pytest.fixture
async def db(pg_database: TempDatabase, app_name: str, driver: str) -> Any:
    """A database on a fresh PostgreSQL database with a table of 50 rows."""
    async with AsyncDatabase(
        pg_database.conninfo(),
        driver=driver,
        min_size=1,
        max_size=2,
        kwargs={"application_name": app_name},
    ) as database:
        await database.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        await database.execute("INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 50) g")
        yield database


async def test_guarded_read_caps_rows_and_rolls_back(db: AsyncDatabase, driver: str) -> None:
    """A guarded read returns at most max_rows rows, says truncated, names its
    columns even without rows, and takes parameters in the driver's style."""
    rows = await db.run_guarded("SELECT id, name FROM t ORDER BY id", guard=Guard(max_rows=10))
    assert [r["id"] for r in rows] == list(range(1, 11))
    assert rows.truncated and rows.columns == ("id", "name")
    exact = await db.run_guarded("SELECT id FROM t WHERE id <= 10", guard=Guard(max_rows=10))
    assert len(exact) == 10 and not exact.truncated
    empty = await db.run_guarded("SELECT id, name FROM t WHERE false")
    assert list(empty) == [] and empty.columns == ("id", "name") and not empty.truncated
    one = await db.run_guarded(f"SELECT name FROM t WHERE id = {placeholder(driver)}", (7,))
    assert one[0]["name"] == "n7"
    shown = await db.run_guarded("SHOW transaction_read_only")
    assert shown[0][0] == "on"
    plan = await db.run_guarded("EXPLAIN SELECT * FROM t")
    assert plan.columns == ("QUERY PLAN",) and len(plan) >= 1
    assert db.stats()["in_use"] == 0


async def test_guarded_run_applies_local_timeouts(db: AsyncDatabase) -> None:
    """The guard's timeouts hold inside the run and are gone after it."""
    guard = Guard(timeout=2.5, lock_timeout=1.5, idle_timeout=30)
    rows = await db.run_guarded(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
        " current_setting('idle_in_transaction_session_timeout')",
        guard=guard,
    )
    assert tuple(rows[0]) == ("2500ms", "1500ms", "30s")
    assert await db.fetchval("SHOW statement_timeout") == "0"


async def test_guarded_timeout_raises_and_connection_is_reused(
    db: AsyncDatabase, pg_server: PostgresServer, app_name: str
) -> None:
    """A statement past the guard's timeout raises TimeoutError; nothing keeps
    running and the pool stays usable."""
    with pytest.raises(TimeoutError):
        await db.run_guarded("SELECT pg_sleep(10)", guard=Guard(timeout=0.3))
    assert await db.fetchval("SELECT 1") == 1
    active = pg_server.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'",
        (app_name,),
    )
    assert active == [(0,)]


async def test_guard_with_writes_commits_one_statement(db: AsyncDatabase, driver: str) -> None:
    """allow_writes runs one write in a committed READ WRITE transaction;
    several statements are still refused, DDL too."""
    writer = Guard(allow_writes=True)
    ph = placeholder(driver)
    rows = await db.run_guarded(
        f"INSERT INTO t VALUES (100, {ph}) RETURNING id", ("hundred",), guard=writer
    )
    assert rows[0]["id"] == 100
    assert await db.fetchval("SELECT name FROM t WHERE id = 100") == "hundred"
    updated = await db.run_guarded("UPDATE t SET name = 'x' WHERE id > 45", guard=writer)
    assert list(updated) == [] and updated.rowcount in (6, -1)
    locked = await db.run_guarded("SELECT id FROM t WHERE id = 1 FOR UPDATE", guard=writer)
    assert locked[0][0] == 1
    with pytest.raises(GuardRefused) as info:
        await db.run_guarded("DELETE FROM t; DROP TABLE t", guard=writer)
    assert info.value.rule == "one-statement"
    with pytest.raises(GuardRefused):
        await db.run_guarded("DROP TABLE t", guard=writer)
    with pytest.raises(GuardRefused):
        await db.run_guarded("INSERT INTO t VALUES (101, 'x')")  # the default guard reads
    assert await db.fetchval("SELECT count(*) FROM t") == 51


async def test_database_guard_setting_is_the_default(
    pg_database: TempDatabase, app_name: str, driver: str
) -> None:
    """Database(guard=...) makes that guard the default; anything but a Guard
    is a ConfigError naming the field."""
    async with AsyncDatabase(
        pg_database.conninfo(),
        driver=driver,
        min_size=1,
        kwargs={"application_name": app_name},
        guard=Guard(max_rows=3),
    ) as db:
        rows = await db.run_guarded("SELECT generate_series(1, 10)")
        assert len(rows) == 3 and rows.truncated
        wide = await db.run_guarded("SELECT generate_series(1, 10)", guard=Guard(max_rows=None))
        assert len(wide) == 10 and not wide.truncated
    with pytest.raises(ConfigError) as info:
        AsyncDatabase(pg_database.conninfo(), driver=driver, guard=5)  # type: ignore[call-overload]
    assert info.value.field == "guard"
    with pytest.raises(ConfigError):
        await AsyncDatabase(pg_database.conninfo(), driver=driver).run_guarded(
            "SELECT 1",
            guard="read-only",  # type: ignore[arg-type]
        )


async def test_fetch_max_rows_stops_the_server(db: AsyncDatabase, driver: str) -> None:
    """fetch(max_rows=N) returns N rows and truncated, through a cursor: a
    billion-row query comes back at once; other statements are cut client-side."""
    rows = await db.fetch("SELECT generate_series(1, 1000000000) AS g", max_rows=5, timeout=10)
    assert [r["g"] for r in rows] == [1, 2, 3, 4, 5] and rows.truncated
    all_rows = await db.fetch("SELECT id FROM t", max_rows=100)
    assert len(all_rows) == 50 and not all_rows.truncated and all_rows.columns == ("id",)
    none = await db.fetch("SELECT id FROM t WHERE false", max_rows=1)
    assert list(none) == [] and none.columns == ("id",)
    ph = placeholder(driver)
    param = await db.fetch(f"SELECT id FROM t WHERE id > {ph} ORDER BY id", (40,), max_rows=3)
    assert [r[0] for r in param] == [41, 42, 43] and param.truncated
    inserted = await db.fetch(
        "INSERT INTO t SELECT g, 'x' FROM generate_series(200, 209) g RETURNING id", max_rows=2
    )
    assert len(inserted) == 2 and inserted.truncated
    assert await db.fetchval("SELECT count(*) FROM t WHERE id >= 200") == 10
    with pytest.raises(ConfigError):
        await db.fetch("SELECT 1", max_rows=0)
    assert db.stats()["in_use"] == 0


async def test_stream_yields_bounded_batches(db: AsyncDatabase, driver: str) -> None:
    """stream() yields the rows in batches of at most batch_size, in order,
    and gives its connection back when the iteration ends or stops early."""
    batches = [batch async for batch in db.stream("SELECT id FROM t ORDER BY id", batch_size=20)]
    assert [len(b) for b in batches] == [20, 20, 10]
    assert [r["id"] for b in batches for r in b] == list(range(1, 51))
    ph = placeholder(driver)
    it = db.stream(f"SELECT generate_series(1, {ph}) AS g", (1_000_000_000,), batch_size=7)
    first = await it.__anext__()
    assert [r[0] for r in first] == [1, 2, 3, 4, 5, 6, 7]
    await it.aclose()  # type: ignore[attr-defined]  # unasync: remove
    del it
    assert db.stats()["in_use"] == 0
    assert await db.fetchval("SELECT 1") == 1


async def test_a_session_left_dirty_is_discarded(
    db: AsyncDatabase, pg_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement that leaves state outliving its transaction (a session
    advisory lock taken inside a function the parser cannot see into) gets
    its connection closed and replaced, with a warning; the lock goes with it."""
    await db.execute(
        "CREATE FUNCTION lock_it() RETURNS int LANGUAGE plpgsql"
        " AS $$BEGIN PERFORM pg_advisory_lock(99); RETURN 1; END$$"
    )
    with caplog.at_level("WARNING", logger="pgharbor.guard"):
        rows = await db.run_guarded("SELECT lock_it()")
    assert rows[0][0] == 1
    assert "left state in its session" in caplog.text

    def released() -> bool:
        held = pg_server.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return bool(held[0][0] == 0)

    await wait_until(released, 5.0, "the advisory lock released with its session")
    assert await db.fetchval("SELECT count(*) FROM t") == 50  # the pool carries on
