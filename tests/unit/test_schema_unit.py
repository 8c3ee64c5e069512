"""Pure parts of pgharbor.schema: names, the reader's conversation, JSON, diff."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pgharbor.errors import ConfigError, InsufficientPrivileges, UnsupportedServerVersion
from pgharbor.facts import to_dollar
from pgharbor.schema import (
    Column,
    Constraint,
    DomainType,
    EnumType,
    Extension,
    Function,
    Grant,
    Index,
    Schema,
    SchemaSnapshot,
    Table,
    diff,
    qualify,
    quote_ident,
    read_schema_sync,
    snapshot_steps,
)
from pgharbor.schema.catalog import META, SCHEMAS, snapshot_queries
from pgharbor.schema.names import default_name, is_default_name

# -- names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("orders", "orders"),
        ("_x1", "_x1"),
        ("Orders", '"Orders"'),
        ("order", '"order"'),
        ("user", '"user"'),
        ("json_table", '"json_table"'),
        ("name", "name"),  # unreserved keyword
        ("1st", '"1st"'),
        ("a b", '"a b"'),
        ('a"b', '"a""b"'),
        ("café", '"café"'),
        ("a$", '"a$"'),
        ("", '""'),
    ],
)
def test_quote_ident(name: str, quoted: str) -> None:
    """Bare when PostgreSQL allows it, else double-quoted with quotes doubled."""
    assert quote_ident(name) == quoted


def test_qualify() -> None:
    """Each part quoted on its own."""
    assert qualify("Mixed Case", "select") == '"Mixed Case"."select"'


def test_default_names_are_made_as_postgresql_makes_them() -> None:
    """Table and middle part shortened (the longer first) to fit 63 bytes,
    never splitting a UTF-8 character."""
    assert default_name("orders", None, "pkey") == "orders_pkey"
    assert default_name("orders", "customer_id", "fkey") == "orders_customer_id_fkey"
    long = "t" * 70
    name = default_name(long, "col", "key")
    assert len(name.encode()) <= 63 and name == "t" * 55 + "_col_key"
    wide = "é" * 40  # 80 bytes
    name = default_name(wide, "a" * 40, "idx")
    assert len(name.encode()) <= 63 and "\ufffd" not in name
    assert name.endswith("_idx")


def test_is_default_name() -> None:
    """Default names match, with or without a clash number; others do not."""
    assert is_default_name("orders_pkey", "orders", "pkey", [None])
    assert is_default_name("orders_pkey1", "orders", "pkey", [None])
    assert is_default_name("orders_a_b_key", "orders", "key", [["a", "b"]])
    assert not is_default_name("orders_pk", "orders", "pkey", [None])
    assert not is_default_name("orders_a_key", "orders", "key", [["a", "b"]])
    assert is_default_name("t_lower_idx12", "t", "idx", [["lower"]])


# -- the catalogue queries ---------------------------------------------------------


@pytest.mark.parametrize("version", [130000, 140000, 150000, 160000, 170000, 180000])
def test_queries_convert_for_asyncpg(version: int) -> None:
    """Every statement has the placeholders its parameters need and converts
    to $n cleanly; the version picks the columns that exist."""
    queries = snapshot_queries(version)
    assert META.sql.count("%s") == 0 and SCHEMAS.sql.count("%s") == 2
    for sql in dataclasses.astuple(queries):
        assert sql.count("%s") == 1
        assert "$1" in to_dollar(sql) and "%" not in to_dollar(sql)
    assert ("conenforced" in queries.constraints) == (version >= 180000)
    assert ("prosqlbody" in queries.functions) == (version >= 140000)


# -- the reader's conversation -----------------------------------------------------

META_ROW = ("", 150004, "15.4", "shop", "alice", False)


class FakeServer:
    """Answers the reader's queries with canned rows; counts round trips."""

    def __init__(self, version: int = 150004, search_path: str = "") -> None:
        self.meta = (*META_ROW[:1], version, *META_ROW[2:])
        self.search_path = search_path
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self.sent.append((sql, params))
        if sql == META.sql:
            return [self.meta]
        if sql == SCHEMAS.sql:
            names = params[0] or ["public"]
            return [(n, "alice", None, None, self.search_path) for n in names]
        return []


