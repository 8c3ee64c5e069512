"""Declarative privilege requirements, checked in one round trip.

Pure code: a `PrivilegePlan` compiles requirements into SQL (``%s``
placeholders, see `pgharbor.facts` for the convention) and turns the rows
into a `PrivilegeReport`. The caller runs the SQL on its own connection::

    plan = PrivilegePlan(schema_diff_requirements(["public", "app"]))
    report = plan.report([fetch(q.sql, q.params) for q in plan.queries()])
    require(report)  # raises InsufficientPrivileges if anything is missing

or, the same in one line: ``check_privileges_sync(fetch, requirements)`` /
``await check_privileges_async(afetch, requirements)``.

Every requirement becomes one column of a single ``SELECT`` built from the
``has_*_privilege`` functions, so checking N requirements costs one query
(one per 400 requirements, PostgreSQL caps a select list at 1664 columns).
Object names always travel as parameters and are looked up in the catalogs
by equality, never parsed as SQL: an object that does not exist is reported
missing instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pgharbor.errors import InsufficientPrivileges
from pgharbor.facts import AsyncFetch, Fetch, Query, to_dollar
from pgharbor.schema.catalog import CATALOG_FUNCTIONS, CATALOG_RELATIONS

__all__ = [
    "WRITE_ACCESS",
    "CatalogRead",
    "CustomCheck",
    "DatabaseConnect",
    "Missing",
    "PrivilegePlan",
    "PrivilegeReport",
    "Query",
    "Requirement",
    "SchemaUsage",
    "SelectOnAllTables",
    "SequenceUsage",
    "TableSelect",
    "check_privileges_async",
    "check_privileges_sync",
    "require",
    "schema_diff_requirements",
    "to_dollar",
    "write_access",
]

#: Requirements per query: well under PostgreSQL's 1664 select-list entries.
BATCH = 400

# relkinds, as pg_class spells them.
_TABLES = "'r', 'p', 'f'"  # ordinary, partitioned, foreign
_TABLES_AND_VIEWS = "'r', 'p', 'f', 'v', 'm'"  # ... plus views and materialized views


@dataclass(frozen=True)
class Missing:
    """One requirement the role does not meet.

    Attributes:
        requirement: What was asked.
        detail: Why it is not met, in words.
        objects: The offending objects when there are several (the relations
            lacking SELECT), quoted as identifiers; else empty.
    """

    requirement: Requirement
    detail: str
    objects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain values for logs and JSON."""
        return {
            "requirement": str(self.requirement),
            "kind": type(self.requirement).__name__,
            "detail": self.detail,
            "objects": list(self.objects),
        }

    def __str__(self) -> str:
        return f"{self.requirement}: {self.detail}"


class Requirement:
    """Base of the requirements: one SQL expression and how to read its value.

    Subclasses are frozen dataclasses. `expression` returns a scalar SQL
    expression with ``%s`` placeholders plus its parameters; `judge` turns the
    value it yields into None (met) or a `Missing`.
    """

    __slots__ = ()

    def expression(self) -> Query:
        """The scalar SQL expression checking this requirement."""
        raise NotImplementedError

    def judge(self, value: Any) -> Missing | None:
        """None when *value* (the expression's result) means "met"."""
        raise NotImplementedError


class _Single(Requirement):
    """A privilege on one named object; the expression yields true, false or
    NULL (the object does not exist)."""

    __slots__ = ()
    kind: ClassVar[str]

    def judge(self, value: Any) -> Missing | None:
        if value is None:
            return Missing(self, f"{self.kind} does not exist")
        return None if value else Missing(self, "not granted")


def _lookup(check: str, source: str, params: tuple[Any, ...]) -> Query:
    """``check`` over the catalog row ``source`` finds; NULL when there is none.

    The wanted names come in a one-row derived table ``w`` so the outer row
    exists even when the catalog has no match.
    """
    return Query(f"(SELECT {check} FROM {source})", params)


@dataclass(frozen=True)
class DatabaseConnect(_Single):
    """CONNECT on *database* (None: the current one)."""

    database: str | None = None
    kind: ClassVar[str] = "database"

    def expression(self) -> Query:
        return _lookup(
            "has_database_privilege(d.oid, 'CONNECT')",
            "(SELECT coalesce(%s::text, current_database()) AS name) AS w"
            " LEFT JOIN pg_catalog.pg_database AS d ON d.datname = w.name",
            (self.database,),
        )

    def __str__(self) -> str:
        target = "the current database" if self.database is None else f"database {self.database}"
        return f"CONNECT on {target}"


