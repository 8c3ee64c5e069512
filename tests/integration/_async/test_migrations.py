"""AsyncMigrations against real servers, every driver (source of the generated
sync tests for Migrations)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgharbor._async.database import AsyncDatabase
from pgharbor._async.migrations import AsyncMigrations
from pgharbor.errors import (
    MigrationDrift,
    MigrationError,
    MigrationFailed,
    MigrationLockTimeout,
)
from pgharbor.testing import TempDatabase

DbFactory = Callable[..., AsyncDatabase]


@pytest.fixture
async def make_db(
    pg_database: TempDatabase, app_name: str, driver: str
) -> AsyncIterator[DbFactory]:
    """Databases on a fresh PostgreSQL database, tagged with the test's app name."""
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


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


BASIC = {
    "0001_create_orders.sql": (
        "CREATE TABLE orders (id bigserial PRIMARY KEY, total numeric NOT NULL);\n"
        "CREATE FUNCTION orders_total() RETURNS numeric AS $$\n"
        "  SELECT coalesce(sum(total), 0) FROM orders; -- a ; inside\n"
        "$$ LANGUAGE sql;\n"
    ),
    "0001_create_orders.down.sql": "DROP FUNCTION orders_total();\nDROP TABLE orders;\n",
    "0002_add_status.sql": (
        "-- migrate:up\n"
        "ALTER TABLE orders ADD status text NOT NULL DEFAULT 'open';\n"
        "-- migrate:down\n"
        "ALTER TABLE orders DROP status;\n"
    ),
    "0003_index_status.sql": (
        "-- migrate:up\n"
        "CREATE INDEX CONCURRENTLY orders_status ON orders (status);\n"
        "-- migrate:down\n"
        "DROP INDEX CONCURRENTLY orders_status;\n"
    ),
}


async def tables(db: AsyncDatabase) -> set[str]:
    rows = await db.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relkind IN ('r', 'i')"
    )
    return {r[0] for r in rows}


async def test_up_applies_in_order_once(make_db: DbFactory, tmp_path: Path) -> None:
    """up applies every pending migration in order and records it with its
    checksum; a second up has nothing to do."""
    async with make_db() as db:
        m = AsyncMigrations(db, write(tmp_path / "m", BASIC))
        seen: list[tuple[int, bool]] = []
        plan = await m.up(on_step=lambda step, t: seen.append((step.version, t is None)))
        assert [s.version for s in plan.steps] == [1, 2, 3]
        assert (plan.current, plan.target) == (None, 3)
        assert seen == [(1, True), (1, False), (2, True), (2, False), (3, True), (3, False)]
        assert {"orders", "orders_status", "pgharbor_migrations"} <= await tables(db)
        history = await m.history()
        assert [(a.version, a.success) for a in history] == [(1, True), (2, True), (3, True)]
        assert [a.checksum for a in history] == [x.checksum for x in m.load()]
        assert [s.state for s in await m.status()] == ["applied"] * 3
        assert await m.current_version() == 3
        again = await m.up()
        assert not again and again.current == 3


async def test_plan_is_a_dry_run(make_db: DbFactory, tmp_path: Path) -> None:
    """plan (up with dry_run) shows what would run, which parts run outside a
    transaction, and changes nothing — not even the history table."""
    async with make_db() as db:
        m = AsyncMigrations(db, write(tmp_path / "m", BASIC))
        plan = await m.plan()
        assert [(s.version, s.transactional) for s in plan.steps] == [
            (1, True),
            (2, True),
            (3, False),
        ]
        assert "CREATE INDEX CONCURRENTLY at line 2" in plan.steps[2].notes[0]
        assert plan.steps[0].statements == 2
        assert await tables(db) == set()
        assert [s.state for s in await m.status()] == ["pending"] * 3


