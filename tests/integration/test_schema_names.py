"""Identifier quoting and default names against what the server does."""

from __future__ import annotations

import pytest
from psycopg import sql

from pgharbor.schema import quote_ident
from pgharbor.schema.names import default_name, is_default_name
from pgharbor.testing import PostgresServer, TempDatabase

ODD_NAMES = ["plain", "Mixed", "with space", 'quo"te', "café", "Ünï", "_ok1", "1st", "a$b", "x-y"]


def test_quote_ident_agrees_with_the_server(pg_server: PostgresServer) -> None:
    """Wherever the server quotes a keyword or an odd name, so do we; for
    odd names we agree exactly (a word a newer server reserves may be quoted
    for an older one too)."""
    keywords = [r[0] for r in pg_server.execute("SELECT word FROM pg_get_keywords()")]
    names = keywords + ODD_NAMES
    rows = pg_server.execute("SELECT n, quote_ident(n) FROM unnest(%s::text[]) AS n", (names,))
    theirs = dict(rows)
    for name in names:
        if theirs[name] != name:
            assert quote_ident(name) == theirs[name], name
    for name in ODD_NAMES:
        assert quote_ident(name) == theirs[name], name


@pytest.mark.parametrize(
    "table",
    ["orders", "t" * 63, "é" * 31, "Mixed Case Table Whose Name Is Rather Long Indeed, Yes"],
)
def test_default_names_match_the_servers(pg_database: TempDatabase, table: str) -> None:
    """For short, maximal and multibyte table names, the constraint and index
    names the server chose are the ones default_name() computes, including
    the number it adds on a clash."""
    col = "customer_identifier_" + "ü" * 10
    t = sql.Identifier(table)
    c = sql.Identifier(col)
    pg_database.server.execute(
        sql.SQL(
            "CREATE TABLE {t} (id int PRIMARY KEY, {c} int UNIQUE CHECK ({c} > 0), ref int"
            " REFERENCES {t} (id)); CREATE INDEX ON {t} ({c}); CREATE INDEX ON {t} ({c});"
            " CREATE INDEX ON {t} (lower({c}::text))"
        ).format(t=t, c=c),
        dbname=pg_database.name,
    )
    rows = pg_database.server.execute(
        "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY 1",
        (quote_ident(table),),
        dbname=pg_database.name,
    )
    by_kind = {kind: name for name, kind in rows}
    assert by_kind["p"] == default_name(table, None, "pkey")
    assert by_kind["u"] == default_name(table, col, "key")
    assert by_kind["c"] == default_name(table, col, "check")
    assert by_kind["f"] == default_name(table, "ref", "fkey")
    indexes = [
        r[0]
        for r in pg_database.server.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass"
            " AND NOT indisunique ORDER BY 1",
            (quote_ident(table),),
            dbname=pg_database.name,
        )
    ]
    expected = {
        default_name(table, col, "idx"),
        default_name(table, col, "idx1"),
        default_name(table, "lower", "idx"),
    }
    assert {_unquote(i) for i in indexes} == expected
    for name in expected:
        assert is_default_name(name, table, "idx", [[col], ["lower"]])


def _unquote(text: str) -> str:
    """A regclass text back to the bare name (no schema: public is on the path)."""
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text