@dataclass(frozen=True)
class SchemaUsage(_Single):
    """USAGE on *schema*: needed to reach anything inside it."""

    schema: str
    kind: ClassVar[str] = "schema"

    def expression(self) -> Query:
        return _lookup(
            "has_schema_privilege(n.oid, 'USAGE')",
            "(SELECT %s::text AS name) AS w"
            " LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = w.name",
            (self.schema,),
        )

    def __str__(self) -> str:
        return f"USAGE on schema {self.schema}"


@dataclass(frozen=True)
class TableSelect(_Single):
    """SELECT on one table, view, materialized view or foreign table.

    Only the table privilege: reading it also needs `SchemaUsage`.
    """

    schema: str
    table: str
    kind: ClassVar[str] = "relation"

    def expression(self) -> Query:
        return _lookup(
            "has_table_privilege(c.oid, 'SELECT')",
            "(SELECT %s::text AS nsp, %s::text AS rel) AS w"
            " LEFT JOIN (pg_catalog.pg_class AS c"
            " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace)"
            f" ON n.nspname = w.nsp AND c.relname = w.rel AND c.relkind IN ({_TABLES_AND_VIEWS})",
            (self.schema, self.table),
        )

    def __str__(self) -> str:
        return f"SELECT on {self.schema}.{self.table}"


@dataclass(frozen=True)
class SequenceUsage(_Single):
    """USAGE on one sequence (``nextval``/``currval``)."""

    schema: str
    sequence: str
    kind: ClassVar[str] = "sequence"

    def expression(self) -> Query:
        return _lookup(
            "has_sequence_privilege(c.oid, 'USAGE')",
            "(SELECT %s::text AS nsp, %s::text AS rel) AS w"
            " LEFT JOIN (pg_catalog.pg_class AS c"
            " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace)"
            " ON n.nspname = w.nsp AND c.relname = w.rel AND c.relkind = 'S'",
            (self.schema, self.sequence),
        )

    def __str__(self) -> str:
        return f"USAGE on sequence {self.schema}.{self.sequence}"


@dataclass(frozen=True)
class SelectOnAllTables(Requirement):
    """SELECT on every table (and, with *include_views*, view) of *schema*.

    The report names the relations lacking it. A schema without relations
    meets it; a schema that does not exist does not.
    """

    schema: str
    include_views: bool = True

    def expression(self) -> Query:
        kinds = _TABLES_AND_VIEWS if self.include_views else _TABLES
        denied = (
            "ARRAY(SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
            " FROM pg_catalog.pg_class AS c"
            f" WHERE c.relnamespace = n.oid AND c.relkind IN ({kinds})"
            " AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY c.relname)"
        )
        return _lookup(
            f"CASE WHEN n.oid IS NULL THEN NULL ELSE {denied} END",
            "(SELECT %s::text AS name) AS w"
            " LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = w.name",
            (self.schema,),
        )

    def judge(self, value: Any) -> Missing | None:
        if value is None:
            return Missing(self, "schema does not exist")
        if not value:
            return None
        names = tuple(str(v) for v in value)
        return Missing(self, f"{len(names)} relation(s) not readable", names)

    def __str__(self) -> str:
        what = "tables and views" if self.include_views else "tables"
        return f"SELECT on all {what} of schema {self.schema}"


@dataclass(frozen=True)
class CatalogRead(Requirement):
    """Read access to catalogues: USAGE on their schemas, SELECT on each of
    *relations* and EXECUTE on each of *functions* (signatures such as
    ``pg_catalog.pg_get_viewdef(oid, boolean)``).

    The defaults are exactly what a schema snapshot (`Database.schema`,
    `pgharbor.schema.CATALOG_RELATIONS` and ``CATALOG_FUNCTIONS``) reads
    and calls. PUBLIC has all of it by default; hardened servers sometimes
    revoke some. Names are ``schema.name``, passed as parameters; one that
    does not exist counts as missing.
    """

    relations: tuple[str, ...] = CATALOG_RELATIONS
    functions: tuple[str, ...] = CATALOG_FUNCTIONS

    def expression(self) -> Query:
        items: list[str] = []
        params: list[Any] = []
        schemas = sorted({name.split(".", 1)[0] for name in (*self.relations, *self.functions)})
        checks = [
            *(
                (s, "has_schema_privilege(to_regnamespace(%s), 'USAGE')", "USAGE on schema")
                for s in schemas
            ),
            *(
                (r, "has_table_privilege(to_regclass(%s), 'SELECT')", "SELECT on")
                for r in self.relations
            ),
            *(
                (f, "has_function_privilege(to_regprocedure(%s), 'EXECUTE')", "EXECUTE on")
                for f in self.functions
            ),
        ]
        for name, check, what in checks:
            items.append(f"CASE WHEN coalesce({check}, false) THEN NULL ELSE %s END")
            params += [name, f"{what} {name}"]
        body = ", ".join(items) or "NULL"
        return Query(f"array_remove(ARRAY[{body}]::text[], NULL)", tuple(params))

    def judge(self, value: Any) -> Missing | None:
        if not value:
            return None
        return Missing(self, "not granted", tuple(str(v) for v in value))

    def __str__(self) -> str:
        return "read access to the catalogues a schema snapshot reads"


