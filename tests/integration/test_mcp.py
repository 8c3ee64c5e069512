"""`pgharbor mcp` end to end: the SDK's own client over stdio, a real server,
the escape catalogue through ``run_query``, a restart and a timeout."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pgharbor.testing import PostgresServer, TempDatabase

from .escapes import CASES, SETUP

pytest.importorskip("mcp")

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

TOOLS = {
    "list_databases",
    "list_schemas",
    "list_tables",
    "describe_table",
    "run_query",
    "explain_query",
    "health",
}
# What a session may carry between calls: only the guard's own SET LOCALs,
# seen from inside the next run.
SESSION_PROBE = (
    "SELECT (SELECT string_agg(name, ',' ORDER BY name) FROM pg_settings"
    "        WHERE source = 'session'),"
    " current_setting('default_transaction_read_only'), current_user = session_user,"
    " (SELECT count(*) FROM pg_listening_channels()),"
    " (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),"
    " (SELECT count(*) FROM pg_cursors WHERE is_holdable),"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')"
)
CLEAN = [
    "idle_in_transaction_session_timeout,lock_timeout,statement_timeout,transaction_read_only",
    "off",
    True,
    0,
    0,
    0,
    0,
]


@pytest.fixture(scope="module")
def mcp_db(pg_server: PostgresServer) -> Iterator[TempDatabase]:
    """A database with the catalogue's victims, for the whole module."""
    name = f"t_mcp_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    try:
        pg_server.execute(SETUP, dbname=name)
        yield TempDatabase(pg_server, name)
    finally:
        if pg_server.is_running:
            pg_server.drop_database(name, force=True)


@pytest.fixture
def config(mcp_db: TempDatabase, app_name: str, tmp_path: Path) -> Path:
    """Two named databases: ``ro`` (the default read-only guard, 100 rows,
    1 s) and ``rw`` (writes allowed)."""
    url = mcp_db.url()
    path = tmp_path / "pgharbor.toml"
    path.write_text(
        f"""
[databases.ro]
url = {json.dumps(url)}
application_name = {json.dumps(app_name)}
min_size = 1
max_size = 1
[databases.ro.guard]
max_rows = 100
timeout = 1.0

[databases.rw]
url = {json.dumps(url)}
application_name = {json.dumps(app_name)}
min_size = 1
max_size = 1
[databases.rw.guard]
allow_writes = true
"""
    )
    return path


