"""`pgharbor mcp`: a Model Context Protocol server over one or several named databases.

Tools (every one takes ``database``, needed only when there are several):

=================  ==========================================================
``list_databases`` the databases served, and whether each is read-only
``list_schemas``   the schemas (not the system ones), with owner and comment
``list_tables``    tables and views of a schema, kind, estimated rows, comment
``describe_table`` columns (type, null, default, comment), constraints (keys,
                   foreign keys, checks) and indexes, from ``pg_catalog``
``run_query``      SQL through the database's `Guard` (docs/untrusted-sql.md):
                   one statement, read-only unless the configuration says
                   otherwise, a row cap and a timeout; rows plus ``truncated``
``explain_query``  the plan of a query (``EXPLAIN``, never ``ANALYZE`` in read-only)
``health``         each pool's health and `pgharbor check` (version, privileges,
                   whether the role can write)
=================  ==========================================================

Each database uses the ``guard`` of its settings (``[databases.NAME.guard]``
in the TOML file); without one, the read-only ``Guard()``. Needs the ``mcp``
extra: ``pip install 'pgharbor[mcp]'``. See docs/mcp.md.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._async.database import AsyncDatabase
from ._async.manager import AsyncDatabaseManager
from .config import DatabaseSettings
from .errors import ConfigError
from .facts import to_dollar
from .guard import Guard

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

__all__ = ["Harbor", "build_server", "jsonable"]

_CATALOG_TIMEOUT = 10.0

_SCHEMAS = """
SELECT n.nspname AS schema, pg_catalog.pg_get_userbyid(n.nspowner) AS owner,
       pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
ORDER BY 1
"""

_TABLES = """
SELECT c.relname AS name,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
            WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
            WHEN 'f' THEN 'foreign table' END AS kind,
       GREATEST(c.reltuples, 0)::bigint AS estimated_rows,
       pg_catalog.obj_description(c.oid, 'pg_class') AS comment
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY 1
"""

_RELATION = """
SELECT c.oid::bigint, c.relkind::text
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_COLUMNS = """
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default,
       pg_catalog.col_description(a.attrelid, a.attnum) AS comment
FROM pg_catalog.pg_attribute AS a
LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT con.conname AS name,
       CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'f' THEN 'foreign key'
            WHEN 'u' THEN 'unique' WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion'
            WHEN 'n' THEN 'not null' ELSE con.contype::text END AS kind,
       pg_catalog.pg_get_constraintdef(con.oid) AS definition
FROM pg_catalog.pg_constraint AS con
WHERE con.conrelid = %s::oid
ORDER BY CASE con.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'f' THEN 2
              WHEN 'c' THEN 3 WHEN 'x' THEN 4 ELSE 5 END, con.conname
"""

_INDEXES = """
SELECT i.relname AS name, pg_catalog.pg_get_indexdef(x.indexrelid) AS definition,
       x.indisunique AS unique, x.indisprimary AS primary
FROM pg_catalog.pg_index AS x JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
WHERE x.indrelid = %s::oid
ORDER BY 1
"""


