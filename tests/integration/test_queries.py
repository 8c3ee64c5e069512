"""One suite for the four query adapters (pgharbor.drivers.query), on a real server."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgharbor._policy.sqlstate import sqlstate_of
from pgharbor.drivers import (
    ConnStatus,
    get_async_driver,
    get_async_queries,
    get_driver,
    get_queries,
)
from pgharbor.drivers.queries_asyncpg import AsyncpgQueries, rows_affected
from pgharbor.drivers.queries_psycopg import AsyncPsycopgQueries, PsycopgQueries
from pgharbor.drivers.queries_psycopg2 import Psycopg2Queries
from pgharbor.drivers.query import AsyncQueries, Isolation, Queries, Row
from pgharbor.errors import ConfigError

ADAPTERS = ["psycopg-sync", "psycopg-async", "asyncpg", "psycopg2"]
SLACK = 0.5 * float(os.environ.get("PGHARBOR_TIMING_SLACK", "1"))

# The classes satisfy the protocols (checked by mypy, not at run time).
_CONFORMS: tuple[AsyncQueries, AsyncQueries, Queries, Queries] = (
    AsyncPsycopgQueries(),
    AsyncpgQueries(),
    PsycopgQueries(),
    Psycopg2Queries(),
)


def make(adapter: str) -> tuple[Any, Any]:
    """The (driver, queries) pair for ``adapter``, as a pool would build them."""
    if adapter == "psycopg-async":
        return get_async_driver("psycopg"), get_async_queries("psycopg")
    if adapter == "asyncpg":
        return get_async_driver("asyncpg"), get_async_queries("asyncpg")
    name = "psycopg2" if adapter == "psycopg2" else "psycopg"
    return get_driver(name), get_queries(name)


async def call(obj: Any, method: str, *args: Any) -> Any:
    """Call ``obj.method(*args)``, awaiting the result if the adapter is async."""
    result = getattr(obj, method)(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def ph(adapter: str, n: int) -> str:
    """The driver's placeholder for the ``n``-th (1-based) parameter."""
    return f"${n}" if adapter == "asyncpg" else "%s"


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(adapter: str) -> tuple[Any, Any]:
    return make(adapter)


@pytest.fixture
def q(pair: tuple[Any, Any]) -> Any:
    return pair[1]


@pytest.fixture
async def conn(pair: tuple[Any, Any], pg_database: Any, app_name: str) -> AsyncIterator[Any]:
    drv = pair[0]
    params = conninfo_to_dict(pg_database.conninfo(application_name=app_name))
    c = await call(drv, "connect", params, 10.0)
    try:
        yield c
    finally:
        await call(drv, "close", c, 5.0)


async def test_fetch_rows_with_names(q: Any, conn: Any) -> None:
    """fetch returns Rows that compare as tuples and answer column names."""
    rows = await call(
        q,
        "fetch",
        conn,
        "SELECT 1 AS id, 'x' AS name UNION ALL SELECT 2, 'y' ORDER BY 1",
        None,
        None,
    )
    assert rows == [(1, "x"), (2, "y")]
    assert all(isinstance(r, Row) for r in rows)
    assert type(rows[0]) is type(rows[1])  # one class per result
    assert rows[1]["name"] == "y" and rows[1][0] == 2
    assert rows[0].keys() == ["id", "name"]
    assert dict(rows[0].items()) == {"id": 1, "name": "x"}
    with pytest.raises(KeyError, match="no column 'nope'"):
        rows[0]["nope"]


async def test_fetchrow_and_fetchval(q: Any, conn: Any) -> None:
    """fetchrow gives the first row, fetchval its first column; None when no row."""
    row = await call(q, "fetchrow", conn, "SELECT 7 AS a, 'b' AS b", None, None)
    assert isinstance(row, Row)
    assert row["b"] == "b"
    assert row == (7, "b")
    assert await call(q, "fetchval", conn, "SELECT 42 AS answer", None, None) == 42
    empty = "SELECT 1 AS a WHERE false"
    assert await call(q, "fetch", conn, empty, None, None) == []
    assert await call(q, "fetchrow", conn, empty, None, None) is None
    assert await call(q, "fetchval", conn, empty, None, None) is None
    assert await call(q, "fetchval", conn, "SELECT NULL::int", None, None) is None


async def test_params(q: Any, conn: Any, adapter: str) -> None:
    """Parameters use the driver's placeholders; without params '%' is literal."""
    sql = f"SELECT {ph(adapter, 1)}::int + {ph(adapter, 2)}::int AS total"
    assert await call(q, "fetchval", conn, sql, [2, 3], None) == 5
    row = await call(q, "fetchrow", conn, f"SELECT {ph(adapter, 1)}::text AS t", ("é%s",), None)
    assert row["t"] == "é%s"
    assert await call(q, "fetchval", conn, "SELECT 'a%b'", None, None) == "a%b"
    if adapter != "asyncpg":  # named placeholders: psycopg and psycopg2
        named = "SELECT %(x)s::int * %(y)s::int"
        assert await call(q, "fetchval", conn, named, {"x": 6, "y": 7}, None) == 42