def test_reader_sends_twelve_statements() -> None:
    """The session, the schemas, then one statement per kind, each with the
    schema names; an empty list of schemas stops after two."""
    server = FakeServer()
    snap = read_schema_sync(server, ["app", "Mixed Case"])
    assert len(server.sent) == 12
    assert server.sent[1][1] == (["app", "Mixed Case"], ["app", "Mixed Case"])
    assert all(p == (["app", "Mixed Case"],) for _, p in server.sent[2:])
    assert (snap.database, snap.user, snap.server_version) == ("shop", "alice", "15.4")
    assert [s.name for s in snap.schemas] == ["app", "Mixed Case"]
    assert snap.requested == ("app", "Mixed Case")
    empty = FakeServer()
    empty_snap = read_schema_sync(lambda q, p: [] if q == SCHEMAS.sql else empty(q, p), [])
    assert len(empty.sent) == 1 and empty_snap.schemas == ()
    server = FakeServer()
    read_schema_sync(server)
    assert server.sent[1][1] == (None, None)  # every user schema


def test_reader_refuses_statements_outside_one_transaction() -> None:
    """A search_path that did not survive to the second statement means the
    statements ran on different sessions or outside a transaction."""
    with pytest.raises(ValueError, match="one transaction"):
        read_schema_sync(FakeServer(search_path='"$user", public'))


def test_reader_refuses_old_servers_and_bad_schema_lists() -> None:
    """PostgreSQL 12 is refused; a string for schemas is a ConfigError."""
    with pytest.raises(UnsupportedServerVersion):
        read_schema_sync(FakeServer(version=120010))
    with pytest.raises(ConfigError, match="schemas: must be a list"):
        read_schema_sync(FakeServer(), "public")
    with pytest.raises(ConfigError, match="non-empty string"):
        read_schema_sync(FakeServer(), ["public", ""])


def test_permission_denied_becomes_insufficient_privileges() -> None:
    """SQLSTATE 42501 from any driver becomes InsufficientPrivileges, the
    driver's error kept as the cause; other errors pass through."""

    class Denied(Exception):
        sqlstate = "42501"

    def fetch(sql: str, params: tuple[Any, ...]) -> Any:
        raise Denied("permission denied for table pg_trigger")

    with pytest.raises(InsufficientPrivileges, match="pg_trigger") as info:
        read_schema_sync(fetch)
    assert isinstance(info.value.__cause__, Denied)

    def broken(sql: str, params: tuple[Any, ...]) -> Any:
        raise OSError("gone")

    with pytest.raises(OSError, match="gone"):
        read_schema_sync(broken)


def test_steps_are_a_plain_generator() -> None:
    """The conversation can be driven by hand (how the async runner works)."""
    steps = snapshot_steps(["app"])
    assert next(steps) == META
    query = steps.send([META_ROW])
    assert query.params == (["app"], ["app"])
    with pytest.raises(StopIteration) as done:
        steps.send([])
    assert isinstance(done.value.value, SchemaSnapshot)


# -- snapshots and JSON ------------------------------------------------------------


def col(name: str, position: int, **kw: Any) -> Column:
    return Column(name=name, type=kw.pop("type", "integer"), position=position, **kw)


def table(name: str = "t", **kw: Any) -> Table:
    kw.setdefault("columns", (col("id", 1, not_null=True),))
    kw.setdefault("owner", "alice")
    return Table(schema="app", name=name, **kw)


def snap(**kw: Any) -> SchemaSnapshot:
    kw.setdefault("schemas", (Schema("app", "alice"),))
    return SchemaSnapshot(
        database="shop", user="alice", server_version="16.2", server_version_num=160002, **kw
    )


