"""Privilege requirements against a real server, through psycopg and asyncpg."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import sql

from pgharbor.errors import InsufficientPrivileges
from pgharbor.privileges import (
    CatalogRead,
    CustomCheck,
    DatabaseConnect,
    PrivilegePlan,
    Requirement,
    SchemaUsage,
    SelectOnAllTables,
    SequenceUsage,
    TableSelect,
    check_privileges_async,
    check_privileges_sync,
    require,
    schema_diff_requirements,
    to_dollar,
)

SyncFetch = Callable[[str, tuple[Any, ...]], Sequence[Sequence[Any]]]

APP_SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.secret (id int);
CREATE TABLE app.open (id int);
CREATE VIEW app.summary AS SELECT count(*) AS n FROM app.secret;
CREATE SEQUENCE app.ids;
"""


@contextmanager
def psycopg_fetch(conninfo: str) -> Iterator[SyncFetch]:
    """A sync ``fetch`` over one autocommit psycopg connection, closed on exit."""
    with psycopg.connect(conninfo, autocommit=True) as conn:

        def fetch(query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            return conn.execute(query, params).fetchall()

        yield fetch


@asynccontextmanager
async def asyncpg_fetch(**connect: Any) -> AsyncIterator[Any]:
    """An async ``afetch`` over one asyncpg connection, closed on exit."""
    conn = await asyncpg.connect(**connect)
    try:

        async def afetch(query: str, params: tuple[Any, ...]) -> list[Any]:
            return list(await conn.fetch(to_dollar(query), *params))

        yield afetch
    finally:
        await conn.close()


@pytest.fixture
def db(pg_database: Any) -> Any:
    """The fresh database with schema ``app``: two tables, a view, a sequence."""
    pg_database.server.execute(APP_SETUP, dbname=pg_database.name)
    return pg_database


@pytest.fixture
def role(pg_server: Any, db: Any) -> Iterator[str]:
    """A LOGIN role with no privileges beyond PUBLIC's, dropped afterwards."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    pg_server.create_role(name)
    try:
        yield name
    finally:
        ident = sql.Identifier(name)
        pg_server.execute(sql.SQL("DROP OWNED BY {}").format(ident), dbname=db.name)
        pg_server.execute(sql.SQL("DROP ROLE {}").format(ident))


def run(db: Any, app_name: str, reqs: list[Requirement], user: str | None = None) -> Any:
    """Check *reqs* in *db* as *user* over psycopg."""
    with psycopg_fetch(db.conninfo(user=user, application_name=app_name)) as fetch:
        return check_privileges_sync(fetch, reqs)


def grant(db: Any, stmt: str, role: str) -> None:
    """Run ``stmt`` (with ``{}`` for the role) as postgres in *db*."""
    db.server.execute(sql.SQL(stmt).format(sql.Identifier(role)), dbname=db.name)


RESTRICTED = [
    DatabaseConnect(),
    CatalogRead(),
    SchemaUsage("app"),
    SelectOnAllTables("app"),
    TableSelect("app", "open"),
    TableSelect("app", "secret"),
    SequenceUsage("app", "ids"),
]


def test_superuser_has_everything(db: Any, app_name: str) -> None:
    """postgres meets the preset and every object-level requirement."""
    report = run(db, app_name, [*schema_diff_requirements(["public", "app"]), *RESTRICTED])
    assert report.sufficient, str(report)
    assert report.missing == ()
    assert report.checked == 2 + len(RESTRICTED)
    assert (report.user, report.database) == ("postgres", db.name)


def test_restricted_role_lists_exactly_what_is_missing(db: Any, role: str, app_name: str) -> None:
    """A bare role lacks USAGE on app and SELECT on all but the one granted table."""
    grant(db, "GRANT SELECT ON app.open TO {}", role)
    report = run(db, app_name, RESTRICTED, user=role)
    assert not report.sufficient
    assert report.user == role
    got = {str(m.requirement): (m.detail, m.objects) for m in report.missing}
    assert got == {
        "USAGE on schema app": ("not granted", ()),
        "SELECT on all tables and views of schema app": (
            "2 relation(s) not readable",
            ("app.secret", "app.summary"),
        ),
        "SELECT on app.secret": ("not granted", ()),
        "USAGE on sequence app.ids": ("not granted", ()),
    }
    assert "USAGE on schema app: not granted" in str(report)
    assert "app.summary" in str(report)


def test_granting_makes_the_report_sufficient(db: Any, role: str, app_name: str) -> None:
    """After the grants the same requirements are all met."""
    grant(db, "GRANT USAGE ON SCHEMA app TO {}", role)
    grant(db, "GRANT SELECT ON ALL TABLES IN SCHEMA app TO {}", role)
    grant(db, "GRANT USAGE ON SEQUENCE app.ids TO {}", role)
    report = run(db, app_name, RESTRICTED, user=role)
    assert report.sufficient, str(report)
    assert require(report) is report


def test_preset_needs_no_usage_or_select(db: Any, role: str, app_name: str) -> None:
    """The schema-diff preset passes for a bare role, even on a schema it may
    not use: the snapshot reads pg_catalog, which shows it everything (see
    test_schema_privileges.py), while SchemaUsage still reports the gap."""
    assert run(db, app_name, schema_diff_requirements(["public", "app"]), user=role).sufficient
    report = run(db, app_name, [SchemaUsage("app")], user=role)
    assert [type(m.requirement).__name__ for m in report.missing] == ["SchemaUsage"]


def test_missing_objects_are_missing_not_errors(db: Any, role: str, app_name: str) -> None:
    """Absent databases, schemas, tables and sequences are reported, not raised."""
    reqs: list[Requirement] = [
        DatabaseConnect("no_such_db"),
        SchemaUsage("nope"),
        SelectOnAllTables("nope"),
        TableSelect("nope", "t"),
        TableSelect("app", "nope"),
        SequenceUsage("app", "open"),  # a table, not a sequence
    ]
    report = run(db, app_name, reqs, user=role)
    assert [m.detail for m in report.missing] == [
        "database does not exist",
        "schema does not exist",
        "schema does not exist",
        "relation does not exist",
        "relation does not exist",
        "sequence does not exist",
    ]


def test_connect_on_a_named_database(db: Any, role: str, app_name: str) -> None:
    """REVOKE CONNECT FROM PUBLIC shows up for that database only."""
    db.server.execute(
        sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db.name))
    )
    with psycopg_fetch(db.server.conninfo(user=role, application_name=app_name)) as fetch:
        report = check_privileges_sync(fetch, [DatabaseConnect(db.name), DatabaseConnect()])
    assert [str(m.requirement) for m in report.missing] == [f"CONNECT on database {db.name}"]


def test_catalog_read_reports_revoked_catalogs(db: Any, role: str, app_name: str) -> None:
    """Revoking a catalogue or a catalogue function from PUBLIC breaks
    CatalogRead, naming it; so does one that does not exist."""
    db.server.execute(
        "REVOKE SELECT ON pg_catalog.pg_trigger FROM PUBLIC;"
        " REVOKE EXECUTE ON FUNCTION pg_catalog.pg_get_viewdef(oid, boolean) FROM PUBLIC",
        dbname=db.name,
    )
    report = run(db, app_name, [CatalogRead()], user=role)
    (missing,) = report.missing
    assert missing.objects == (
        "SELECT on pg_catalog.pg_trigger",
        "EXECUTE on pg_catalog.pg_get_viewdef(oid, boolean)",
    )
    assert run(db, app_name, [CatalogRead()]).sufficient  # postgres is a superuser
    custom = CatalogRead(relations=("information_schema.columns", "pg_catalog.nope"), functions=())
    (missing,) = run(db, app_name, [custom], user=role).missing
    assert missing.objects == ("SELECT on pg_catalog.nope",)


def test_custom_checks(db: Any, role: str, app_name: str) -> None:
    """Custom SQL with parameters: true passes, false and no row fail."""
    reqs: list[Requirement] = [
        CustomCheck("is 2 > 1", "SELECT %s::int > %s::int;", (2, 1)),
        CustomCheck(
            "can create temp tables", "SELECT has_database_privilege(%s, 'TEMP')", (db.name,)
        ),
        CustomCheck("is superuser", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"),
        CustomCheck("no row", "SELECT true WHERE false"),
        CustomCheck("literal percent", "SELECT '100%%' = %s", ("100%",)),
    ]
    report = run(db, app_name, reqs, user=role)
    assert [(str(m.requirement), m.detail) for m in report.missing] == [
        ("is superuser", "check returned false"),
        ("no row", "check returned no value"),
    ]


def test_require_raises_with_the_missing_list(db: Any, role: str, app_name: str) -> None:
    """require() raises InsufficientPrivileges carrying the Missing items."""
    report = run(db, app_name, [SchemaUsage("app"), TableSelect("app", "open")], user=role)
    with pytest.raises(InsufficientPrivileges) as info:
        require(report)
    assert info.value.missing == list(report.missing)
    assert len(info.value.missing) == 2
    assert role in str(info.value)
    assert "USAGE on schema app: not granted" in str(info.value)


@pytest.mark.parametrize(
    "hostile",
    ["'; DROP TABLE sentinel; --", 'x"; DROP TABLE sentinel; --', "a'b\"c", "%s", "$1", "ü'"],
)
def test_hostile_names_are_just_names(db: Any, app_name: str, hostile: str) -> None:
    """Names with quotes and SQL are looked up as names; the sentinel survives."""
    db.server.execute("CREATE TABLE public.sentinel (id int)", dbname=db.name)
    reqs: list[Requirement] = [
        DatabaseConnect(hostile),
        SchemaUsage(hostile),
        SelectOnAllTables(hostile),
        TableSelect("public", hostile),
        TableSelect(hostile, hostile),
        SequenceUsage(hostile, "x"),
    ]
    report = run(db, app_name, reqs)
    assert len(report.missing) == len(reqs)
    assert all("does not exist" in m.detail for m in report.missing)
    assert db.server.execute("SELECT count(*) FROM public.sentinel", dbname=db.name) == [(0,)]


def test_hostile_schema_that_exists(db: Any, role: str, app_name: str) -> None:
    """A real schema with a hostile name is checked and its tables quoted."""
    name = "we\"ird'; --"
    ident = sql.Identifier(name)
    db.server.execute(
        sql.SQL("CREATE SCHEMA {s}; CREATE TABLE {s}.{t} (id int)").format(
            s=ident, t=sql.Identifier("Mixed Case")
        ),
        dbname=db.name,
    )
    report = run(db, app_name, [SchemaUsage(name), SelectOnAllTables(name)], user=role)
    assert [m.detail for m in report.missing] == ["not granted", "1 relation(s) not readable"]
    assert report.missing[1].objects == ('"we""ird\'; --"."Mixed Case"',)


def test_many_requirements_are_batched(db: Any, app_name: str) -> None:
    """450 requirements take two queries and are judged in order."""
    reqs: list[Requirement] = [TableSelect("app", "open")] * 449 + [SchemaUsage("nope")]
    plan = PrivilegePlan(reqs)
    queries = plan.queries()
    assert len(queries) == 2
    with psycopg_fetch(db.conninfo(application_name=app_name)) as fetch:
        report = plan.report([fetch(q.sql, q.params) for q in queries])
    assert report.checked == 450
    assert [str(m.requirement) for m in report.missing] == ["USAGE on schema nope"]


async def test_asyncpg_runner_matches_psycopg(
    db: Any, role: str, app_name: str, pg_server: Any
) -> None:
    """The async runner over asyncpg ($n placeholders) gives the psycopg report."""
    grant(db, "GRANT SELECT ON app.open TO {}", role)
    reqs = [*RESTRICTED, SchemaUsage("nope"), CustomCheck("param", "SELECT %s::int = 1", (1,))]
    async with asyncpg_fetch(
        host=pg_server.host,
        port=pg_server.port,
        user=role,
        database=db.name,
        server_settings={"application_name": app_name},
    ) as afetch:
        via_asyncpg = await check_privileges_async(afetch, reqs)
    via_psycopg = run(db, app_name, reqs, user=role)
    assert via_asyncpg == via_psycopg
    assert len(via_asyncpg.missing) == 5


async def test_async_psycopg_default_preset(db: Any, app_name: str) -> None:
    """The async runner over psycopg's AsyncConnection checks the default preset."""
    async with await psycopg.AsyncConnection.connect(
        db.conninfo(application_name=app_name), autocommit=True
    ) as conn:

        async def afetch(query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

        report = await check_privileges_async(afetch)
    assert report.sufficient
    assert report.checked == 2