def jsonable(value: Any) -> Any:
    """A query result value as JSON: numbers, text, bools and None as they
    are; decimals, UUIDs, dates and times as text; bytes as base64; lists
    and dicts item by item; anything else as ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


class Harbor:
    """The databases an MCP server serves, and what its tools do with them
    (usable without the ``mcp`` package, e.g. in tests or another server)."""

    def __init__(self, databases: Mapping[str, AsyncDatabase]) -> None:
        if not databases:
            raise ConfigError("databases", "at least one database is required")
        self.databases = dict(databases)

    @classmethod
    def from_targets(cls, targets: Mapping[str, str | DatabaseSettings]) -> Harbor:
        """Small pools (1-4 connections) over URLs or `DatabaseSettings` by
        name; psycopg2 databases are served with psycopg (the server is async)."""
        dbs: dict[str, AsyncDatabase] = {}
        for name, spec in targets.items():
            if isinstance(spec, DatabaseSettings):
                update: dict[str, Any] = {"min_size": 1, "max_size": max(spec.max_size or 4, 1)}
                if spec.driver == "psycopg2":
                    update["driver"] = "psycopg"
                dbs[name] = AsyncDatabase.from_settings(spec.model_copy(update=update), name)
            else:
                dbs[name] = AsyncDatabase(spec, name=name, min_size=1, max_size=4)
        return cls(dbs)

    async def open(self) -> None:
        """Open every pool without waiting: a database that is down now is
        reported by the tools, and used once it is up."""
        for db in self.databases.values():
            await db.open(wait=False)

    async def close(self) -> None:
        """Close every pool."""
        for db in self.databases.values():
            await db.close()

    # -- helpers ------------------------------------------------------------------------

    def database(self, name: str | None) -> AsyncDatabase:
        """The database called ``name`` (optional when there is only one).

        Raises:
            ValueError: unknown name, or several databases and no name.
        """
        if name is None or name == "":
            if len(self.databases) == 1:
                return next(iter(self.databases.values()))
            raise ValueError(f"several databases are served; name one of: {self._names()}")
        try:
            return self.databases[name]
        except KeyError:
            raise ValueError(f"no database {name!r}; these are served: {self._names()}") from None

    def _names(self) -> str:
        return ", ".join(sorted(self.databases))

    @staticmethod
    def guard_of(db: AsyncDatabase) -> Guard:
        """The guard the tools use for ``db``: its setting, else read-only."""
        return db.guard if db.guard is not None else Guard()

    @staticmethod
    async def _catalog(db: AsyncDatabase, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if db.driver == "asyncpg":
            sql = to_dollar(sql)
        rows = await db.fetch(sql, params or None, timeout=_CATALOG_TIMEOUT, idempotent=True)
        return [dict(row.items()) for row in rows]

    # -- tools --------------------------------------------------------------------------------

    def list_databases(self) -> list[dict[str, Any]]:
        """The databases served, with their guard."""
        out = []
        for name, db in self.databases.items():
            guard = self.guard_of(db)
            out.append(
                {
                    "name": name,
                    "target": db.pool.target if db.topology is None else name,
                    "read_only": not guard.allow_writes,
                    "max_rows": guard.max_rows,
                    "timeout": guard.timeout,
                }
            )
        return out

    async def list_schemas(self, database: str | None = None) -> list[dict[str, Any]]:
        """The database's schemas, without the system ones."""
        return await self._catalog(self.database(database), _SCHEMAS)

    async def list_tables(
        self, schema: str = "public", database: str | None = None
    ) -> list[dict[str, Any]]:
        """Tables, views and materialized views of ``schema``."""
        return await self._catalog(self.database(database), _TABLES, (schema,))

    async def describe_table(
        self, table: str, schema: str = "public", database: str | None = None
    ) -> dict[str, Any]:
        """Columns, constraints and indexes of ``schema.table``.

        Raises:
            ValueError: no such table or view.
        """
        db = self.database(database)
        found = await self._catalog(db, _RELATION, (schema, table))
        if not found:
            raise ValueError(f"no table or view {schema}.{table}")
        oid = found[0]["oid"]
        return {
            "schema": schema,
            "table": table,
            "columns": await self._catalog(db, _COLUMNS, (oid,)),
            "constraints": await self._catalog(db, _CONSTRAINTS, (oid,)),
            "indexes": await self._catalog(db, _INDEXES, (oid,)),
        }

    async def run_query(
        self, sql: str, database: str | None = None, max_rows: int | None = None
    ) -> dict[str, Any]:
        """``sql`` through the database's guard; ``max_rows`` can lower its cap.

        Raises:
            GuardRefused: the text broke a rule (nothing was sent).
            TimeoutError: it ran past the guard's timeout.
        """
        db = self.database(database)
        guard = self.guard_of(db)
        if max_rows is not None:
            if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
                raise ValueError("max_rows must be a whole number >= 1")
            cap = max_rows if guard.max_rows is None else min(max_rows, guard.max_rows)
            guard = Guard(**{**_fields(guard), "max_rows": cap})
        rows = await db.run_guarded(sql, guard=guard)
        return {
            "columns": list(rows.columns),
            "rows": [[jsonable(v) for v in row] for row in rows],
            "row_count": len(rows),
            "truncated": rows.truncated,
            "rows_affected": rows.rowcount if rows.rowcount >= 0 else None,
        }

    async def explain_query(self, sql: str, database: str | None = None) -> dict[str, Any]:
        """The plan of the query ``sql`` (``EXPLAIN``; never runs it).

        Raises:
            GuardRefused: ``sql`` is not a statement the guard allows, or is
                itself an EXPLAIN or SHOW.
        """
        db = self.database(database)
        guard = self.guard_of(db)
        statement = guard.check(sql)
        if statement.kind not in ("query", "write"):
            from .errors import GuardRefused

            raise GuardRefused("statement-kind", "explain_query takes a query, not EXPLAIN/SHOW")
        # The composed text goes through the guard again as a whole.
        rows = await db.run_guarded(
            f"EXPLAIN {sql}", guard=Guard(**{**_fields(guard), "max_rows": None})
        )
        return {"plan": "\n".join(str(row[0]) for row in rows)}

    async def health(self, database: str | None = None) -> list[dict[str, Any]]:
        """Pool health and `pgharbor check` for one database, or all."""
        names = [database] if database else list(self.databases)
        dbs = {name: self.database(name) for name in names}
        report = await AsyncDatabaseManager(dbs).check(timeout=_CATALOG_TIMEOUT)
        out = []
        for check in report.databases:
            item = jsonable(check.__dict__)
            item["health"] = jsonable(dbs[check.name].health().to_dict())
            out.append(item)
        return out


