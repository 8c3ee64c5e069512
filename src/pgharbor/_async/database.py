"""`AsyncDatabase`: one logical database — a pool, query helpers, transactions
and server facts. Source of the generated `Database`.

The helpers lend a connection from the pool for one call and give it back;
`transaction` keeps one for the block. Placeholders are the driver's own
(``%s`` for psycopg and psycopg2, ``$1`` for asyncpg); rows are `Row` tuples
that also answer ``row["column"]``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, Unpack, cast, overload

from .._acompat import AOp, AStrFactory, aensure, asleep
from .._batch import KeysetQuery
from .._errormap import database_error
from .._policy.health import DatabaseHealth
from .._policy.retry import RetryPolicy
from .._policy.routing import Route
from .._policy.sqlstate import sqlstate_of, statement_did_not_run
from .._querylog import QueryLog
from .._typing import (
    AsyncDatabaseHooks,
    AsyncDatabaseKwargs,
    ConnT,
    DatabaseStats,
    check_database_kwargs,
)
from ..config import DatabaseSettings
from ..drivers import get_async_queries
from ..drivers.base import ConnStatus
from ..drivers.query import AsyncQueries, Isolation, Row, Rows
from ..errors import CommitOutcomeUnknown, ConfigError, DatabaseError, NoAvailableServer
from ..facts import ServerFacts, read_facts_async, sizing_warnings, to_dollar
from ..guard import Guard
from ..metrics import Event as PoolEvent
from ..privileges import (
    PrivilegeReport,
    Requirement,
    check_privileges_async,
    require,
    schema_diff_requirements,
)
from ..schema import SchemaSnapshot, read_schema_async
from ..version import ServerVersion
from . import guarded
from .batches import ProgressCallback, copy_in_chunks, executemany_in_chunks, keyset_pages
from .pool import AsyncPool
from .topology import AsyncTopology

if TYPE_CHECKING:
    from .._typing import AsyncpgConn, AsyncPsycopgConn

__all__ = ["AsyncDatabase", "AsyncTransaction"]

logger = logging.getLogger("pgharbor.database")

T = TypeVar("T")

_ISOLATIONS = {level.value: level for level in Isolation}


def _isolation(value: Isolation | str | None) -> Isolation | None:
    if value is None or isinstance(value, Isolation):
        return value
    try:
        return _ISOLATIONS[str(value).lower().replace("_", " ")]
    except KeyError:
        raise ConfigError(
            "isolation", f"must be one of {', '.join(map(repr, _ISOLATIONS))}, got {value!r}"
        ) from None


class AsyncDatabase(Generic[ConnT]):
    """One logical database over an `AsyncPool`.

    ``conninfo`` is a URL or keyword DSN (or a callable returning one); the
    other keyword arguments are any of `pgharbor.config.DatabaseSettings` —
    endpoint fields, session settings (``statement_timeout``,
    ``search_path``...), pool settings, ``driver``, ``minimum_version`` (13:
    older servers are refused with `UnsupportedServerVersion`) — plus the
    pool's callbacks and ``kwargs``. Everything is validated here, at once.
    Use it as a context manager or `open` / `close` it::

        async with AsyncDatabase(url, name="source") as db:
            n = await db.fetchval("SELECT count(*) FROM t")
            async with db.transaction(isolation="serializable") as tx:
                await tx.execute("UPDATE t SET x = x + 1")

    A keyword it does not take raises `ConfigError` naming it and the
    setting meant; for type checkers the settings are typed
    (`pgharbor.AsyncDatabaseKwargs`) and the database is generic in the
    connection type ``driver`` lends (see `AsyncPool`).
    """

    @overload
    def __init__(
        self: AsyncDatabase[AsyncPsycopgConn],
        conninfo: str | AStrFactory = "",
        *,
        name: str | None = None,
        driver: Literal["psycopg"] = "psycopg",
        **options: Unpack[AsyncDatabaseKwargs],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncDatabase[AsyncpgConn],
        conninfo: str | AStrFactory = "",
        *,
        name: str | None = None,
        driver: Literal["asyncpg"],
        **options: Unpack[AsyncDatabaseKwargs],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncDatabase[Any],
        conninfo: str | AStrFactory = "",
        *,
        name: str | None = None,
        driver: str,
        **options: Unpack[AsyncDatabaseKwargs],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncDatabase[Any],
        *,
        name: str | None = None,
        settings: DatabaseSettings,
        **options: Unpack[AsyncDatabaseHooks],
    ) -> None: ...

    def __init__(
        self,
        conninfo: str | AStrFactory = "",
        *,
        name: str | None = None,
        settings: DatabaseSettings | None = None,
        **options: Any,
    ) -> None:
        check_database_kwargs(type(self).__name__, options)
        # Settings pgharbor.config knows (endpoint, session, pool, driver,
        # minimum_version...) are validated there, in one place; the rest
        # (callbacks, kwargs=, backoff=...) go to the pool as they are.
        known = DatabaseSettings.model_fields
        extra = {k: options.pop(k) for k in list(options) if k not in known}
        if callable(options.get("password")):
            extra["password"] = options.pop("password")
        policy = options.pop("retry") if isinstance(options.get("retry"), RetryPolicy) else None
        if callable(conninfo):
            # Credential rotation: the endpoint is only known per attempt.
            fixed = DatabaseSettings(**options)
            values = fixed.pool_kwargs(name)
            values["conninfo"] = conninfo
            minimum = fixed.minimum_version
            policy = policy or fixed.retry_policy()
            observed = fixed
        else:
            if settings is None:
                settings = DatabaseSettings(url=conninfo or None, **options)
            elif options or conninfo:
                raise ConfigError("settings", "give either settings= or a conninfo and settings")
            values = settings.pool_kwargs(name)
            minimum = settings.minimum_version
            policy = policy or settings.retry_policy()
            observed = settings
        values.update(extra)
        if name is not None:
            values.setdefault("labels", {"database": name})
        values.setdefault("minimum_version", minimum)
        # A raw borrower (`connection`) must not leave session state for the
        # statements run here: its connections are reset when they come back
        # (one round trip, for raw borrowers only). Through PgBouncer in
        # transaction mode there is no session to reset.
        values.setdefault("reset", "rollback" if observed.pgbouncer else "session")
        self.settings = settings
        #: When statements and transactions are tried again (see `RetryPolicy`).
        self.retry: RetryPolicy = policy
        self._reads: Route = settings.reads if settings is not None else "primary"
        if settings is not None and (settings.primary is not None or settings.replicas):
            self._topology = self._make_topology(settings, values, name)
        else:
            # One endpoint: a topology of one node, without a role probe.
            self._topology = AsyncTopology(
                {values.get("name") or "db": values["conninfo"]},
                pool_factory=lambda _conninfo, _node: AsyncPool(**values),
                name=name or values.get("name") or "db",
                probe=False,
            )
        # A database with replicas is named after its topology; a single
        # endpoint after its pool.
        first = self._topology.pools()[0]
        self.name = name or (first.name if self._topology.single else self._topology.name)
        self.driver: str = values["driver"]
        self._q: AsyncQueries = get_async_queries(
            self.driver, prepared_statements=values.get("prepared_statements", True)
        )
        self._facts: ServerFacts | None = None
        self._log = QueryLog(self.name, observed.slow_query, observed.log_parameters)
        #: The default `Guard` of `run_guarded` (the ``guard`` setting), or None.
        self.guard: Guard | None = observed.guard

    @staticmethod
    def _make_topology(
        settings: DatabaseSettings, values: dict[str, Any], name: str | None
    ) -> AsyncTopology:
        """One pool per node — the primary (``primary``, else ``url``) and each
        replica — with the same settings, and a topology that routes to them."""
        urls = [settings.primary or settings.url, *settings.replicas]
        if urls[0] is None:
            raise ConfigError("primary", "is required with replicas (or give url)")
        base = name or "db"
        nodes: dict[str, str] = {}
        per_node: dict[str, dict[str, Any]] = {}
        for i, url in enumerate(urls):
            node = "primary" if i == 0 else f"replica{i}"
            assert url is not None
            node_settings = settings.model_copy(
                update={"url": url, "primary": None, "replicas": []}
            )
            kwargs = {**values, **node_settings.pool_kwargs(f"{base}-{node}")}
            kwargs["name"] = f"{base}-{node}"
            kwargs["labels"] = {**kwargs.get("labels", {}), "database": base, "node": node}
            nodes[node] = kwargs["conninfo"]
            per_node[node] = kwargs
        return AsyncTopology(
            nodes,
            pool_factory=lambda _conninfo, node: AsyncPool(**per_node[node]),
            name=base,
            **settings.topology_kwargs(),
        )

    @property
    def pool(self) -> AsyncPool[ConnT]:
        """The pool writes go to: the only one, or the current primary's.

        Raises:
            NoAvailableServer: with replicas, when no node is primary now.
        """
        return self._topology.pool_for("primary")

    @property
    def topology(self) -> AsyncTopology:
        """The nodes, their pools and roles (a topology of one node for a
        database with a single endpoint: ``topology.single``)."""
        return self._topology

    def _pool_for(self, route: Route | None) -> AsyncPool[ConnT]:
        return self._topology.pool_for(route or self._reads)

    def _elsewhere(self, pool: AsyncPool, route: Route | None = None) -> bool:
        """Whether the topology now routes ``route`` to another pool than ``pool``
        (after `note_error` reported it, a failing node is banned)."""
        try:
            return self._pool_for(route) is not pool
        except NoAvailableServer:
            return False

    @classmethod
    def from_settings(
        cls, settings: DatabaseSettings, name: str | None = None
    ) -> AsyncDatabase[Any]:
        """A database from validated `pgharbor.config.DatabaseSettings`."""
        return cls(name=name, settings=settings)

    @classmethod
    def from_env(
        cls, name: str | None = None, env: Mapping[str, str] | None = None
    ) -> AsyncDatabase[Any]:
        """A database from the environment: ``PGHARBOR_<NAME>__...`` variables,
        ``DATABASE_URL``, or the ``POSTGRES_HOST``/``POSTGRES_DB``/... ones
        (see `pgharbor.config`)."""
        return cls(name=name, settings=DatabaseSettings.from_env(name, env))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self._topology!r}>"

    async def __aenter__(self) -> AsyncDatabase[ConnT]:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self, wait: bool = True, timeout: float | None = None) -> None:
        """Open the pool(s) (see `AsyncPool.open`: a database that cannot open
        says why at once, and is closed); with ``wait=False`` connections are
        opened in the background and the first call waits for one."""
        await self._topology.open(wait=wait, timeout=timeout)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool(s) (see `AsyncPool.close`)."""
        await self._topology.close(timeout)

    async def drain(self) -> None:
        """Replace every connection of every pool gracefully: idle ones now,
        in-use ones when returned (e.g. after a credential rotation)."""
        for pool in self._topology.pools():
            await pool.drain()

    def connection(
        self, timeout: float | None = None, *, route: Route | None = "primary"
    ) -> AbstractAsyncContextManager[ConnT]:
        """Lend a native connection for a block (the pool's `connection`);
        with replicas, from the node ``route`` chooses. Whatever session
        state the block leaves is reset when it comes back (see ``reset``)."""
        return self._pool_for(route).connection(timeout)

    def stats(self) -> DatabaseStats:
        """The stats of the pool writes go to (see `topology` for every node),
        and the database's statement counters: ``queries``, ``queries_failed``,
        ``queries_slow`` and ``query_ms`` (total time)."""
        queries = self._log.stats()
        try:
            return {**self.pool.stats(), **queries}
        except NoAvailableServer:
            # No primary now: the counters alone (the pool keys are optional).
            return cast(DatabaseStats, queries)

    def pools(self) -> list[AsyncPool[ConnT]]:
        """Every pool of this database: one, or one per node."""
        return self._topology.pools()

    def on(self, event: str, fn: Callable[[PoolEvent], Any]) -> Callable[[], None]:
        """Call ``fn(event)`` on ``event`` in any of this database's pools (see
        `AsyncPool.on`; ``query`` events come from statements run here).
        Returns a function that unregisters it."""
        removers = [pool.on(event, fn) for pool in self.pools()]

        def remove() -> None:
            for r in removers:
                r()

        return remove

    def health(self) -> DatabaseHealth:
        """Health of every endpoint (see `AsyncPool.health`). The database is
        healthy when the node writes go to is; an unhealthy replica is listed
        among the reasons without making the database unhealthy."""
        reports = [pool.health() for pool in self.pools()]
        reasons: list[str] = []
        try:
            writer = self.pool
        except NoAvailableServer as exc:
            writer = None
            reasons.append(str(exc))
        healthy = writer is not None
        for pool, report in zip(self.pools(), reports, strict=True):
            if not report.healthy:
                reasons.extend(f"{report.name}: {why}" for why in report.reasons)
                if pool is writer:
                    healthy = False
        return DatabaseHealth(
            name=self.name,
            healthy=healthy,
            reasons=tuple(reasons),
            endpoints=tuple(reports),
            queries=self._log.stats(),
        )

    # -- queries -------------------------------------------------------------

    @overload
    async def fetch(
        self,
        query: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
        route: Route | None = None,
        max_rows: None = None,
    ) -> list[Row]: ...

    @overload
    async def fetch(
        self,
        query: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
        route: Route | None = None,
        max_rows: int,
    ) -> Rows: ...

    async def fetch(
        self,
        query: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
        route: Route | None = None,
        max_rows: int | None = None,
    ) -> list[Row]:
        """All rows of ``query``. ``timeout`` bounds the statement (seconds).

        With ``max_rows``, at most that many rows come back as `Rows`, whose
        ``truncated`` says whether there were more: a query (SELECT, VALUES,
        TABLE, WITH...SELECT) runs through a server-side cursor in its own
        transaction, so the server stops producing rows at the cap; other
        statements are read whole and cut.

        Raises:
            DatabaseError: the server refused the statement (the subclass for
                its SQLSTATE, e.g. `UniqueViolation`), or the connection was
                lost under it (`ConnectionLost`): the same classes with every
                driver (see `pgharbor.errors`). So do the other helpers.
            TimeoutError: the statement ran longer than ``timeout`` (cancelled).
            PoolTimeout: no connection within the pool's timeout.
        """
        if max_rows is not None:
            return await guarded.fetch_bounded(
                self, query, params, max_rows, timeout, idempotent, route
            )
        return await self._once(self._q.fetch, query, params, timeout, idempotent, route)

    def stream(
        self,
        query: str,
        params: Any = None,
        *,
        batch_size: int = 1000,
        timeout: float | None = None,
        route: Route | None = None,
    ) -> AsyncIterator[list[Row]]:
        """The rows of a query in lists of at most ``batch_size``, read through
        a server-side cursor: memory stays bounded whatever the result's size.

        Holds one connection (in a transaction) until the iteration ends;
        close the iterator when leaving early (``contextlib.aclosing``, or
        ``closing`` for `Database`). ``timeout`` bounds each batch.

        Raises:
            ConfigError: ``batch_size`` is not a whole number >= 1.
        """
        return guarded.stream(self, query, params, batch_size, timeout, route)

    async def run_guarded(
        self, sql: str, params: Any = None, *, guard: Guard | None = None
    ) -> Rows:
        """Run SQL from an untrusted caller behind ``guard`` (default: the
        database's ``guard`` setting, else a read-only `Guard()`).

        The text must be one statement of a kind the guard allows (parsed by
        PostgreSQL's own parser); it runs in a READ ONLY transaction that is
        always rolled back (with ``allow_writes``: READ WRITE, committed) with
        the guard's timeouts, and the session is verified clean afterwards
        (a connection that is not is discarded). At most ``guard.max_rows``
        rows come back; ``truncated`` says whether there were more. See
        docs/untrusted-sql.md.

        Raises:
            GuardRefused: the text broke a rule (nothing was sent).
            TimeoutError: it ran past ``guard.timeout`` and was cancelled.
            ConfigError: ``guard`` is not a `Guard`.
        """
        return await guarded.run_guarded(self, sql, params, guard)

    async def fetchrow(
        self,
        query: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
        route: Route | None = None,
    ) -> Row | None:
        """The first row of ``query``, or None."""
        return await self._once(self._q.fetchrow, query, params, timeout, idempotent, route)

    async def fetchval(
        self,
        query: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
        route: Route | None = None,
    ) -> Any:
        """The first column of the first row of ``query``, or None."""
        return await self._once(self._q.fetchval, query, params, timeout, idempotent, route)

    async def execute(
        self,
        query: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> int:
        """Run a statement (autocommit); the number of rows affected."""
        rows = await self._once(self._q.execute, query, params, timeout, idempotent, "primary")
        self._topology.note_write()
        return rows

    async def executemany(
        self,
        query: str,
        params_seq: Iterable[Any],
        *,
        timeout: float | None = None,
        chunk_size: int | None = None,
        atomic: bool = True,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Run a statement once per parameter set, in one transaction; the
        number of parameter sets run.

        With ``chunk_size``, the sets go ``chunk_size`` at a time (``timeout``
        bounds each chunk) and ``progress(BatchProgress)`` is called after
        each; ``atomic=False`` commits each chunk on its own. A chunked batch
        that fails raises `BatchError` saying how many sets were committed.
        """
        return await executemany_in_chunks(
            self,
            query,
            params_seq,
            timeout=timeout,
            chunk_size=chunk_size,
            atomic=atomic,
            progress=progress,
        )

    async def copy_records(
        self,
        table: str,
        records: Iterable[Sequence[Any]],
        *,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
        timeout: float | None = None,
        chunk_size: int | None = None,
        atomic: bool = True,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Bulk-load ``records`` into ``table`` with COPY; rows copied.

        With ``chunk_size`` or ``progress``: one COPY per chunk, all in one
        transaction, or each committed on its own with ``atomic=False``;
        ``progress(BatchProgress)`` after each (see `executemany`).
        """
        if chunk_size is not None or progress is not None:
            return await copy_in_chunks(
                self,
                table,
                records,
                columns=columns,
                schema=schema,
                timeout=timeout,
                chunk_size=chunk_size,
                atomic=atomic,
                progress=progress,
            )
        pool = self.pool
        try:
            async with pool.connection(reset=False) as conn:
                copied = await self._q.copy_records(conn, table, records, columns, schema, timeout)
        except Exception as exc:
            if (error := database_error(exc, pool.connector.is_disconnect)) is None:
                raise
            raise error from exc
        self._topology.note_write()
        return copied

    async def _once(
        self,
        op: AOp[T],
        query: str,
        params: Any,
        timeout: float | None,
        idempotent: bool,
        route: Route | None,
    ) -> T:
        """Run one statement on a lent connection, trying again as the retry
        policy allows (`pgharbor.RetryPolicy.statement`).

        A statement is sent again only when it provably never reached the
        server: the driver refused to send it (the connection was closed).
        A connection the server ended while idle (a restart, a terminated
        backend) is caught at checkout, before anything is sent, so a restart
        between two calls is invisible. Once sent, a lost connection is the
        caller's error — the statement may have run (a DBA's
        ``pg_terminate_backend`` of a running statement looks the same) —
        unless the caller said ``idempotent``. With replicas, a statement
        whose node gave no connection (a pool timeout, an open breaker:
        nothing was sent) goes at once to the node the topology picks
        instead, if another."""
        attempt = 1
        first_failure: float | None = None
        while True:
            pool = self._pool_for(route)
            conn = None
            try:
                async with pool.connection(reset=False) as conn:
                    started = monotonic()
                    try:
                        result = await op(conn, query, params, timeout)
                    except Exception as exc:
                        self._log.done(pool, query, params, started, error=exc)
                        raise
                    self._log.done(pool, query, params, started, result)
                    return result
            except Exception as exc:
                self._topology.note_error(pool, exc)
                if (
                    conn is None
                    and attempt < self.retry.max_attempts
                    and self._elsewhere(pool, route)
                ):
                    attempt += 1
                    continue
                now = monotonic()
                if first_failure is None:
                    first_failure = now
                delay = self.retry.statement(
                    attempt, now - first_failure, exc, idempotent=idempotent, rand=random.random()
                )
                if delay is None:
                    # pgharbor's class for a server error or a lost connection.
                    if (error := database_error(exc, pool.connector.is_disconnect)) is None:
                        raise
                    raise error from exc
                logger.info(
                    "database %r: statement failed (%s); attempt %d in %.3f s",
                    self.name,
                    sqlstate_of(exc) or type(exc).__name__,
                    attempt + 1,
                    delay,
                )
            if delay:
                await asleep(delay)
            attempt += 1

    # -- transactions ----------------------------------------------------------

    def transaction(
        self,
        isolation: Isolation | str | None = None,
        *,
        read_only: bool = False,
        deferrable: bool = False,
        timeout: float | None = None,
        route: Route | None = None,
    ) -> AsyncTransaction[ConnT]:
        """A transaction on one connection: committed when the block ends,
        rolled back if it raises.

        Raises (on exit):
            CommitOutcomeUnknown: the connection was lost while COMMIT was in
                flight; it may or may not have been applied. Never retried.
        """
        if route is None:
            route = "replica" if read_only else "primary"
        return AsyncTransaction(self, _isolation(isolation), read_only, deferrable, timeout, route)

    async def run_transaction(
        self,
        fn: Callable[[AsyncTransaction[ConnT]], Any],
        *,
        retries: int | None = None,
        isolation: Isolation | str | None = None,
        read_only: bool = False,
    ) -> Any:
        """Run ``fn(tx)`` in a transaction and return what it returns,
        re-running the *whole* transaction on a serialization failure (40001)
        or a deadlock (40P01) with backoff, as the retry policy allows
        (``retries`` overrides its number of retries).

        ``fn`` must be safe to run again: nothing outside the transaction
        should depend on a failed attempt. `CommitOutcomeUnknown` is never
        retried.
        """
        policy = self.retry
        if retries is not None:
            if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
                raise ConfigError("retries", "must be an integer >= 0")
            policy = dataclasses.replace(policy, max_attempts=retries + 1)
        attempt = 1
        started = monotonic()
        while True:
            try:
                async with self.transaction(isolation, read_only=read_only) as tx:
                    return await aensure(fn, tx)
            except Exception as exc:
                delay = policy.transaction(attempt, monotonic() - started, exc, random.random())
                if delay is None:
                    raise
                logger.info(
                    "database %r: transaction attempt %d failed with %s; retrying in %.3f s",
                    self.name,
                    attempt,
                    sqlstate_of(exc) or type(exc).__name__,
                    delay,
                )
            await asleep(delay)
            attempt += 1

    # -- server facts -----------------------------------------------------------

    async def server_version(self) -> ServerVersion:
        """The server's version (from ``server_version_num``; no round trip)."""
        pool = self.pool
        async with pool.connection(reset=False) as conn:
            return ServerVersion.from_num(pool.connector.driver.server_version(conn))

    async def info(self) -> dict[str, Any]:
        """Server facts, pool stats and the masked connection target."""
        facts = await self.facts()
        return {
            "name": self.name,
            "target": self.pool.target,
            "server": facts.to_dict(),
            "pool": self.stats(),
            "warnings": self.sizing_warnings(facts),
        }

    def sizing_warnings(self, facts: ServerFacts) -> list[str]:
        """What the server's limits say about this pool's settings."""
        options = self.pool.options
        return sizing_warnings(
            facts,
            options.max_size,
            options.max_idle,
            min_size=options.min_size,
            keepalive=options.keepalive,
        )

    async def facts(self) -> ServerFacts:
        """Version, current database and user, limits and timeouts that
        matter, TLS in use, number of backends (one round trip)."""
        self._facts = await read_facts_async(self._rows)
        return self._facts

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        """Run pgharbor's own queries (written with ``%s`` placeholders)."""
        if self.driver == "asyncpg":
            sql = to_dollar(sql)
        return await self.fetch(sql, params, route="primary")

    async def check_privileges(
        self,
        requirements: Sequence[Requirement] | None = None,
        *,
        schemas: Sequence[str] = ("public",),
    ) -> PrivilegeReport:
        """Check ``requirements`` (default: enough to diff ``schemas``) with
        the ``has_*_privilege`` functions; never raises for missing ones."""
        reqs = list(requirements) if requirements is not None else schema_diff_requirements(schemas)
        return await check_privileges_async(self._rows, reqs)

    async def require_privileges(
        self,
        requirements: Sequence[Requirement] | None = None,
        *,
        schemas: Sequence[str] = ("public",),
    ) -> PrivilegeReport:
        """As `check_privileges`, but raise `InsufficientPrivileges` listing
        what is missing."""
        report = await self.check_privileges(requirements, schemas=schemas)
        require(report)
        return report

    async def schema(
        self, schemas: Sequence[str] | None = None, *, route: Route = "primary"
    ) -> SchemaSnapshot:
        """A `pgharbor.schema.SchemaSnapshot` of ``schemas`` (default: every
        schema but the system's), read from ``pg_catalog`` in one read-only
        repeatable-read transaction on the ``route`` node: 12 statements,
        14 round trips with BEGIN and COMMIT (see `pgharbor.schema`).

        Raises:
            ConfigError: ``schemas`` is not a list of names.
            InsufficientPrivileges: the role may not read a catalogue.
        """
        async with self.transaction("repeatable read", read_only=True, route=route) as tx:

            async def rows(sql: str, params: tuple[Any, ...]) -> list[Row]:
                return await tx.fetch(to_dollar(sql) if self.driver == "asyncpg" else sql, params)

            return await read_schema_async(rows, schemas)

    # -- batches (see _async/batches.py) -------------------------------------------

    def paginate(
        self,
        query: str,
        params: Any = None,
        *,
        key: str | Sequence[str],
        page_size: int = 1000,
        descending: bool = False,
        route: Route | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[list[Row]]:
        """Pages (lists of rows) of ``query``, ordered and cut by ``key``
        without OFFSET: each page is ``WHERE (key) > (last row's key) ORDER BY
        key LIMIT page_size``, as fast at page 10 000 as at page 1::

            async for page in db.paginate("SELECT id, total FROM orders", key="id"):
                ...

        ``query`` is one SELECT without ORDER BY, LIMIT or OFFSET (checked by
        PostgreSQL's parser), ``key`` its output column(s), together unique
        and never NULL: ``("created_at", "id")``. Each page is its own
        statement on a lent connection (no transaction is held between
        pages), tried again on a new connection if the connection is lost
        (reads are idempotent).

        Raises:
            ConfigError: at once for a bad argument or query; while
                iterating, for a NULL or repeated key met in a page (one
                hidden beyond a page boundary cannot be seen: the key must
                be unique and NOT NULL).
        """
        keyset = KeysetQuery(
            query,
            params,
            key=key,
            page_size=page_size,
            descending=descending,
            dollar=self.driver == "asyncpg",
        )
        return keyset_pages(self, keyset, route=route, timeout=timeout)


class AsyncTransaction(Generic[ConnT]):
    """A transaction on one pooled connection (see `AsyncDatabase.transaction`);
    ``conn`` is that native connection, inside the block."""

    __slots__ = (
        "_db",
        "_deferrable",
        "_isolation",
        "_lease",
        "_pool",
        "_read_only",
        "_route",
        "_timeout",
        "conn",
    )

    def __init__(
        self,
        db: AsyncDatabase[ConnT],
        isolation: Isolation | None,
        read_only: bool,
        deferrable: bool,
        timeout: float | None,
        route: Route,
    ) -> None:
        self._db = db
        self._route = route
        self._pool: AsyncPool[ConnT] | None = None
        self._lease: Any = None
        self._isolation = isolation
        self._read_only = read_only
        self._deferrable = deferrable
        self._timeout = timeout
        self.conn: ConnT = cast(Any, None)

    async def __aenter__(self) -> AsyncTransaction[ConnT]:
        pool = self._db._pool_for(self._route)
        self._pool = pool
        # The lease is held by this transaction: the connection goes back
        # exactly once, whoever ends the block.
        lease = pool.connection(self._timeout, reset=False)
        conn = await lease.__aenter__()
        try:
            await self._db._q.begin(conn, self._isolation, self._read_only, self._deferrable)
        except BaseException as exc:
            await lease.__aexit__(None, None, None)
            if (error := database_error(exc, pool.connector.is_disconnect)) is None:
                raise
            raise error from exc
        self._lease = lease
        self.conn = conn
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self.conn = self.conn, cast(Any, None)
        lease, self._lease = self._lease, None
        pool = self._pool
        assert pool is not None and lease is not None
        db = self._db
        status = pool.connector.driver.status
        try:
            if exc is not None:
                if isinstance(exc, Exception):
                    db._topology.note_error(pool, exc)
                # The pool's return path also rolls back an open transaction;
                # doing it here keeps the error the caller sees the original.
                if status(conn) in (ConnStatus.INTRANS, ConnStatus.INERROR):
                    try:
                        await db._q.rollback(conn)
                    except Exception as rollback_error:
                        logger.debug("rollback after an error failed: %s", rollback_error)
                return
            try:
                await db._q.commit(conn)
                if not self._read_only:
                    db._topology.note_write()
            except Exception as commit_error:
                db._topology.note_error(pool, commit_error)
                if not statement_did_not_run(commit_error) and (
                    pool.connector.is_disconnect(commit_error) or status(conn) is ConnStatus.BROKEN
                ):
                    # Sent, and the connection lost: it may have committed.
                    raise CommitOutcomeUnknown(
                        f"database {db.name!r}: the connection was lost while "
                        "COMMIT was in flight; the transaction may or may not have "
                        "been applied"
                    ) from commit_error
                if (error := database_error(commit_error, pool.connector.is_disconnect)) is None:
                    raise
                raise error from commit_error
        finally:
            await lease.__aexit__(None, None, None)

    async def fetch(
        self, query: str, params: Any = None, *, timeout: float | None = None
    ) -> list[Row]:
        """All rows of ``query`` inside the transaction."""
        return await self._timed(self._db._q.fetch, query, params, timeout)

    async def fetchrow(
        self, query: str, params: Any = None, *, timeout: float | None = None
    ) -> Row | None:
        """The first row, or None."""
        return await self._timed(self._db._q.fetchrow, query, params, timeout)

    async def fetchval(
        self, query: str, params: Any = None, *, timeout: float | None = None
    ) -> Any:
        """The first column of the first row, or None."""
        return await self._timed(self._db._q.fetchval, query, params, timeout)

    async def execute(self, query: str, params: Any = None, *, timeout: float | None = None) -> int:
        """Run a statement; rows affected."""
        return await self._timed(self._db._q.execute, query, params, timeout)

    async def executemany(
        self, query: str, params_seq: Iterable[Any], *, timeout: float | None = None
    ) -> None:
        """Run a statement once per parameter set."""
        try:
            await self._db._q.executemany(self.conn, query, params_seq, timeout)
        except Exception as exc:
            if (error := self._ours(exc)) is None:
                raise
            raise error from exc

    async def copy_records(
        self,
        table: str,
        records: Iterable[Sequence[Any]],
        *,
        columns: Sequence[str] | None = None,
        schema: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """COPY ``records`` into ``table`` inside the transaction."""
        try:
            return await self._db._q.copy_records(
                self.conn, table, records, columns, schema, timeout
            )
        except Exception as exc:
            if (error := self._ours(exc)) is None:
                raise
            raise error from exc

    async def _timed(self, op: AOp[T], query: str, params: Any, timeout: float | None) -> T:
        started = monotonic()
        try:
            result = await op(self.conn, query, params, timeout)
        except Exception as exc:
            self._db._log.done(self._pool, query, params, started, error=exc)
            if (error := self._ours(exc)) is None:
                raise
            raise error from exc
        self._db._log.done(self._pool, query, params, started, result)
        return result

    def _ours(self, exc: Exception) -> DatabaseError | None:
        """pgharbor's error for ``exc`` (see `pgharbor.errors`), or None."""
        assert self._pool is not None
        return database_error(exc, self._pool.connector.is_disconnect)
