"""Driver-neutral helpers for the shared pool tests."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Any

import pytest

from pgharbor._acompat import asleep

if True:  # ASYNC
    DRIVERS = ["psycopg", "asyncpg"]
else:
    DRIVERS = ["psycopg", "psycopg2"]


def ph(driver: str, n: int) -> str:
    """The driver's n-th placeholder (1-based)."""
    return f"${n}" if driver == "asyncpg" else "%s"


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


async def wait_until(check: Callable[[], bool], timeout: float, what: str = "condition") -> float:
    """Poll ``check``; the time it took (fail after ``timeout``)."""
    start = monotonic()
    while not check():
        if monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:.1f} s")
        await asleep(0.01)
    return monotonic() - start
