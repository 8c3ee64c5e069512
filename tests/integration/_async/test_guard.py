"""The guard against real servers, on every driver: the escape catalogue,
guarded runs, bounded fetches and streams (source of the generated sync tests)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pgharbor._async.database import AsyncDatabase
from pgharbor.errors import ConfigError, GuardRefused
from pgharbor.guard import Guard
from pgharbor.testing import PostgresServer, TempDatabase

from ..escapes import CASES, SETUP, Escape
from .helpers import DRIVERS, wait_until

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


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


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
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND state <> 'idle'",
            (app_name,),
        )
        locks = server.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return busy[0][0] == 0 and locks[0][0] == 0

    await wait_until(settled, 5.0, "statements ended and advisory locks released")
    assert server.execute("SELECT count(*), min(note) FROM victim", dbname=name) == [(1, "intact")]
    assert server.execute("SELECT last_value, is_called FROM seq", dbname=name) == [(1, False)]
    assert server.execute("SELECT to_regclass('pwned')", dbname=name) == [(None,)]
    assert not os.path.exists(PWNED_FILE)
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
