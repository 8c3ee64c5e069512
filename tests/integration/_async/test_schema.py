"""Schema snapshots and diffs against real servers, through every driver
(source of the generated sync tests)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from psycopg import sql

from pgharbor._async.database import AsyncDatabase
from pgharbor.errors import ConfigError, InsufficientPrivileges
from pgharbor.schema import CATALOG_RELATIONS, SchemaSnapshot, diff
from pgharbor.testing import PgBouncer, PostgresServer, TempDatabase

from .. import schema_sample as sample

DbFactory = Callable[..., AsyncDatabase]


@pytest.fixture
def reader(pg_server: PostgresServer) -> Iterator[str]:
    """A login role with no privileges of its own. The databases it is
    granted things in depend on this fixture, so they are dropped first."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    pg_server.create_role(name)
    yield name
    pg_server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def built(reader: str, pg_database: TempDatabase, pg_server: PostgresServer) -> TempDatabase:
    """The fresh database with the sample schema."""
    sample.build(pg_server, pg_database.name, reader, sample.pick_extension(pg_server))
    return pg_database


@pytest.fixture
def second(reader: str, pg_server: PostgresServer) -> Iterator[TempDatabase]:
    """Another fresh database, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    yield TempDatabase(pg_server, name)
    pg_server.drop_database(name, force=True)


@pytest.fixture
async def make_db(app_name: str, driver: str) -> AsyncIterator[DbFactory]:
    """Small databases over the test's driver, closed afterwards."""
    dbs: list[AsyncDatabase] = []

    def factory(conninfo: str, **kwargs: Any) -> AsyncDatabase:
        kwargs.setdefault("driver", driver)
        db = AsyncDatabase(
            conninfo, min_size=1, max_size=2, kwargs={"application_name": app_name}, **kwargs
        )
        dbs.append(db)
        return db

    yield factory
    for db in dbs:
        await db.close()


async def snapshot(make_db: DbFactory, conninfo: str, **kwargs: Any) -> SchemaSnapshot:
    """One snapshot through a new database object."""
    async with make_db(conninfo, **kwargs) as db:
        return await db.schema()


