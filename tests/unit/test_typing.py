"""User code type-checked with ``mypy --strict``: the typos a user makes fail
exactly where they are (a misspelt setting, a method the driver's connection
lacks), and correct code passes with precise types."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

pytestmark = pytest.mark.slow

# Each line that must fail ends with "# E: <error code>"; no other line may.
ASYNC_CODE = """
    from typing import Any, assert_type

    import asyncpg
    import psycopg

    import pgharbor


    async def pools(url: str) -> None:
        async with pgharbor.AsyncPool(url, max_size=4, reset="session") as pool:
            async with pool.connection() as conn:
                assert_type(conn, psycopg.AsyncConnection[tuple[Any, ...]])
                await conn.execute("SELECT 1")
                await conn.fetch("SELECT 1")  # E: attr-defined
        pool2 = pgharbor.AsyncPool(url, driver="asyncpg")
        conn2 = await pool2.acquire()
        assert_type(conn2, asyncpg.Connection)
        await conn2.fetchval("SELECT 1")
        await conn2.commit()  # E: attr-defined
        await pool2.release(conn2)
        pgharbor.AsyncPool(url, max_sise=4)  # E: call-overload
        pgharbor.AsyncPool(url, reset="sesion")  # E: call-overload
        stats = pool2.stats()
        assert_type(stats["waiting"], int)
        stats["wait"]  # E: typeddict-item


    async def databases(url: str, name: str) -> None:
        pgharbor.AsyncDatabase(url, max_sise=3)  # E: call-overload
        pgharbor.AsyncDatabase(url, statement_timout="5s")  # E: call-overload
        pgharbor.AsyncDatabase(url, reads="replicas", replicas=[url])  # E: call-overload
        db = pgharbor.AsyncDatabase(
            url, name="main", statement_timeout="5s", search_path=["app"], max_size=10
        )
        async with db:
            rows = await db.fetch("SELECT 1 AS id")
            value: int = rows[0].id + rows[0]["id"]
            as_dict: dict[str, Any] = dict(rows[0])
            async with db.transaction() as tx:
                await tx.conn.execute("SELECT 1")
                await tx.conn.fetch("SELECT 1")  # E: attr-defined
            totals = db.stats()
            assert_type(totals["queries"], int)
            totals["query"]  # E: typeddict-item
        adb = pgharbor.AsyncDatabase(url, driver="asyncpg")
        async with adb.connection() as conn:
            assert_type(conn, asyncpg.Connection)
            await conn.cursor()  # E: call-overload
        dynamic = pgharbor.AsyncDatabase(url, driver=name)
        async with dynamic.connection() as anything:
            assert_type(anything, Any)
        settings = pgharbor.DatabaseSettings(url=url)
        pgharbor.AsyncDatabase(settings=settings, metrics=None)
        pgharbor.AsyncDatabase(settings=settings, max_size=3)  # E: call-overload
"""

SYNC_CODE = """
    from typing import Any, assert_type

    import psycopg
    import psycopg2.extensions

    import pgharbor


    def pools(url: str) -> None:
        with pgharbor.Pool(url, driver="psycopg2") as pool:
            with pool.connection() as conn:
                assert_type(conn, psycopg2.extensions.connection)
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.execute("SELECT 1")  # E: attr-defined
        with pgharbor.Pool(url, min_size=1) as pool3:
            with pool3.connection() as conn3:
                assert_type(conn3, psycopg.Connection[tuple[Any, ...]])
                conn3.execute("SELECT 1").fetchall()
        pgharbor.Pool(url, timeout="5")  # E: call-overload


    def databases(url: str) -> None:
        db = pgharbor.Database(url, pgbouncer=True, max_size=3)
        with db.connection() as conn:
            assert_type(conn, psycopg.Connection[tuple[Any, ...]])
            conn.fetch("SELECT 1")  # E: attr-defined
        db2 = pgharbor.Database(url, driver="psycopg2")
        with db2.transaction() as tx:
            assert_type(tx.conn, psycopg2.extensions.connection)
        pgharbor.Database(url, pg_bouncer=True)  # E: call-overload
        pgharbor.Database(url, password=lambda: "secret")
"""

_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<msg>.*?)\s+\[(?P<code>[\w-]+)\]$")
_EXPECT = re.compile(r"#\s*E:\s*(?P<code>[\w-]+)\s*$")


def _expected(path: Path) -> set[tuple[str, int, str]]:
    out = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(line)
        if match:
            out.add((path.name, number, match["code"]))
    return out


def test_user_code_fails_exactly_at_the_typos(tmp_path: Path) -> None:
    """mypy --strict flags each misspelt setting and each method the driver's
    connection lacks, on its line, and nothing else."""
    files = {"user_async.py": ASYNC_CODE, "user_sync.py": SYNC_CODE}
    paths = []
    for name, code in files.items():
        path = tmp_path / name
        path.write_text(textwrap.dedent(code).lstrip())
        paths.append(path)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\nwarn_unused_ignores = True\n")
    stdout, stderr, _ = api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            *map(str, paths),
        ]
    )
    assert not stderr, stderr
    found = set()
    for line in stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            found.add((Path(match["file"]).name, int(match["line"]), match["code"]))
    expected = set().union(*(_expected(p) for p in paths))
    assert found == expected, (
        f"unexpected: {sorted(found - expected)}\nmissing: {sorted(expected - found)}\n{stdout}"
    )
