"""The work each loop does, per driver: the same function for raw and pooled.

- ``select1``: ``SELECT 1`` and read the row;
- ``pk``: a point ``SELECT`` by primary key on a 100k-row table;
- ``write``: a short write transaction (``BEGIN; UPDATE … WHERE id = …; COMMIT``).

The ``Database`` candidates do the same reads through ``db.fetchval`` (one
call = acquire + query + release): ``select1`` and ``pk`` only.
"""

from __future__ import annotations

import random
from typing import Any

from ._harness import ACall, AQuery, Call, Query

__all__ = [
    "DB_WORKLOADS",
    "ROWS",
    "WORKLOADS",
    "async_db_call",
    "async_query",
    "pgbench_script",
    "setup_tables",
    "sync_db_call",
    "sync_query",
]

WORKLOADS = ("select1", "pk", "write")
#: The workloads the ``Database.fetchval`` candidates run (reads only).
DB_WORKLOADS = ("select1", "pk")
ROWS = 100_000
_TABLE = "bench_items"
_rand = random.Random(42)


def setup_tables(pg: Any) -> None:
    """Create and fill the table the ``pk`` and ``write`` workloads use."""
    pg.execute(f"DROP TABLE IF EXISTS {_TABLE}")
    pg.execute(f"CREATE TABLE {_TABLE} (id int PRIMARY KEY, v int NOT NULL)")
    pg.execute(f"INSERT INTO {_TABLE} SELECT g, 0 FROM generate_series(1, {ROWS}) g")
    pg.execute(f"VACUUM ANALYZE {_TABLE}")


def _key() -> int:
    return _rand.randint(1, ROWS)


# -- psycopg (sync) ---------------------------------------------------------------

_PK_PG = f"SELECT v FROM {_TABLE} WHERE id = %s"
_UPD_PG = f"UPDATE {_TABLE} SET v = v + 1 WHERE id = %s"


def _psycopg_select1(conn: Any) -> None:
    conn.execute("SELECT 1").fetchone()


def _psycopg_pk(conn: Any) -> None:
    conn.execute(_PK_PG, (_key(),)).fetchone()


def _psycopg_write(conn: Any) -> None:
    with conn.transaction():
        conn.execute(_UPD_PG, (_key(),))


# -- psycopg2 ---------------------------------------------------------------------


def _psycopg2_select1(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchone()
    cur.close()


def _psycopg2_pk(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute(_PK_PG, (_key(),))
    cur.fetchone()
    cur.close()


def _psycopg2_write(conn: Any) -> None:
    # Connections are in autocommit, as in every other candidate: explicit BEGIN.
    cur = conn.cursor()
    cur.execute("BEGIN")
    cur.execute(_UPD_PG, (_key(),))
    cur.execute("COMMIT")
    cur.close()


# -- psycopg (async) --------------------------------------------------------------


async def _apsycopg_select1(conn: Any) -> None:
    cur = await conn.execute("SELECT 1")
    await cur.fetchone()


async def _apsycopg_pk(conn: Any) -> None:
    cur = await conn.execute(_PK_PG, (_key(),))
    await cur.fetchone()


async def _apsycopg_write(conn: Any) -> None:
    async with conn.transaction():
        await conn.execute(_UPD_PG, (_key(),))


# -- asyncpg ----------------------------------------------------------------------

_PK_APG = f"SELECT v FROM {_TABLE} WHERE id = $1"
_UPD_APG = f"UPDATE {_TABLE} SET v = v + 1 WHERE id = $1"


async def _asyncpg_select1(conn: Any) -> None:
    await conn.fetchrow("SELECT 1")


async def _asyncpg_pk(conn: Any) -> None:
    await conn.fetchrow(_PK_APG, _key())


async def _asyncpg_write(conn: Any) -> None:
    async with conn.transaction():
        await conn.execute(_UPD_APG, _key())


_SYNC: dict[tuple[str, str], Query] = {
    ("psycopg", "select1"): _psycopg_select1,
    ("psycopg", "pk"): _psycopg_pk,
    ("psycopg", "write"): _psycopg_write,
    ("psycopg2", "select1"): _psycopg2_select1,
    ("psycopg2", "pk"): _psycopg2_pk,
    ("psycopg2", "write"): _psycopg2_write,
}
_ASYNC: dict[tuple[str, str], AQuery] = {
    ("psycopg", "select1"): _apsycopg_select1,
    ("psycopg", "pk"): _apsycopg_pk,
    ("psycopg", "write"): _apsycopg_write,
    ("asyncpg", "select1"): _asyncpg_select1,
    ("asyncpg", "pk"): _asyncpg_pk,
    ("asyncpg", "write"): _asyncpg_write,
}


def sync_query(driver: str, workload: str) -> Query:
    """The sync loop body for *driver* (``psycopg`` / ``psycopg2``)."""
    return _SYNC[driver, workload]


def async_query(driver: str, workload: str) -> AQuery:
    """The async loop body for *driver* (``psycopg`` / ``asyncpg``)."""
    return _ASYNC[driver, workload]


def sync_db_call(db: Any, driver: str, workload: str) -> Call:
    """The loop body of a sync ``Database`` candidate: one ``fetchval`` call."""
    if workload == "select1":
        return lambda: db.fetchval("SELECT 1")
    if workload == "pk":
        return lambda: db.fetchval(_PK_PG, (_key(),))
    raise KeyError((driver, workload))


def async_db_call(db: Any, driver: str, workload: str) -> ACall:
    """The loop body of an async ``Database`` candidate: one ``fetchval`` call."""
    if workload == "select1":
        return lambda: db.fetchval("SELECT 1")
    if workload == "pk":
        sql = _PK_APG if driver == "asyncpg" else _PK_PG
        return lambda: db.fetchval(sql, (_key(),))
    raise KeyError((driver, workload))


def pgbench_script(workload: str) -> str:
    """The same workload as a pgbench custom script."""
    if workload == "select1":
        return "SELECT 1;\n"
    if workload == "pk":
        return f"\\set id random(1, {ROWS})\nSELECT v FROM {_TABLE} WHERE id = :id;\n"
    return (
        f"\\set id random(1, {ROWS})\n"
        f"BEGIN;\nUPDATE {_TABLE} SET v = v + 1 WHERE id = :id;\nCOMMIT;\n"
    )