async def test_snapshot_reads_every_kind_of_object(
    built: TempDatabase, make_db: DbFactory, reader: str
) -> None:
    """Tables (partitioned, partitions, inherited, unlogged), columns, every
    constraint kind, indexes, triggers, views, sequences, functions, types,
    comments, owners and grants come back as the sample made them."""
    snap = await snapshot(make_db, built.conninfo())
    assert snap.database == built.name and snap.user == "postgres" and not snap.in_recovery
    assert [s.name for s in snap.schemas] == ["Mixed Case", "app", "public"]
    assert snap.schemas[1].comment == "the application"
    assert [t.qualified_name for t in snap.tables] == [
        '"Mixed Case"."Order"',
        "app.base",
        "app.cache",
        "app.child",
        "app.customers",
        "app.events",
        "app.orders",
        "app.orders_2024",
        "app.orders_default",
    ]
    customers = snap.table("app", "customers")
    assert (customers.owner, customers.comment, customers.row_security) == (
        "postgres",
        "who buys",
        True,
    )
    cols = {c.name: c for c in customers.columns}
    assert [c.name for c in customers.columns] == [
        "id",
        "email",
        "name",
        "mood",
        "score",
        "created",
        "email_lower",
    ]
    assert (cols["id"].type, cols["id"].identity, cols["id"].not_null) == ("bigint", "always", True)
    assert (cols["email_lower"].generated, cols["email_lower"].expression) == (
        "stored",
        "lower(email)",
    )
    assert cols["name"].collation == 'pg_catalog."C"'
    assert (cols["mood"].type, cols["mood"].default) == ("app.mood", "'ok'::app.mood")
    assert cols["created"].default == "now()" and cols["email"].comment == "unique per customer"
    assert [(g.grantee, g.privilege) for g in cols["name"].grants] == [(reader, "UPDATE")]
    assert (reader, "SELECT") in [(g.grantee, g.privilege) for g in customers.grants]
    kinds = {c.name: c.kind for c in customers.constraints}
    assert kinds == {
        "customers_pkey": "primary key",
        "customers_email_key": "unique",
        "customers_name_check": "check",
    }
    indexes = {i.name: i for i in customers.indexes}
    assert set(indexes) == {
        "customers_pkey",
        "customers_email_key",
        "customers_lower_idx",
        "customers_recent",
    }
    recent = indexes["customers_recent"]
    assert (recent.method, recent.partial, recent.constraint) == ("brin", True, None)
    assert "2020-01-01" in (recent.predicate or "")
    assert indexes["customers_lower_idx"].columns == ("lower(name)",)
    assert indexes["customers_pkey"].primary and indexes["customers_pkey"].constraint
    (touch,) = customers.triggers
    assert (touch.name, touch.function, touch.enabled) == ("customers_touch", "app.touch", "origin")
    assert "BEFORE UPDATE ON app.customers" in touch.definition

    orders = snap.table("app", "orders")
    assert (orders.kind, orders.partition_key) == ("partitioned table", "RANGE (placed)")
    (fk,) = [c for c in orders.constraints if c.kind == "foreign key"]
    assert (fk.references, fk.referenced_columns, fk.on_delete, fk.on_update, fk.match) == (
        "app.customers",
        ("id",),
        "cascade",
        "restrict",
        "simple",
    )
    assert orders.column("id").default == "nextval('app.orders_id_seq'::regclass)"
    part = snap.table("app", "orders_2024")
    assert (part.partition_of, part.partition_bound) == (
        "app.orders",
        "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    )
    assert snap.table("app", "orders_default").partition_bound == "DEFAULT"
    assert all(c.inherited for c in part.columns)
    assert snap.table("app", "child").inherits == ("app.base",)
    cache = snap.table("app", "cache")
    assert (cache.persistence, cache.options) == ("unlogged", ("fillfactor=70",))
    (excl,) = snap.table("app", "events").constraints
    assert (excl.kind, excl.columns) == ("exclusion", ("during",))
    assert excl.definition == "EXCLUDE USING gist (during WITH &&)"

    odd = snap.table("Mixed Case", "Order")
    assert [c.name for c in odd.columns] == ["user", "select", "café", "Ünï Code"]
    assert [c.name for c in odd.constraints] == ["Order pk"]
    assert odd.constraints[0].definition == 'PRIMARY KEY ("select")'

    views = {v.name: v for v in snap.views}
    assert {n: v.kind for n, v in views.items()} == {
        "customer_names": "view",
        "happy": "view",
        "order_totals": "materialized view",
    }
    assert views["happy"].options == ("security_barrier=true",)
    assert "FROM app.customers" in views["customer_names"].definition
    assert [c.name for c in views["order_totals"].columns] == ["customer_id", "total"]
    assert [i.unique for i in views["order_totals"].indexes] == [True]

    seqs = {s.name: s for s in snap.sequences}
    assert set(seqs) == {"orders_id_seq", "ticket_seq"}  # not the identity column's
    ticket = seqs["ticket_seq"]
    assert (ticket.type, ticket.start, ticket.increment, ticket.cache, ticket.cycle) == (
        "integer",
        100,
        5,
        10,
        False,
    )
    assert seqs["orders_id_seq"].owned_by == "app.orders.id"

    funcs = {f.signature: f for f in snap.functions if f.kind != "procedure"}
    assert set(funcs) == {
        "app.add(a integer, b integer)",
        "app.add(a text, b text)",
        "app.total(numeric)",
        "app.touch()",
    }
    add = funcs["app.add(a integer, b integer)"]
    assert (add.language, add.volatility, add.strict, add.parallel, add.result) == (
        "sql",
        "immutable",
        True,
        "safe",
        "integer",
    )
    assert add.arguments == "a integer, b integer DEFAULT 1" and add.body == "SELECT a + b"
    (archive,) = [f for f in snap.functions if f.name == "archive"]
    assert (archive.kind, archive.security_definer, archive.config, archive.result) == (
        "procedure",
        True,
        ("search_path=app",),
        None,
    )
    assert funcs["app.total(numeric)"].kind == "aggregate"
    assert funcs["app.touch()"].comment == "stamps the row"

    (mood,) = snap.enums
    assert (mood.labels, mood.comment) == (("sad", "ok", "happy"), "how they feel")
    (positive,) = snap.domains
    assert (positive.base_type, positive.not_null, positive.default) == ("integer", True, "1")
    assert [(c.name, c.definition) for c in positive.constraints] == [
        ("positive_check", "CHECK ((VALUE > 0))")
    ]
    (pair,) = snap.composites
    assert [(a.name, a.type, a.collation) for a in pair.attributes] == [
        ("a", "integer", None),
        ("b", "text", 'pg_catalog."C"'),
    ]
    (floatrange,) = snap.ranges
    assert floatrange.subtype == "double precision"
    # The extension is listed; what it brought (types, functions) is not.
    (ext,) = snap.extensions
    assert ext.schema == "app"
    type_names = {t.name for t in snap.enums} | {t.name for t in snap.domains}
    assert ext.name not in type_names | {t.name for t in snap.ranges}
    assert all(f.name != ext.name for f in snap.functions)


async def test_snapshots_agree_across_drivers_and_json(
    built: TempDatabase, make_db: DbFactory
) -> None:
    """The test's driver sees what psycopg sees; JSON round-trips to an equal
    snapshot."""
    snap = await snapshot(make_db, built.conninfo())
    reference = await snapshot(make_db, built.conninfo(), driver="psycopg")
    assert snap == reference
    assert SchemaSnapshot.from_json(snap.to_json()) == snap
    assert "Ünï Code" in snap.to_json()


async def test_diff_of_known_changes_is_exact(
    built: TempDatabase,
    second: TempDatabase,
    pg_server: PostgresServer,
    make_db: DbFactory,
    reader: str,
) -> None:
    """The same schema built twice compares equal (OIDs differ); after the
    known changes the diff lists exactly them, with and without default
    names ignored."""
    sample.build(pg_server, second.name, reader, sample.pick_extension(pg_server))
    before = await snapshot(make_db, built.conninfo())
    twin = await snapshot(make_db, second.conninfo())
    assert diff(before, twin) == []
    sample.alter(pg_server, second.name, reader)
    after = await snapshot(make_db, second.conninfo())
    version = before.server_version_num
    assert [d.to_dict() for d in diff(before, after)] == sample.expected_diff(reader, version)
    loose = diff(before, after, ignore_default_names=True)
    assert [d.to_dict() for d in loose] == sample.expected_diff(
        reader, version, ignore_default_names=True
    )
    # Reversed, additions become removals.
    assert {(d.change, d.path) for d in diff(after, before)} == {
        ({"added": "removed", "removed": "added"}.get(d.change, d.change), d.path)
        for d in diff(before, after)
    }


async def test_schema_selection(built: TempDatabase, make_db: DbFactory) -> None:
    """schemas= narrows the snapshot; a missing schema gives an empty one; one
    string instead of a list is refused."""
    async with make_db(built.conninfo()) as db:
        odd = await db.schema(["Mixed Case"])
        assert odd.requested == ("Mixed Case",)
        assert [t.name for t in odd.tables] == ["Order"] and odd.views == ()
        empty = await db.schema(["no_such_schema"])
        assert (empty.schemas, empty.tables) == ((), ())
        with pytest.raises(ConfigError, match="schemas"):
            await db.schema("app")
        # The pool is fine afterwards: every snapshot returned its connection.
        assert db.stats()["in_use"] == 0


@pytest.mark.pgbouncer
async def test_snapshot_through_pgbouncer(
    built: TempDatabase, pgbouncer: PgBouncer, make_db: DbFactory
) -> None:
    """Through PgBouncer in transaction mode the snapshot (one transaction)
    is the direct one."""
    direct = await snapshot(make_db, built.conninfo())
    async with make_db(pgbouncer.conninfo(dbname=built.name), pgbouncer=True) as db:
        for _ in range(2):  # later ones may land on other server connections
            assert await db.schema() == direct


@pytest.mark.replica
async def test_snapshot_of_a_replica(
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
    make_db: DbFactory,
) -> None:
    """A standby's snapshot equals the primary's (but for in_recovery)."""
    primary, replica = pg_primary_replica
    name = f"t_{uuid.uuid4().hex[:12]}"
    role = f"r_{uuid.uuid4().hex[:10]}"
    primary.create_role(role)
    primary.create_database(name)
    try:
        sample.build(primary, name, role, sample.pick_extension(primary))
        primary.wait_for_replay(replica)
        on_primary = await snapshot(make_db, primary.conninfo(name))
        on_replica = await snapshot(make_db, replica.conninfo(name))
        assert on_replica.in_recovery and not on_primary.in_recovery
        assert on_replica.tables == on_primary.tables
        assert diff(on_primary, on_replica) == []
    finally:
        primary.drop_database(name)
        primary.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# -- the schema-diff privilege preset agrees with what the snapshot sees ---------

SCHEMAS = ["app", "Mixed Case"]


def as_postgres(snap: SchemaSnapshot) -> SchemaSnapshot:
    """The snapshot as if postgres had taken it (to compare what roles see)."""
    return dataclasses.replace(snap, user="postgres")


async def test_check_and_snapshot_agree_for_restricted_roles(
    built: TempDatabase, pg_server: PostgresServer, make_db: DbFactory, reader: str
) -> None:
    """The owner, a SELECT-only role and a role without USAGE on the schemas
    all pass the schema-diff check, and all see the owner's snapshot — where
    information_schema hides the constraints from the SELECT-only role."""
    select_only, no_usage = f"{reader}_sel", f"{reader}_none"
    for role in (select_only, no_usage):
        pg_server.create_role(role)
    try:
        pg_server.execute(
            sql.SQL(
                'GRANT USAGE ON SCHEMA app, "Mixed Case" TO {r};'
                ' GRANT SELECT ON ALL TABLES IN SCHEMA app, "Mixed Case" TO {r}'
            ).format(r=sql.Identifier(select_only)),
            dbname=built.name,
        )
        async with make_db(built.conninfo()) as db:
            owner_report = await db.check_privileges(schemas=SCHEMAS)
            owner_view = await db.schema(SCHEMAS)
        assert owner_report.sufficient
        assert owner_view.counts()["constraints"] == 12
        for role in (select_only, no_usage):
            async with make_db(built.conninfo(user=role)) as db:
                report = await db.check_privileges(schemas=SCHEMAS)
                seen = await db.schema(SCHEMAS)
                hidden = await db.fetchval(
                    "SELECT count(*) FROM information_schema.table_constraints"
                    " WHERE constraint_schema = 'app' AND constraint_type <> 'CHECK'"
                )
            assert report.sufficient, str(report)
            assert seen.user == role
            assert as_postgres(seen) == owner_view
            assert hidden == 0  # what a reader of information_schema would miss
    finally:
        for role in (select_only, no_usage):
            pg_server.execute(
                sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)), dbname=built.name
            )
            pg_server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_check_and_snapshot_agree_when_a_catalogue_is_revoked(
    built: TempDatabase, pg_server: PostgresServer, make_db: DbFactory, reader: str
) -> None:
    """With a catalogue or a catalogue function revoked from PUBLIC, the check
    names it and the snapshot refuses (InsufficientPrivileges), for the same
    role; the superuser is unaffected on both counts."""
    for revoke, missing in [
        ("SELECT ON pg_catalog.pg_trigger", "SELECT on pg_catalog.pg_trigger"),
        (
            "EXECUTE ON FUNCTION pg_catalog.pg_get_viewdef(oid, boolean)",
            "EXECUTE on pg_catalog.pg_get_viewdef(oid, boolean)",
        ),
    ]:
        pg_server.execute(f"REVOKE {revoke} FROM PUBLIC", dbname=built.name)
        async with make_db(built.conninfo(user=reader)) as db:
            report = await db.check_privileges(schemas=SCHEMAS)
            with pytest.raises(InsufficientPrivileges, match="permission denied") as info:
                await db.schema(SCHEMAS)
            assert info.value.__cause__ is not None
            assert db.stats()["in_use"] == 0
        assert not report.sufficient
        assert [m.objects for m in report.missing] == [(missing,)]
        async with make_db(built.conninfo()) as db:
            assert (await db.check_privileges(schemas=SCHEMAS)).sufficient
            assert (await db.schema(SCHEMAS)).counts()["triggers"] == 1
        pg_server.execute(f"GRANT {revoke} TO PUBLIC", dbname=built.name)