async def test_down_runs_down_parts_in_reverse(make_db: DbFactory, tmp_path: Path) -> None:
    """down rolls back one step by default, and to a version with ``to``,
    newest first, running each down part (also outside a transaction)."""
    async with make_db() as db:
        m = AsyncMigrations(db, write(tmp_path / "m", BASIC))
        await m.up()
        one = await m.down()
        assert [s.version for s in one.steps] == [3] and one.target == 2
        assert "orders_status" not in await tables(db)
        await m.up()
        rest = await m.down(to=0)
        assert [s.version for s in rest.steps] == [3, 2, 1] and rest.target is None
        assert await tables(db) == {"pgharbor_migrations", "pgharbor_migrations_pkey"}
        assert await m.history() == []


async def test_down_without_a_down_part_is_refused_up_front(
    make_db: DbFactory, tmp_path: Path
) -> None:
    """Rolling back past a migration without a down part is refused before
    anything is rolled back."""
    files = {**BASIC, "0004_irreversible.sql": "CREATE TABLE audit (x int);\n"}
    async with make_db() as db:
        m = AsyncMigrations(db, write(tmp_path / "m", files))
        await m.up()
        with pytest.raises(MigrationError, match=r"0004_irreversible.sql: has no down part"):
            await m.down(to=1)
        assert await m.current_version() == 4


async def test_a_failing_statement_is_named_and_rolled_back(
    make_db: DbFactory, tmp_path: Path
) -> None:
    """A failing statement stops the run: the error names the file and the
    line the server points at; its migration is rolled back and the ones
    before it stay."""
    files = {
        **BASIC,
        "0004_broken.sql": (
            "CREATE TABLE audit (x int);\n\nINSERT INTO audit\nSELECT nosuchcolumn\nFROM orders;\n"
        ),
    }
    async with make_db() as db:
        m = AsyncMigrations(db, write(tmp_path / "m", files))
        with pytest.raises(MigrationFailed) as info:
            await m.up()
        err = info.value
        assert err.file.endswith("0004_broken.sql") and err.line == 4
        assert err.version == 4 and err.applied_version == 3 and not err.partial
        assert "0004_broken.sql:4:" in str(err) and "stays at version 3" in str(err)
        assert err.statement.startswith("INSERT INTO audit")
        assert "audit" not in await tables(db)
        assert await m.current_version() == 3


async def test_checksum_drift_is_refused_until_allowed_or_repaired(
    make_db: DbFactory, tmp_path: Path
) -> None:
    """An edited applied file is refused; allow_drift goes on; repair adopts
    the new checksum; a removed applied file is drift too."""
    async with make_db() as db:
        directory = write(tmp_path / "m", BASIC)
        m = AsyncMigrations(db, directory)
        await m.up(to=2)
        (directory / "0002_add_status.sql").write_text(
            BASIC["0002_add_status.sql"].replace("'open'", "'new'")
        )
        with pytest.raises(MigrationDrift, match="0002_add_status: changed") as info:
            await m.up()
        assert info.value.problems == [
            "0002_add_status: changed (the file changed since it was applied)"
        ]
        assert [s.state for s in await m.status()] == ["applied", "changed", "pending"]
        plan = await m.up(allow_drift=True)
        assert [s.version for s in plan.steps] == [3]
        assert await m.repair() == ["0002_add_status: checksum now the file's"]
        assert [s.state for s in await m.status()] == ["applied"] * 3
        (directory / "0003_index_status.sql").unlink()
        with pytest.raises(MigrationDrift, match="0003_index_status: missing"):
            await m.up()