async def test_execute_counts(q: Any, conn: Any, adapter: str) -> None:
    """execute returns rows affected for INSERT, UPDATE, DELETE and SELECT."""
    await call(q, "execute", conn, "CREATE TABLE t (id int PRIMARY KEY, v text)", None, None)
    n = await call(
        q, "execute", conn, "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 3) g", None, None
    )
    assert n == 3
    one = f"INSERT INTO t VALUES ({ph(adapter, 1)}, {ph(adapter, 2)})"
    assert await call(q, "execute", conn, one, [4, "w"], None) == 1
    upd = f"UPDATE t SET v = {ph(adapter, 1)} WHERE id > 1"
    assert await call(q, "execute", conn, upd, ["z"], None) == 3
    assert await call(q, "execute", conn, "DELETE FROM t WHERE id = 99", None, None) == 0
    assert await call(q, "execute", conn, "DELETE FROM t WHERE id <= 2", None, None) == 2
    assert await call(q, "execute", conn, "SELECT * FROM t", None, None) == 2


def test_rows_affected() -> None:
    """asyncpg command tags become counts; tags without one become -1."""
    assert rows_affected("INSERT 0 3") == 3
    assert rows_affected("UPDATE 5") == 5
    assert rows_affected("SELECT 2") == 2
    assert rows_affected("COPY 10") == 10
    assert rows_affected("CREATE TABLE") == -1
    assert rows_affected("BEGIN") == -1


async def test_executemany(q: Any, conn: Any, adapter: str) -> None:
    """executemany runs the statement once per parameter set."""
    await call(q, "execute", conn, "CREATE TABLE m (id int, v text)", None, None)
    sql = f"INSERT INTO m VALUES ({ph(adapter, 1)}, {ph(adapter, 2)})"
    await call(q, "executemany", conn, sql, [(i, f"v{i}") for i in range(250)], None)
    assert await call(q, "fetchval", conn, "SELECT count(*) FROM m", None, None) == 250
    assert await call(q, "fetchval", conn, "SELECT v FROM m WHERE id = 249", None, None) == "v249"


COPY_VALUES = [
    None,
    "tab\there",
    "new\nline\r\nand carriage",
    "back\\slash \\N \\t",
    "ünïcødé ✓ 日本",
    "",
    "\\N",
]


async def test_copy_records(q: Any, conn: Any) -> None:
    """copy_records quotes identifiers and round-trips awkward values exactly."""
    await call(q, "execute", conn, 'CREATE SCHEMA "Odd Schema"', None, None)
    await call(
        q,
        "execute",
        conn,
        'CREATE TABLE "Odd Schema"."Weird Name" ("ID" int, "the text" text, extra int DEFAULT 7)',
        None,
        None,
    )
    records = [(i, v) for i, v in enumerate(COPY_VALUES)]
    n = await call(
        q, "copy_records", conn, "Weird Name", records, ["ID", "the text"], "Odd Schema", None
    )
    assert n == len(records)
    got = await call(
        q,
        "fetch",
        conn,
        'SELECT "ID", "the text", extra FROM "Odd Schema"."Weird Name" ORDER BY 1',
        None,
        None,
    )
    assert [tuple(r) for r in got] == [(i, v, 7) for i, v in records]


async def test_copy_records_defaults(q: Any, conn: Any) -> None:
    """Without schema or columns, COPY fills every column of a search-path table."""
    await call(q, "execute", conn, 'CREATE TABLE "a""quote" (x int, y text)', None, None)
    n = await call(
        q, "copy_records", conn, 'a"quote', iter([(1, "a"), (2, None)]), None, None, None
    )
    assert n == 2
    got = await call(q, "fetch", conn, 'SELECT x, y FROM "a""quote" ORDER BY x', None, None)
    assert got == [(1, "a"), (2, None)]
    assert await call(q, "copy_records", conn, 'a"quote', [], None, None, None) == 0


@pytest.mark.parametrize("isolation", [None, *Isolation])
async def test_begin_isolation(
    q: Any, conn: Any, pair: tuple[Any, Any], isolation: Isolation | None
) -> None:
    """begin opens a transaction at the requested isolation level."""
    drv = pair[0]
    await call(q, "begin", conn, isolation, False, False)
    assert drv.status(conn) is ConnStatus.INTRANS
    level = await call(q, "fetchval", conn, "SHOW transaction_isolation", None, None)
    assert level == (isolation or Isolation.READ_COMMITTED).value
    assert await call(q, "fetchval", conn, "SHOW transaction_read_only", None, None) == "off"
    await call(q, "rollback", conn)
    assert drv.status(conn) is ConnStatus.IDLE


async def test_begin_read_only(q: Any, conn: Any, pair: tuple[Any, Any]) -> None:
    """A read-only transaction refuses writes with SQLSTATE 25006."""
    drv = pair[0]
    await call(q, "execute", conn, "CREATE TABLE r (x int)", None, None)
    await call(q, "begin", conn, Isolation.SERIALIZABLE, True, True)
    assert await call(q, "fetchval", conn, "SHOW transaction_read_only", None, None) == "on"
    assert await call(q, "fetchval", conn, "SHOW transaction_deferrable", None, None) == "on"
    with pytest.raises(Exception) as info:
        await call(q, "execute", conn, "INSERT INTO r VALUES (1)", None, None)
    assert sqlstate_of(info.value) == "25006"
    await call(q, "rollback", conn)
    assert drv.status(conn) is ConnStatus.IDLE


