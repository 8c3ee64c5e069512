"""pgharbor.sql: quoting by PostgreSQL's rules, composition, driver placeholders."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest

from pgharbor import sql
from pgharbor.sql import SQL, Identifier, Literal, Placeholder


@pytest.mark.parametrize(
    ("name", "rendered"),
    [
        ("users", "users"),
        ("user_2", "user_2"),
        ("_x", "_x"),
        ("User", '"User"'),
        ("select", '"select"'),
        ("order", '"order"'),
        ("user", '"user"'),
        ("left", '"left"'),  # a type/function-name keyword
        ("between", '"between"'),  # a column-name keyword
        ("name", "name"),  # unreserved: stays bare
        ("2fast", '"2fast"'),
        ("a b", '"a b"'),
        ('say "hi"', '"say ""hi"""'),
        ("ünïcode", '"ünïcode"'),
        ("a.b", '"a.b"'),
    ],
)
def test_identifiers_quote_like_postgres(name: str, rendered: str) -> None:
    """Identifiers are bare only when PostgreSQL would read them back unchanged."""
    assert Identifier(name).render() == rendered


def test_qualified_identifiers_and_bad_names() -> None:
    """Parts are quoted one by one and joined with dots; empty, NUL and
    non-str names are refused at once."""
    assert Identifier("Public", "my table").render() == '"Public"."my table"'
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError):
            Identifier(bad)
    with pytest.raises(ValueError):
        Identifier()
    with pytest.raises(TypeError):
        Identifier(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (None, "NULL"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-1, "(-1)"),
        (1.5, "1.5"),
        (-2.5, "(-2.5)"),
        (float("nan"), "'NaN'::float8"),
        (float("inf"), "'Infinity'::float8"),
        (decimal.Decimal("-1.10"), "(-1.10)"),
        (decimal.Decimal("NaN"), "'NaN'::numeric"),
        ("it's", "'it''s'"),
        ("back\\slash", "E'back\\\\slash'"),
        ("", "''"),
        (b"\x00\xff", "E'\\\\x00ff'::bytea"),
        (datetime.date(2024, 2, 29), "'2024-02-29'::date"),
        (datetime.datetime(2024, 1, 2, 3, 4, 5), "'2024-01-02T03:04:05'::timestamp"),
        (
            datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
            "'2024-01-02T00:00:00+00:00'::timestamptz",
        ),
        (datetime.time(1, 2), "'01:02:00'::time"),
        (datetime.timedelta(days=1, seconds=2), "'1 days 2 seconds 0 microseconds'::interval"),
        (
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "'12345678-1234-5678-1234-567812345678'::uuid",
        ),
    ],
)
def test_literals(value: object, rendered: str) -> None:
    """Each supported type renders as a constant with the same meaning."""
    assert Literal(value).render() == rendered


def test_literal_refuses_what_it_cannot_render() -> None:
    """Lists, dicts and objects are refused (pass them as parameters); so is NUL."""
    for bad in ([1], {"a": 1}, object()):
        with pytest.raises(TypeError):
            Literal(bad)
    with pytest.raises(ValueError):
        Literal("a\x00b")


def test_negative_number_cannot_start_a_comment() -> None:
    """x - Literal(-1) is x - (-1), never x --1 (a comment)."""
    q = SQL("SELECT 5 -{}").format(Literal(-1))
    assert q.render() == "SELECT 5 -(-1)"


def test_format_fills_fields_with_composables_only() -> None:
    """format takes {}, {0} and {name} fields; plain strings are refused."""
    mixed = SQL("SELECT {} FROM {t} WHERE {0} = {v}")
    with pytest.raises(ValueError):
        mixed.format(Identifier("a"), t=Identifier("t"), v=Literal(1))  # auto and numbered
    q = SQL("SELECT {0} FROM {t} WHERE {0} = {v}").format(
        Identifier("Id"), t=Identifier("t"), v=Literal(1)
    )
    assert q.render() == 'SELECT "Id" FROM t WHERE "Id" = 1'
    with pytest.raises(TypeError):
        SQL("SELECT {}").format("1; DROP TABLE t")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SQL("SELECT {!r}").format(Literal(1))
    with pytest.raises(IndexError):
        SQL("SELECT {}, {}").format(Literal(1))
    assert SQL("SELECT '{{}}'").format().render() == "SELECT '{}'"


def test_placeholders_follow_the_driver() -> None:
    """%s for psycopg and psycopg2, $n in order for asyncpg; named ones are
    psycopg-only; % inside quoted parts is doubled when placeholders are present."""
    q = SQL("SELECT {} WHERE a = {} AND b LIKE {}").format(
        Identifier("50%"), Placeholder(), Placeholder()
    )
    assert q.render("psycopg") == 'SELECT "50%%" WHERE a = %s AND b LIKE %s'
    assert q.render("psycopg2") == 'SELECT "50%%" WHERE a = %s AND b LIKE %s'
    assert q.render("asyncpg") == 'SELECT "50%" WHERE a = $1 AND b LIKE $2'
    assert SQL("{}").format(Literal("5%")).render("psycopg") == "'5%'"
    named = SQL("a = {}").format(Placeholder("a"))
    assert named.render("psycopg") == "a = %(a)s"
    with pytest.raises(ValueError):
        named.render("asyncpg")
    with pytest.raises(ValueError):
        q.render("mysql")
    with pytest.raises(ValueError):
        Placeholder("a b")


def test_join_and_concatenation() -> None:
    """SQL.join puts a separator between parts; + concatenates."""
    cols = SQL(", ").join([Identifier("a"), Identifier("B")])
    assert cols.render() == 'a, "B"'
    assert (SQL("SELECT ") + cols).render() == 'SELECT a, "B"'
    assert str(Identifier("x")) == "x"
    assert sql.quote_ident("Table") == '"Table"'
    assert sql.quote_literal(None) == "NULL"