async def test_out_of_order_is_refused_unless_asked(make_db: DbFactory, tmp_path: Path) -> None:
    """A pending file older than the newest applied (a late merge) is refused,
    and applied with out_of_order."""
    async with make_db() as db:
        directory = write(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a ();", "0003_c.sql": ""})
        m = AsyncMigrations(db, directory)
        await m.up()
        write(directory, {"0002_b.sql": "CREATE TABLE b ();"})
        assert [s.state for s in await m.status()] == ["applied", "out-of-order", "applied"]
        with pytest.raises(MigrationDrift, match="older than the newest applied"):
            await m.up()
        plan = await m.up(out_of_order=True)
        assert [s.version for s in plan.steps] == [2]


async def test_failure_outside_a_transaction_waits_for_repair(
    make_db: DbFactory, tmp_path: Path
) -> None:
    """A migration outside a transaction that fails halfway is recorded as
    failed: up refuses until repair, and repair lets it run again."""
    files = {
        "0001_t.sql": "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);\n",
        "0002_unique.sql": (
            "CREATE INDEX CONCURRENTLY t_plain ON t (x);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY t_unique ON t (x);\n"
        ),
    }
    async with make_db() as db:
        directory = write(tmp_path / "m", files)
        m = AsyncMigrations(db, directory)
        with pytest.raises(MigrationFailed) as info:
            await m.up()
        assert info.value.partial and info.value.line == 2
        assert "with 1 statement(s) of 2 in before it" in str(info.value)
        (state,) = [s for s in await m.status() if s.version == 2]
        assert state.state == "failed" and "stopped after 1 statement" in (state.detail or "")
        with pytest.raises(MigrationError, match="stopped halfway"):
            await m.up()
        # The operator cleans up (the failed build left an invalid index) and repairs.
        await db.execute("DROP INDEX t_plain")
        await db.execute("DROP INDEX t_unique")
        await db.execute("DELETE FROM t")
        assert await m.repair() == ["0002_unique: failed entry removed (counts as not applied)"]
        plan = await m.up()
        assert [s.version for s in plan.steps] == [2]


async def test_session_settings_do_not_leak_into_the_pool(
    make_db: DbFactory, tmp_path: Path
) -> None:
    """A SET in a migration does not outlive the run on the pool's connection,
    and the lock is released."""
    files = {"0001_path.sql": "SET search_path = pg_catalog;\nCREATE TABLE public.t (x int);\n"}
    async with make_db(max_size=1) as db:
        m = AsyncMigrations(db, write(tmp_path / "m", files))
        await m.up()
        assert await db.fetchval("SHOW search_path") == '"$user", public'
        assert await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_lock_timeout_names_the_holder(
    make_db: DbFactory, tmp_path: Path, pg_database: TempDatabase
) -> None:
    """Another session holding the migration lock makes up wait, then fail
    with MigrationLockTimeout naming the holder; once released, up runs."""
    async with make_db() as db:
        m = AsyncMigrations(db, write(tmp_path / "m", BASIC), lock_timeout=0.5)
        with psycopg.connect(
            pg_database.conninfo(application_name="lock-holder"), autocommit=True
        ) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (m.lock_key,))
            with pytest.raises(MigrationLockTimeout, match=r"held by pid \d+ .*'lock-holder'"):
                await m.up()
            assert await m.history() == []
        assert [s.version for s in (await m.up()).steps] == [1, 2, 3]


async def test_transaction_lock_mode_refuses_statements_outside_transactions(
    make_db: DbFactory, tmp_path: Path
) -> None:
    """With lock='transaction' (what pgbouncer=True picks), transactional
    migrations run; one that cannot run in a transaction is refused before
    anything runs, saying why."""
    async with make_db() as db:
        m = AsyncMigrations(db, write(tmp_path / "m", BASIC), lock="transaction")
        assert m.mode == "transaction"
        with pytest.raises(MigrationError, match="no lock can keep a second deployer out"):
            await m.up()
        assert await m.history() == []
        plan = await m.up(to=2)
        assert [s.version for s in plan.steps] == [1, 2]
        assert [a.version for a in await m.history()] == [1, 2]


def test_bad_arguments_fail_at_once(tmp_path: Path) -> None:
    """Bad arguments raise ConfigError naming the field."""
    db = AsyncDatabase("postgresql://u@127.0.0.1:1/x")
    with pytest.raises(ValueError, match="lock"):
        AsyncMigrations(db, tmp_path, lock="table")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lock_timeout"):
        AsyncMigrations(db, tmp_path, lock_timeout=0)
    with pytest.raises(ValueError, match="table"):
        AsyncMigrations(db, tmp_path, table="")