async def test_commit_and_rollback(q: Any, conn: Any, pair: tuple[Any, Any]) -> None:
    """COMMIT keeps the transaction's writes, ROLLBACK discards them."""
    drv = pair[0]
    await call(q, "execute", conn, "CREATE TABLE c (x int)", None, None)
    await call(q, "begin", conn, None, False, False)
    await call(q, "execute", conn, "INSERT INTO c VALUES (1)", None, None)
    await call(q, "commit", conn)
    await call(q, "begin", conn, Isolation.REPEATABLE_READ, False, False)
    await call(q, "execute", conn, "INSERT INTO c VALUES (2)", None, None)
    await call(q, "rollback", conn)
    assert drv.status(conn) is ConnStatus.IDLE
    assert await call(q, "fetch", conn, "SELECT x FROM c", None, None) == [(1,)]


async def test_errors_pass_through(q: Any, conn: Any, pair: tuple[Any, Any]) -> None:
    """Server errors reach the caller as the driver's own, with or without a timeout."""
    drv = pair[0]
    for timeout in (None, 5.0):
        with pytest.raises(Exception) as info:
            await call(q, "fetchval", conn, "SELEC 1", None, timeout)
        assert sqlstate_of(info.value) == "42601"
        assert not isinstance(info.value, TimeoutError)
        assert drv.status(conn) is ConnStatus.IDLE


def active_sleeps(pg_server: Any, app_name: str) -> int:
    rows = pg_server.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = %s AND state = 'active' AND query LIKE %s",
        [app_name, "%pg_sleep%"],
    )
    return int(rows[0][0])


def wait_no_sleeps(pg_server: Any, app_name: str) -> None:
    deadline = time.monotonic() + 1.0
    while active_sleeps(pg_server, app_name):
        assert time.monotonic() < deadline, "pg_sleep still running on the server"
        time.sleep(0.02)


@pytest.mark.timing
async def test_timeout_cancels_statement(
    q: Any, conn: Any, pair: tuple[Any, Any], pg_server: Any, app_name: str
) -> None:
    """A timeout raises TimeoutError on time, cancels the statement server-side
    and leaves the connection in a state the pool's return path handles."""
    drv = pair[0]
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await call(q, "fetchval", conn, "SELECT pg_sleep(5)", None, 0.3)
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed <= 0.3 + SLACK, elapsed
    wait_no_sleeps(pg_server, app_name)
    status = drv.status(conn)
    assert status in (ConnStatus.IDLE, ConnStatus.INERROR, ConnStatus.BROKEN), status
    if status is ConnStatus.BROKEN:
        return
    if status is ConnStatus.INERROR:
        await call(q, "rollback", conn)
    assert drv.status(conn) is ConnStatus.IDLE
    assert await call(q, "fetchval", conn, "SELECT 1", None, None) == 1


@pytest.mark.timing
async def test_timeout_in_transaction(
    q: Any, conn: Any, pair: tuple[Any, Any], pg_server: Any, app_name: str
) -> None:
    """A timeout inside a transaction aborts it; ROLLBACK makes the connection usable."""
    drv = pair[0]
    await call(q, "begin", conn, None, False, False)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        await call(q, "execute", conn, "SELECT pg_sleep(5)", None, 0.3)
    assert time.monotonic() - start <= 0.3 + SLACK
    wait_no_sleeps(pg_server, app_name)
    status = drv.status(conn)
    # asyncpg reports a failed transaction as merely "in transaction".
    assert status in (ConnStatus.INTRANS, ConnStatus.INERROR, ConnStatus.BROKEN), status
    if status is not ConnStatus.BROKEN:
        await call(q, "rollback", conn)
        assert drv.status(conn) is ConnStatus.IDLE
        assert await call(q, "fetchval", conn, "SELECT 2", None, None) == 2


async def test_timeout_never_hits_next_statement(q: Any, conn: Any) -> None:
    """A statement that beats its timeout leaves no cancel behind for the next one."""
    for _ in range(20):
        assert await call(q, "fetchval", conn, "SELECT 1", None, 0.05) == 1
    # Longer than every timer above: a stray cancel would fail this.
    await call(q, "execute", conn, "SELECT pg_sleep(0.2)", None, None)
    rows = await call(q, "fetch", conn, "SELECT generate_series(1, 3) AS n", None, 5.0)
    assert [r["n"] for r in rows] == [1, 2, 3]


def test_get_queries_rejects_unknown() -> None:
    """Unknown adapter names and options fail fast, naming the field."""
    with pytest.raises(ConfigError, match="driver"):
        get_queries("asyncpg")
    with pytest.raises(ConfigError, match="driver"):
        get_async_queries("psycopg2")
    with pytest.raises(ConfigError, match="nope"):
        get_queries("psycopg", nope=1)