@dataclass(frozen=True)
class CustomCheck(Requirement):
    """A query of your own returning one boolean: true means met.

    *sql* uses ``%s`` placeholders for *params* (``%%`` for a literal ``%``)
    and runs as a scalar subquery: more than one row is an error, no row or
    NULL counts as not met.
    """

    description: str
    sql: str
    params: tuple[Any, ...] = field(default=())

    def expression(self) -> Query:
        body = self.sql.strip().rstrip(";").strip()
        return Query(f"({body})", tuple(self.params))

    def judge(self, value: Any) -> Missing | None:
        if value is None:
            return Missing(self, "check returned no value")
        return None if value else Missing(self, "check returned false")

    def __str__(self) -> str:
        return self.description


def schema_diff_requirements(schemas: Iterable[str] = ("public",)) -> list[Requirement]:
    """The preset "enough to diff a schema": what `Database.schema` needs to
    see everything in *schemas* — CONNECT on the current database and
    `CatalogRead` (the catalogues and functions it reads).

    The snapshot reads ``pg_catalog``, which shows every object of every
    schema to any role that may read it: neither USAGE on a schema nor
    SELECT on its tables changes what it sees, so the preset is the same
    for any *schemas* (kept so callers can say which they mean). The data
    is another matter: `SchemaUsage` and `SelectOnAllTables` check that.
    """
    for schema in schemas:
        if not isinstance(schema, str):
            raise TypeError(f"schema names are strings, got {schema!r}")
    return [DatabaseConnect(), CatalogRead()]


