"""Guarded runs, bounded fetches and streams on an `AsyncDatabase` (source of
the generated sync module).

`AsyncDatabase.run_guarded`, ``fetch(max_rows=...)`` and `stream` delegate
here, so the database keeps one line per method. A guarded run is the second
wall of docs/untrusted-sql.md: the statement the `Guard` accepted runs in a
READ ONLY transaction (READ WRITE with ``allow_writes``) with local timeouts,
sent with the extended protocol where the driver has it, and always rolled
back (committed with ``allow_writes``); the session is compared with what it
was before, and a connection that comes back different is closed, so the
pool discards it instead of lending it to the next caller.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._acompat import AOp
from .._policy.routing import Route
from .._policy.sqlstate import sqlstate_of
from ..drivers.query import AsyncQueries, Row, Rows
from ..errors import ConfigError
from ..guard import Guard, Statement, statement_kind

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = ["SESSION_STATE", "STATE_SETTINGS", "fetch_bounded", "run_guarded", "stream"]

logger = logging.getLogger("pgharbor.guard")

#: Settings a statement could leave changed for the next caller that matter:
#: timeouts, the transaction defaults, the search path, row security and
#: replication role, how text is read and written. (A rollback undoes any
#: setting changed inside the transaction; this catches what a commit keeps,
#: and is cheap: pg_settings would cost a millisecond per read.)
STATE_SETTINGS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_timeout",
    "default_transaction_read_only",
    "default_transaction_isolation",
    "default_transaction_deferrable",
    "search_path",
    "session_replication_role",
    "row_security",
    "standard_conforming_strings",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "bytea_output",
    "application_name",
    "synchronous_commit",
    "temp_tablespaces",
    "work_mem",
)

#: One row that changes when a statement leaves anything in the session that
#: outlives its transaction: the settings above, the role, advisory locks,
#: LISTEN channels, held cursors, SQL-level prepared statements, a temporary
#: schema.
SESSION_STATE = (
    "SELECT concat_ws('|', "
    + ", ".join(f"pg_catalog.current_setting('{name}', true)" for name in STATE_SETTINGS)
    + ", current_user, session_user,"
    " (SELECT count(*) FROM pg_catalog.pg_locks"
    "  WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()),"
    " (SELECT count(*) FROM pg_catalog.pg_listening_channels()),"
    " (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable),"
    " (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql),"
    " pg_catalog.pg_my_temp_schema())"
)
if True:  # ASYNC
    _STATE_TIMEOUT: float | None = 5.0  # seconds for each of the run's own statements
else:
    # A blocking per-call timeout starts a timer thread (about 2 ms here
    # under load, for three statements a run): the run's own statements go
    # unbounded on the client, and only the caller's statement has a timer.
    _STATE_TIMEOUT = None
_GRACE = 2.0  # the client-side bound waits this long past the server's statement_timeout
_QUERY_CANCELED = "57014"


def _check_rows(max_rows: Any, field: str = "max_rows") -> None:
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ConfigError(field, "must be a whole number >= 1", max_rows)


class _GuardedRun:
    """The guarded sequence on one lent connection (an `AOp` for `_once`)."""

    __slots__ = ("guard", "q", "statement")

    def __init__(self, q: AsyncQueries, guard: Guard, statement: Statement | None) -> None:
        self.q = q
        self.guard = guard
        self.statement = statement  # None: checked on the connection (params inlined)

    async def __call__(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Rows:
        q, guard = self.q, self.guard
        statement = self.statement
        if statement is None:
            text, sql, params = q.render(conn, sql, params)
            statement = guard.check(text)
        before = await q.fetchval(conn, SESSION_STATE, None, _STATE_TIMEOUT)
        await q.execute(conn, guard.setup_sql(), None, _STATE_TIMEOUT)
        done = False
        try:
            rows = await q.fetch_limited(
                conn, sql, params, guard.max_rows, timeout, statement.cursor
            )
            done = True
        except Exception as exc:
            if sqlstate_of(exc) == _QUERY_CANCELED and guard.timeout is not None:
                raise TimeoutError(
                    f"the statement was cancelled: it ran longer than the guard's "
                    f"timeout ({guard.timeout} s), or someone cancelled it"
                ) from exc
            raise
        finally:
            await self._finish(conn, before, commit=done and guard.allow_writes)
        return rows

    async def _finish(self, conn: Any, before: Any, *, commit: bool) -> None:
        """Commit or roll back, then verify the session; close the connection
        (the pool discards it) if anything is off or cannot be verified.
        Raises only for a failed commit (or a cancellation)."""
        q = self.q
        if commit:
            try:
                await q.commit(conn)
            except BaseException:
                await q.close(conn)
                raise
        try:
            if not commit:
                await q.rollback(conn)
            after = await q.fetchval(conn, SESSION_STATE, None, _STATE_TIMEOUT)
        except Exception as exc:
            # Lost or stuck mid-cleanup: nobody can say what the session holds
            # now, so it is not lent again. The statement's own error, if
            # any, is the one the caller sees.
            logger.debug("cleanup after a guarded statement failed (%s): discarded", exc)
            await q.close(conn)
            return
        except BaseException:
            await q.close(conn)
            raise
        if after != before:
            logger.warning(
                "a guarded statement left state in its session (%s -> %s): connection discarded",
                before,
                after,
            )
            await q.close(conn)


async def run_guarded(db: AsyncDatabase, sql: str, params: Any, guard: Guard | None) -> Rows:
    """See `AsyncDatabase.run_guarded`."""
    if guard is None:
        guard = db.guard if db.guard is not None else Guard()
    elif not isinstance(guard, Guard):
        raise ConfigError("guard", "must be a pgharbor.Guard", guard)
    # Without parameters the text is exactly what the server reads: refuse
    # before taking a connection.
    statement = guard.check(sql) if params is None else None
    run = _GuardedRun(db._q, guard, statement)
    timeout = None if guard.timeout is None else guard.timeout + _GRACE
    route: Route | None = "primary" if guard.allow_writes else None
    rows = await db._once(run, sql, params, timeout, not guard.allow_writes, route)
    if guard.allow_writes:
        db.topology.note_write()
    return rows


class _CursorFetch:
    """A bounded fetch through a server-side cursor, in its own transaction
    (committed: the statement keeps autocommit semantics)."""

    __slots__ = ("max_rows", "q")

    def __init__(self, q: AsyncQueries, max_rows: int) -> None:
        self.q = q
        self.max_rows = max_rows

    async def __call__(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Rows:
        q = self.q
        await q.begin(conn, None, False, False)
        try:
            rows = await q.fetch_limited(conn, sql, params, self.max_rows, timeout, True)
        except BaseException:
            try:
                await q.rollback(conn)
            except Exception:
                pass  # the pool's return path rolls back or discards
            raise
        await q.commit(conn)
        return rows


class _PlainFetch:
    """A bounded fetch of a statement no cursor can run (rows read, the rest dropped)."""

    __slots__ = ("max_rows", "q")

    def __init__(self, q: AsyncQueries, max_rows: int) -> None:
        self.q = q
        self.max_rows = max_rows

    async def __call__(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Rows:
        return await self.q.fetch_limited(conn, sql, params, self.max_rows, timeout, False)


async def fetch_bounded(
    db: AsyncDatabase,
    query: str,
    params: Any,
    max_rows: int,
    timeout: float | None,
    idempotent: bool,
    route: Route | None,
) -> Rows:
    """See ``AsyncDatabase.fetch(max_rows=...)``."""
    _check_rows(max_rows)
    kind = statement_kind(query)
    op: AOp[Rows]
    if kind == "query":
        op = _CursorFetch(db._q, max_rows)
    else:
        op = _PlainFetch(db._q, max_rows)
    return await db._once(op, query, params, timeout, idempotent, route)


async def stream(
    db: AsyncDatabase,
    query: str,
    params: Any,
    batch_size: int,
    timeout: float | None,
    route: Route | None,
) -> AsyncIterator[list[Row]]:
    """See `AsyncDatabase.stream`."""
    _check_rows(batch_size, "batch_size")
    q = db._q
    async with db._pool_for(route).connection(reset=False) as conn:
        await q.begin(conn, None, False, False)
        done = False
        try:
            async for batch in q.stream(conn, query, params, batch_size, timeout):
                yield batch
            done = True
        finally:
            if done:
                await q.commit(conn)
            else:
                try:
                    await q.rollback(conn)
                except Exception:
                    pass  # the pool's return path rolls back or discards
