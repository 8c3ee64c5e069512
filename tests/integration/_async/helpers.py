"""Driver-neutral helpers for the shared pool tests."""

from __future__ import annotations

from typing import Any

if True:  # ASYNC
    DRIVERS = ["psycopg", "asyncpg"]
else:
    DRIVERS = ["psycopg", "psycopg2"]


async def query(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a native connection of any supported driver; return rows."""
    if hasattr(conn, "fetch"):  # asyncpg
        return [tuple(r) for r in await conn.fetch(sql)]
    if not hasattr(conn, "execute"):  # psycopg2 has only cursors
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []
    cur = await conn.execute(sql)
    return list(await cur.fetchall()) if cur.description else []


async def backend_pid(conn: Any) -> int:
    """The server process serving ``conn``."""
    rows = await query(conn, "SELECT pg_backend_pid()")
    return int(rows[0][0])