def _fields(guard: Guard) -> dict[str, Any]:
    return {name: getattr(guard, name) for name in guard.__dataclass_fields__}


def build_server(harbor: Harbor, name: str = "pgharbor") -> MCPServer[None]:
    """An ``mcp.server.mcpserver.MCPServer`` with the tools of `Harbor`; its
    lifespan opens and closes the pools. Run it with ``.run("stdio")``.

    Raises:
        ImportError: the ``mcp`` package is missing (``pip install 'pgharbor[mcp]'``).
    """
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as exc:
        raise ImportError(
            "pgharbor mcp needs the mcp package: pip install 'pgharbor[mcp]'", name="mcp"
        ) from exc

    @contextlib.contextmanager
    def reported() -> Iterator[None]:
        # The SDK hides the text of an unexpected exception from the model;
        # refusals, timeouts and the server's own errors are for it to read.
        try:
            yield
        except Exception as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer[None]) -> AsyncIterator[None]:
        await harbor.open()
        try:
            yield None
        finally:
            await harbor.close()

    server: MCPServer[None] = MCPServer(
        name,
        instructions=(
            "PostgreSQL databases served by pgharbor. Use list_databases, list_schemas, "
            "list_tables and describe_table to learn the schema; run_query runs one SQL "
            "statement (read-only unless the database allows writes) and returns at most "
            "max_rows rows with a truncated flag; explain_query shows a plan."
        ),
        lifespan=lifespan,
    )

    @server.tool()
    def list_databases() -> list[dict[str, Any]]:
        """The databases this server serves, whether each is read-only, its row cap and timeout."""
        with reported():
            return harbor.list_databases()

    @server.tool()
    async def list_schemas(database: str | None = None) -> list[dict[str, Any]]:
        """The schemas of a database (system schemas left out), with owner and comment."""
        with reported():
            return await harbor.list_schemas(database)

    @server.tool()
    async def list_tables(
        schema: str = "public", database: str | None = None
    ) -> list[dict[str, Any]]:
        """Tables and views of a schema: name, kind, estimated rows, comment."""
        with reported():
            return await harbor.list_tables(schema, database)

    @server.tool()
    async def describe_table(
        table: str, schema: str = "public", database: str | None = None
    ) -> dict[str, Any]:
        """Columns (type, nullable, default, comment), constraints (primary and
        foreign keys, unique, checks) and indexes of a table or view."""
        with reported():
            return await harbor.describe_table(table, schema, database)

    @server.tool()
    async def run_query(
        sql: str, database: str | None = None, max_rows: int | None = None
    ) -> dict[str, Any]:
        """Run ONE SQL statement (PostgreSQL dialect). Read-only unless the
        database allows writes; at most max_rows rows come back, and
        truncated says whether there were more; a statement running past the
        timeout is cancelled. Refused statements say which rule they broke."""
        with reported():
            return await harbor.run_query(sql, database, max_rows)

    @server.tool()
    async def explain_query(sql: str, database: str | None = None) -> dict[str, Any]:
        """The execution plan of a query (EXPLAIN, without running it)."""
        with reported():
            return await harbor.explain_query(sql, database)

    @server.tool()
    async def health(database: str | None = None) -> list[dict[str, Any]]:
        """Health of the pools and the result of pgharbor check: reachable,
        version, privileges, and whether the role can write."""
        with reported():
            return await harbor.health(database)

    return server
