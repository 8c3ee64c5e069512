"""pgharbor.sql against real servers on every driver: what is rendered is
what PostgreSQL reads back (source of the generated sync tests)."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

from pgharbor import sql
from pgharbor._async.database import AsyncDatabase
from pgharbor.testing import TempDatabase

VALUES: list[tuple[str, Any]] = [
    ("text", "it's a \\ 'quoted' 50% \"string\" ünï"),
    ("int8", -9_000_000_000),
    ("float8", -1.25),
    ("numeric", decimal.Decimal("-12.500")),
    ("bool", False),
    ("bytea", b"\x00\x01\xfe\xff"),
    ("date", datetime.date(2024, 2, 29)),
    ("timestamptz", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
    ("interval", datetime.timedelta(days=2, seconds=7)),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("text", None),
]
NAMES = ["User", "select", "order by", 'quote"d', "50%", "plain"]


async def test_composed_statements_round_trip(
    pg_database: TempDatabase, app_name: str, driver: str
) -> None:
    """Identifiers with mixed case, reserved words, spaces, quotes and % make
    a table PostgreSQL names exactly so; literals of every supported type
    come back equal; placeholders take parameters in the driver's style."""
    async with AsyncDatabase(
        pg_database.conninfo(), driver=driver, min_size=1, kwargs={"application_name": app_name}
    ) as db:
        table = sql.Identifier("Weird Schema", "Table")
        await db.execute(
            sql.SQL("CREATE SCHEMA {}").format(sql.Identifier("Weird Schema")).render(driver)
        )
        columns = sql.SQL(", ").join(
            [sql.SQL("{} text").format(sql.Identifier(name)) for name in NAMES]
        )
        await db.execute(sql.SQL("CREATE TABLE {} ({})").format(table, columns).render(driver))
        got = await db.fetch(
            'SELECT attname FROM pg_attribute WHERE attrelid = \'"Weird Schema"."Table"\'::regclass'
            " AND attnum > 0 ORDER BY attnum"
        )
        assert [r[0] for r in got] == NAMES

        insert = sql.SQL("INSERT INTO {} ({}, {}) VALUES ({}, {})").format(
            table,
            sql.Identifier("50%"),
            sql.Identifier("User"),
            sql.Placeholder(),
            sql.Literal("5%"),
        )
        await db.execute(insert.render(driver), ("x%y",))
        row = await db.fetchrow(
            sql.SQL("SELECT {}, {} FROM {}")
            .format(sql.Identifier("50%"), sql.Identifier("User"), table)
            .render(driver)
        )
        assert row is not None and tuple(row) == ("x%y", "5%")

        for type_name, value in VALUES:
            query = sql.SQL("SELECT {}::{}").format(sql.Literal(value), sql.SQL(type_name))
            back = await db.fetchval(query.render(driver))
            if type_name == "bytea" and back is not None:
                back = bytes(back)
            if type_name == "uuid":  # psycopg2 returns text unless told otherwise
                back = uuid.UUID(str(back))
            assert back == value, (type_name, value, back)

        # A value that tries to break out of its quotes stays a value.
        evil = '\'); DROP TABLE "Weird Schema"."Table"; --'
        assert (
            await db.fetchval(sql.SQL("SELECT {}").format(sql.Literal(evil)).render(driver)) == evil
        )
        assert await db.fetchval('SELECT count(*) FROM "Weird Schema"."Table"') == 1