async def test_the_catalogues_checked_are_all_the_snapshot_reads(
    built: TempDatabase, pg_server: PostgresServer, make_db: DbFactory, reader: str
) -> None:
    """With SELECT on every pg_catalog relation revoked from PUBLIC but those
    CatalogRead checks, a plain role still passes and takes the full snapshot:
    the list misses nothing the snapshot reads."""
    async with make_db(built.conninfo()) as db:
        full = await db.schema(SCHEMAS)
    listed = sql.SQL(", ").join(
        sql.SQL(".").join(map(sql.Identifier, name.split("."))) for name in CATALOG_RELATIONS
    )
    pg_server.execute(
        sql.SQL(
            "REVOKE SELECT ON ALL TABLES IN SCHEMA pg_catalog FROM PUBLIC;"
            # pg_database: what the check's own CONNECT lookup reads.
            " GRANT SELECT ON {}, pg_catalog.pg_database TO PUBLIC"
        ).format(listed),
        dbname=built.name,
    )
    async with make_db(built.conninfo(user=reader)) as db:
        assert (await db.check_privileges(schemas=SCHEMAS)).sufficient
        assert as_postgres(await db.schema(SCHEMAS)) == full


async def test_what_newer_servers_add(pg_database: TempDatabase, make_db: DbFactory) -> None:
    """SQL-standard function bodies (14+) come back as the server renders
    them; on 18, virtual generated columns and NOT ENFORCED constraints are
    read, and NOT NULL stays a column attribute, not a constraint."""
    server = pg_database.server
    server.execute(
        "CREATE TABLE t (a int NOT NULL, b int);"
        " CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql IMMUTABLE"
        " BEGIN ATOMIC SELECT x * 2; END",
        dbname=pg_database.name,
    )
    if server.version.major >= 18:
        server.execute(
            "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a + 1) VIRTUAL,"
            " ADD CONSTRAINT b_positive CHECK (b > 0) NOT ENFORCED",
            dbname=pg_database.name,
        )
    snap = await snapshot(make_db, pg_database.conninfo())
    (twice,) = snap.functions
    assert twice.body == "BEGIN ATOMIC\n SELECT (x * 2);\nEND"
    t = snap.table("public", "t")
    assert t.column("a").not_null
    if server.version.major >= 18:
        assert (t.column("c").generated, t.column("c").expression) == ("virtual", "(a + 1)")
        (check,) = t.constraints
        assert (check.name, check.enforced) == ("b_positive", False)
    else:
        assert t.constraints == ()