@asynccontextmanager
async def mcp_session(config: Path) -> AsyncIterator[ClientSession]:
    """``pgharbor mcp --config FILE`` as a subprocess, and a client session to it."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", "from pgharbor.cli import main; main()", "mcp", "--config", str(config)],
    )
    with open(Path(config).with_suffix(".stderr"), "w") as errlog:  # noqa: ASYNC230 (once)
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, **args: Any) -> tuple[bool, Any]:
    """``(is_error, structured result or error text)`` of one tool call."""
    result = await session.call_tool(tool, args)
    if result.is_error:
        return True, " ".join(getattr(block, "text", "") for block in result.content)
    data = result.structured_content
    if isinstance(data, dict) and set(data) == {"result"}:
        data = data["result"]
    return False, data


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def assert_untouched(server: PostgresServer, database: TempDatabase, app_name: str) -> None:
    name = database.name
    assert server.execute("SELECT count(*), min(note) FROM victim", dbname=name) == [(1, "intact")]
    assert server.execute("SELECT last_value, is_called FROM seq", dbname=name) == [(1, False)]
    assert server.execute("SELECT to_regclass('pwned')", dbname=name) == [(None,)]
    busy = server.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'",
        (app_name,),
    )
    assert busy == [(0,)]


async def test_tools_describe_the_database(config: Path, mcp_db: TempDatabase) -> None:
    """The tools list databases, schemas, tables, a table's columns, keys and
    indexes, run and explain a query, and report health and check."""
    async with mcp_session(config) as session:
        listed = await session.list_tools()
        assert {tool.name for tool in listed.tools} == TOOLS
        failed, dbs = await call(session, "list_databases")
        assert not failed
        assert {d["name"]: d["read_only"] for d in dbs} == {"ro": True, "rw": False}
        failed, text = await call(session, "list_tables")
        assert failed and "several databases" in text
        failed, schemas = await call(session, "list_schemas", database="ro")
        assert not failed and "public" in [s["schema"] for s in schemas]
        failed, tables = await call(session, "list_tables", database="ro")
        assert not failed and {"name": "victim", "kind": "table"}.items() <= tables[0].items()
        failed, table = await call(session, "describe_table", table="victim", database="ro")
        assert not failed
        assert [(c["name"], c["type"], c["nullable"]) for c in table["columns"]] == [
            ("id", "integer", False),
            ("note", "text", True),
        ]
        assert table["constraints"][0]["kind"] == "primary key"
        assert table["indexes"][0]["primary"] is True
        failed, text = await call(session, "describe_table", table="nope", database="ro")
        assert failed and "no table or view public.nope" in text
        failed, result = await call(session, "run_query", sql="TABLE victim", database="ro")
        assert not failed
        assert result["columns"] == ["id", "note"] and result["rows"] == [[1, "intact"]]
        assert result["truncated"] is False
        failed, plan = await call(
            session, "explain_query", sql="SELECT * FROM victim", database="ro"
        )
        assert not failed and "victim" in plan["plan"]
        failed, text = await call(session, "explain_query", sql="DELETE FROM victim", database="ro")
        assert failed and "GuardRefused" in text
        failed, health = await call(session, "health", database="ro")
        assert not failed
        assert health[0]["reachable"] is True and health[0]["can_write"] is True  # superuser
        assert health[0]["health"]["healthy"] is True


async def test_escape_catalogue_through_run_query(
    config: Path, mcp_db: TempDatabase, pg_server: PostgresServer, app_name: str
) -> None:
    """Every text of the catalogue sent to run_query (read-only database) has
    its expected outcome, writes nothing and leaves the session clean."""
    # run_query takes no parameters; a text that is not valid UTF-8 (a lone
    # surrogate) cannot travel over the protocol at all.
    cases = [case for case in CASES if case.params is None and _utf8(case.sql)]
    async with mcp_session(config) as session:
        for case in cases:
            failed, result = await call(session, "run_query", sql=case.sql, database="ro")
            kinds = case.expect.split("|")
            if not failed:
                got = "ok"
            elif "GuardRefused" in result:
                got = "refused"
                rules = [k.partition(":")[2] for k in kinds if k.startswith("refused")]
                assert any(f"({rule})" in result for rule in rules if rule) or not any(rules), (
                    case.id,
                    result,
                )
            elif "TimeoutError" in result:
                got = "timeout"
            else:
                got = "error"
            assert got in [k.partition(":")[0] for k in kinds], (case.id, got, result)
            if got == "ok" and case.truncated is not None:
                assert result["truncated"] is case.truncated, case.id
                assert result["row_count"] <= 100
            assert_untouched(pg_server, mcp_db, app_name)
            failed, probe = await call(session, "run_query", sql=SESSION_PROBE, database="ro")
            assert not failed and probe["rows"][0] == CLEAN, (case.id, probe)


async def test_writes_only_where_configured(
    config: Path, mcp_db: TempDatabase, pg_server: PostgresServer
) -> None:
    """The rw database commits one write per call; ro refuses it."""
    async with mcp_session(config) as session:
        failed, text = await call(
            session, "run_query", sql="INSERT INTO victim VALUES (2, 'new')", database="ro"
        )
        assert failed and "(statement-kind)" in text
        failed, result = await call(
            session,
            "run_query",
            sql="INSERT INTO victim VALUES (2, 'new') RETURNING id",
            database="rw",
        )
        assert not failed and result["rows"] == [[2]]
        try:
            assert pg_server.execute("SELECT count(*) FROM victim", dbname=mcp_db.name) == [(2,)]
            failed, text = await call(
                session, "run_query", sql="DELETE FROM victim; DROP TABLE victim", database="rw"
            )
            assert failed and "(one-statement)" in text
        finally:
            pg_server.execute("DELETE FROM victim WHERE id = 2", dbname=mcp_db.name)


async def test_timeout_and_server_restart(
    config: Path, mcp_db: TempDatabase, pg_server: PostgresServer
) -> None:
    """A statement past the timeout comes back as an error and the next call
    works; after the PostgreSQL server restarts under the running MCP server,
    the next query succeeds."""
    async with mcp_session(config) as session:
        failed, text = await call(session, "run_query", sql="SELECT pg_sleep(5)", database="ro")
        assert failed and "TimeoutError" in text
        failed, result = await call(session, "run_query", sql="SELECT 1 AS one", database="ro")
        assert not failed and result["rows"] == [[1]]
        pg_server.restart()
        failed, result = await call(session, "run_query", sql="SELECT 2 AS two", database="ro")
        assert not failed, result
        assert result["rows"] == [[2]]
        failed, health = await call(session, "health", database="ro")
        assert not failed and health[0]["reachable"] is True