def test_json_round_trip() -> None:
    """to_json / from_json rebuild an equal snapshot, nested objects and all."""
    original = snap(
        tables=(
            table(
                grants=(Grant("bob", "SELECT"),),
                constraints=(Constraint("t_pkey", "primary key", "PRIMARY KEY (id)", ("id",)),),
                indexes=(Index("t_pkey", "CREATE ...", "btree", unique=True, primary=True),),
                comment="ünï",
            ),
        ),
        enums=(EnumType("app", "mood", ("a", "b")),),
        domains=(DomainType("app", "pos", "integer"),),
    )
    text = original.to_json()
    assert "ünï" in text
    again = SchemaSnapshot.from_json(text)
    assert again == original
    assert isinstance(again.tables[0].grants[0], Grant)
    with pytest.raises(TypeError, match="no field"):
        SchemaSnapshot.from_dict({**original.to_dict(), "oid": 1})


def test_counts_and_lookups() -> None:
    """counts() adds up the parts; table() and column() find by name."""
    s = snap(tables=(table(), table("u", columns=(col("a", 1), col("b", 2)))))
    assert s.counts()["columns"] == 3 and s.counts()["tables"] == 2
    assert s.table("app", "u").column("b").position == 2
    with pytest.raises(KeyError, match="no table"):
        s.table("app", "nope")
    with pytest.raises(KeyError, match="no column"):
        s.table("app", "u").column("c")


# -- diff ---------------------------------------------------------------------------


def paths(diffs: list[Any]) -> list[str]:
    return [f"{d.change} {d.kind} {d.path}" for d in diffs]


def test_equal_snapshots_have_no_differences() -> None:
    """Same schema, different database and user: nothing to report."""
    a = snap(tables=(table(),))
    b = dataclasses.replace(a, database="other", user="bob", server_version_num=150000)
    assert diff(a, b) == []


def test_added_removed_changed() -> None:
    """A table only in the target is added, one only in the source removed;
    its parts come with it; a changed column lists the attribute."""
    a = snap(tables=(table("gone"), table("t")))
    b = snap(
        tables=(
            table("t", columns=(col("id", 1, not_null=False), col("x", 2, type="text"))),
            table("new"),
        )
    )
    got = diff(a, b)
    assert paths(got) == [
        "removed table app.gone",
        "added table app.new",
        "changed column app.t.id",
        "added column app.t.x",
    ]
    assert [(c.attribute, c.source, c.target) for c in got[2].changes] == [
        ("not_null", True, False)
    ]
    assert got[3].detail == "text"
    assert str(got[2]) == "changed column app.t.id: not_null"


def test_column_order_owner_grants_comments_on_request() -> None:
    """Positions count only with column_order=True; owners, grants and
    comments can each be left out."""
    a = snap(tables=(table(columns=(col("a", 1), col("b", 2))),))
    b = snap(
        tables=(
            table(
                columns=(col("b", 1), col("a", 2)),
                owner="bob",
                grants=(Grant("carol", "SELECT"),),
                comment="hi",
            ),
        )
    )
    (changed,) = diff(a, b)
    assert [c.attribute for c in changed.changes] == ["owner", "grants", "comment"]
    assert changed.changes[1].target == [
        {"grantee": "carol", "privilege": "SELECT", "grantable": False}
    ]
    assert diff(a, b, ignore_owners=True, ignore_grants=True, ignore_comments=True) == []
    ordered = diff(a, b, ignore_owners=True, ignore_grants=True, ignore_comments=True,
                   column_order=True)  # fmt: skip
    assert paths(ordered) == ["changed column app.t.a", "changed column app.t.b"]


def test_functions_are_matched_by_signature() -> None:
    """Overloads are separate objects; a changed body is a change of one."""

    def fn(args: str, body: str) -> Function:
        return Function("app", "f", "function", args, args, "integer", "sql", body=body)

    a = snap(functions=(fn("integer", "SELECT 1"), fn("text", "SELECT 2")))
    b = snap(functions=(fn("integer", "SELECT 3"), fn("bigint", "SELECT 2")))
    assert paths(diff(a, b)) == [
        "added function app.f(bigint)",
        "changed function app.f(integer)",
        "removed function app.f(text)",
    ]