@dataclass(frozen=True)
class PrivilegeReport:
    """The outcome of a privilege check.

    Attributes:
        sufficient: Every requirement is met.
        missing: The unmet ones, in the order they were asked.
        checked: How many requirements were checked.
        user: The role that was checked (``current_user``); None if nothing ran.
        database: The database it was checked in.
    """

    sufficient: bool
    missing: tuple[Missing, ...]
    checked: int
    user: str | None = None
    database: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for logs and JSON."""
        return {
            "sufficient": self.sufficient,
            "checked": self.checked,
            "user": self.user,
            "database": self.database,
            "missing": [m.to_dict() for m in self.missing],
        }

    def __str__(self) -> str:
        who = f"role {self.user!r} on database {self.database!r}" if self.user else "no role"
        if self.sufficient:
            return f"{who}: all {self.checked} privilege requirement(s) met"
        lines = [f"{who}: {len(self.missing)} of {self.checked} privilege requirement(s) unmet"]
        for item in self.missing:
            lines.append(f"  - {item}")
            lines.extend(f"      {name}" for name in item.objects[:20])
            if len(item.objects) > 20:
                lines.append(f"      ... and {len(item.objects) - 20} more")
        return "\n".join(lines)


class PrivilegePlan:
    """Sans-I/O privilege check: the queries to run, then the report.

    Usage::

        plan = PrivilegePlan(requirements)
        report = plan.report([fetch(q.sql, q.params) for q in plan.queries()])
    """

    def __init__(self, requirements: Iterable[Requirement] | None = None) -> None:
        """*requirements* default to `schema_diff_requirements()`.

        Raises:
            TypeError: Something that is not a `Requirement`.
        """
        reqs = list(schema_diff_requirements() if requirements is None else requirements)
        for req in reqs:
            if not isinstance(req, Requirement):
                raise TypeError(f"not a privilege Requirement: {req!r}")
        self.requirements: tuple[Requirement, ...] = tuple(reqs)

    def queries(self) -> list[Query]:
        """The statements to run, each returning one row (one per `BATCH`
        requirements: usually exactly one; none for no requirements)."""
        out = []
        for start in range(0, len(self.requirements), BATCH):
            parts = [r.expression() for r in self.requirements[start : start + BATCH]]
            columns = ",\n  ".join(p.sql for p in parts)
            params = tuple(value for p in parts for value in p.params)
            out.append(
                Query(f"SELECT current_user::text, current_database()::text,\n  {columns}", params)
            )
        return out

    def report(self, results: Sequence[Sequence[Any]]) -> PrivilegeReport:
        """Judge the rows of each query of `queries`, in order.

        Raises:
            ValueError: The results do not have the shape of the queries.
        """
        expected = len(range(0, len(self.requirements), BATCH))
        if len(results) != expected:
            raise ValueError(f"expected results of {expected} queries, got {len(results)}")
        missing: list[Missing] = []
        user = database = None
        for start, rows in zip(range(0, len(self.requirements), BATCH), results, strict=True):
            batch = self.requirements[start : start + BATCH]
            if len(rows) != 1 or len(rows[0]) != len(batch) + 2:
                raise ValueError(
                    f"expected one row of {len(batch) + 2} columns, got {len(rows)} row(s)"
                )
            row = rows[0]
            user, database = str(row[0]), str(row[1])
            for req, value in zip(batch, row[2:], strict=True):
                verdict = req.judge(value)
                if verdict is not None:
                    missing.append(verdict)
        return PrivilegeReport(
            sufficient=not missing,
            missing=tuple(missing),
            checked=len(self.requirements),
            user=user,
            database=database,
        )


def check_privileges_sync(
    fetch: Fetch, requirements: Iterable[Requirement] | None = None
) -> PrivilegeReport:
    """Check *requirements* (default: the schema-diff preset) through *fetch*.

    One round trip per 400 requirements. Blocks as long as *fetch* does.

    Raises:
        Whatever *fetch* raises (a `CustomCheck` with broken SQL, say).
    """
    plan = PrivilegePlan(requirements)
    return plan.report([fetch(q.sql, q.params) for q in plan.queries()])


async def check_privileges_async(
    afetch: AsyncFetch, requirements: Iterable[Requirement] | None = None
) -> PrivilegeReport:
    """`check_privileges_sync` for an awaitable *afetch*."""
    plan = PrivilegePlan(requirements)
    return plan.report([await afetch(q.sql, q.params) for q in plan.queries()])


def require(report: PrivilegeReport) -> PrivilegeReport:
    """Return *report* if it is sufficient.

    Raises:
        InsufficientPrivileges: Listing what is missing; ``.missing`` holds
            the `Missing` items.
    """
    if report.sufficient:
        return report
    raise InsufficientPrivileges(str(report), missing=list(report.missing))


#: One row saying what the connected role could change: superuser, tables it
#: may write, schemas it may create in, the database, the server-side file
#: and program roles. No parameters; the same text on every driver.
WRITE_ACCESS = """
SELECT r.rolsuper,
  (SELECT array_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                    ORDER BY n.nspname, c.relname)
     FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'f', 'm')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
      AND (pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
           OR pg_catalog.pg_has_role(c.relowner, 'USAGE'))),
  (SELECT array_agg(quote_ident(n.nspname) ORDER BY n.nspname)
     FROM pg_catalog.pg_namespace AS n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_%'
      AND pg_catalog.has_schema_privilege(n.oid, 'CREATE')),
  pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),
  (SELECT array_agg(rolname ORDER BY rolname) FROM pg_catalog.pg_roles
    WHERE rolname IN ('pg_write_server_files', 'pg_execute_server_program',
                      'pg_write_all_data', 'pg_signal_backend')
      AND pg_catalog.pg_has_role(rolname, 'MEMBER'))
FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user
"""


def write_access(row: Sequence[Any] | None) -> list[str]:
    """What the `WRITE_ACCESS` row says the role can change; empty for a
    read-only role (the third wall of docs/untrusted-sql.md)."""
    if row is None:
        return ["role not found in pg_roles"]
    superuser, tables, schemas, create_db, roles = row
    found: list[str] = []
    if superuser:
        found.append("superuser: can do anything")
    if tables:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        found.append(f"can write {len(tables)} table(s): {shown}")
    if schemas:
        found.append(f"can create objects in schema(s): {', '.join(schemas)}")
    if create_db:
        found.append("can create schemas in the database")
    for role in roles or ():
        found.append(f"member of {role}")
    return found