def test_extensions_are_matched_by_name() -> None:
    """An extension moved to another schema or upgraded is changed, not
    removed and added."""
    a = snap(extensions=(Extension("citext", "1.5", "public"),))
    b = snap(extensions=(Extension("citext", "1.6", "app"),))
    (changed,) = diff(a, b)
    assert (changed.kind, changed.name, changed.change) == ("extension", "citext", "changed")
    assert [c.attribute for c in changed.changes] == ["version", "schema"]


def test_a_type_of_another_kind_is_removed_and_added() -> None:
    """An enum replaced by a domain of the same name is not 'changed'."""
    a = snap(enums=(EnumType("app", "t", ("x",)),))
    b = snap(domains=(DomainType("app", "t", "integer"),))
    assert [d.change for d in diff(a, b)] == ["removed", "added"]


def test_constraint_indexes_compare_through_their_constraint() -> None:
    """A primary key's index is not reported besides the key itself."""
    pk = Index("t_pkey", "CREATE UNIQUE INDEX t_pkey ...", "btree", constraint="t_pkey")
    a = snap(tables=(table(indexes=(pk,)),))
    b = snap(tables=(table(),))
    assert diff(a, b) == []


def test_default_names_ignored_on_request() -> None:
    """Default-named constraints and indexes pair by definition, one to one;
    a custom name still counts; without the option renames are listed."""

    def idx(name: str, definition_name: str | None = None) -> Index:
        shown = definition_name or name
        return Index(
            name,
            f"CREATE INDEX {shown} ON app.t USING btree (a)",
            "btree",
            columns=("a",),
            column_names=("a",),
        )

    check = "CHECK ((a > 0))"
    a = snap(
        tables=(
            table(
                constraints=(Constraint("t_a_check", "check", check, ("a",)),),
                indexes=(idx("t_a_idx"), idx("t_a_idx1")),
            ),
        )
    )
    b = snap(
        tables=(
            table(
                constraints=(Constraint("t_a_check1", "check", check, ("a",)),),
                indexes=(idx("t_a_idx2"), idx("custom")),
            ),
        )
    )
    assert len(diff(a, b)) == 6
    assert paths(diff(a, b, ignore_default_names=True)) == [
        "added index app.t.custom",
        "removed index app.t.t_a_idx1",
    ]


def test_difference_to_dict() -> None:
    """Plain values for JSON, with the table of a part."""
    a = snap(tables=(table(),))
    b = snap(tables=(table(columns=(col("id", 1, not_null=True, comment="pk"),)),))
    (d,) = diff(a, b)
    assert d.to_dict() == {
        "change": "changed",
        "kind": "column",
        "schema": "app",
        "name": "id",
        "table": "app.t",
        "changes": [{"attribute": "comment", "source": None, "target": "pk"}],
        "detail": None,
    }


def test_report_groups_by_schema_and_table() -> None:
    """The text report: a schema's own difference heads its group, parts sit
    under their table (named once), lists show what was added and removed."""
    from rich.console import Console

    from pgharbor._cli.diff import render_differences

    a = snap(tables=(table(grants=(Grant("bob", "SELECT"),)),))
    b = snap(
        schemas=(Schema("app", "alice"), Schema("New", "alice")),
        tables=(
            table(columns=(col("id", 1, not_null=True), col("x", 2)), grants=()),
            Table("New", "t", owner="alice"),
        ),
    )
    console = Console(record=True, width=200, color_system=None)
    render_differences(diff(a, b), console)
    assert console.export_text().splitlines() == [
        '+ schema "New"',
        '  + table "New".t',
        "schema app",
        "  ~ table app.t",
        "      grants: -SELECT to bob",
        "    + column x  integer",
        "4 difference(s): 3 added, 1 changed",
    ]
    console = Console(record=True, width=200, color_system=None)
    render_differences([], console)
    assert console.export_text().strip() == "the schemas are the same"
