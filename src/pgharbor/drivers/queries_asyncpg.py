"""The query protocol over asyncpg: :class:`AsyncpgQueries`.

SQL goes to asyncpg untouched (``$1``, ``$2``...) with ``params`` spread as
positional arguments: a sequence, never a mapping (asyncpg has no named
parameters). `Record`\\ s become `Row`\\ s, one class per result.

Timeouts use asyncpg's own ``timeout=``: on expiry asyncpg raises
``TimeoutError`` at once and sends the cancel request in the background.
Until the server acknowledges it the connection reads as busy, and the pool
would throw it away; :func:`_settle` waits (briefly) for the acknowledgement,
so a timed-out connection usually goes back to the pool idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from pgharbor.drivers.queries_psycopg import begin_statement, cached_row_class, limited
from pgharbor.drivers.query import Isolation, Row, Rows

__all__ = ["AsyncpgQueries", "rows_affected"]

T = TypeVar("T")

# Command tags that end in a row count ("INSERT 0 3", "UPDATE 5", "SELECT 2").
_COUNTED = frozenset({"INSERT", "UPDATE", "DELETE", "SELECT", "MERGE", "COPY", "MOVE", "FETCH"})
_SETTLE = 1.0  # seconds to wait for a cancel to be acknowledged after a timeout
_NO_PARAMS: tuple[Any, ...] = ()


def rows_affected(status: str) -> int:
    """Rows affected from a command tag: ``"INSERT 0 3"`` -> 3, ``"CREATE TABLE"`` -> -1."""
    head, _, count = status.rpartition(" ")
    if count.isdigit() and head.partition(" ")[0] in _COUNTED:
        return int(count)
    return -1


async def _settle(conn: Any) -> None:
    """Wait up to ``_SETTLE`` s for asyncpg's background cancel to complete.

    asyncpg makes the next command wait for a pending cancel to be
    acknowledged, so one cheap statement is the public way to wait for it.
    If it fails (a transaction was open, so it is now aborted) or takes too
    long, the connection is left as it is: the pool's return path rolls back
    an aborted transaction and discards a busy or closed connection.
    """
    try:
        async with asyncio.timeout(_SETTLE):
            await conn.execute("SELECT 1")
    except Exception:
        pass


async def _bounded(conn: Any, call: Awaitable[T]) -> T:
    """Await an asyncpg call made with ``timeout=``; settle the connection if it expires."""
    try:
        return await call
    except TimeoutError:
        await _settle(conn)
        raise


def _rows(records: list[Any]) -> list[Row]:
    if not records:
        return []
    cls = cached_row_class(tuple(records[0].keys()))
    return [cls(record) for record in records]  # a Record iterates over its values


async def _fetch_limited(
    conn: Any,
    sql: str,
    args: Sequence[Any],
    max_rows: int | None,
    timeout: float | None,
    cursor: bool,
) -> Rows:
    # Always the extended protocol (a prepared statement: the server refuses
    # a second statement). A query inside a transaction goes through a portal
    # with a row limit, so the server stops at ``max_rows + 1``; its statement
    # comes from asyncpg's cache.
    if cursor and max_rows is not None and conn.is_in_transaction():
        cur = await conn.cursor(sql, *args, timeout=timeout)
        records = await cur.fetch(max_rows + 1, timeout=timeout)
        if records:
            return limited(_rows(records), list(records[0].keys()), max_rows, -1)
        # No rows: the names come from describing the statement (not run again).
        stmt = await conn.prepare(sql, timeout=timeout)
        return Rows(columns=[attr.name for attr in stmt.get_attributes()])
    # Anything else is read whole; the status gives a write's row count.
    stmt = await conn.prepare(sql, timeout=timeout)
    records = await stmt.fetch(*args, timeout=timeout)
    if max_rows is not None and len(records) > max_rows + 1:
        del records[max_rows + 1 :]
    names = [attr.name for attr in stmt.get_attributes()]
    status = stmt.get_statusmsg() or ""
    return limited(_rows(records), names, max_rows, rows_affected(status) if status else -1)


async def _stream(
    conn: Any, sql: str, args: Sequence[Any], batch_size: int, timeout: float | None
) -> AsyncIterator[list[Row]]:
    cur = await _bounded(conn, conn.cursor(sql, *args, timeout=timeout))
    while True:
        batch = await _bounded(conn, cur.fetch(batch_size, timeout=timeout))
        if not batch:
            return
        yield _rows(batch)


class AsyncpgQueries:
    """The query protocol on an asyncpg ``Connection`` (autocommit unless ``begin``).

    With a ``timeout`` the statement is cancelled server-side when it passes
    and ``TimeoutError`` is raised (after up to 1 s more, waiting for the
    cancel to land). Other errors are asyncpg's own.
    """

    def __init__(self, *, prepared_statements: bool = True) -> None:
        # The connection already carries the setting (statement_cache_size);
        # kept so one options dict configures the driver and the queries alike.
        self.prepared_statements = prepared_statements

    def __repr__(self) -> str:
        return f"<AsyncpgQueries prepared_statements={self.prepared_statements}>"

    async def fetch(self, conn: Any, sql: str, params: Any, timeout: float | None) -> list[Row]:
        """All rows of the result ([] for a statement without rows).

        Raises:
            TimeoutError: ``timeout`` passed; the statement was cancelled.
        """
        args = _NO_PARAMS if params is None else params
        if timeout is None:
            return _rows(await conn.fetch(sql, *args))
        return _rows(await _bounded(conn, conn.fetch(sql, *args, timeout=timeout)))

    async def fetchrow(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Row | None:
        """The first row, or None (see `fetch`)."""
        args = _NO_PARAMS if params is None else params
        if timeout is None:
            record = await conn.fetchrow(sql, *args)
        else:
            record = await _bounded(conn, conn.fetchrow(sql, *args, timeout=timeout))
        if record is None:
            return None
        return cached_row_class(tuple(record.keys()))(record)

    async def fetchval(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Any:
        """The first column of the first row, or None (see `fetch`)."""
        args = _NO_PARAMS if params is None else params
        if timeout is None:
            return await conn.fetchval(sql, *args)
        return await _bounded(conn, conn.fetchval(sql, *args, timeout=timeout))

    async def execute(self, conn: Any, sql: str, params: Any, timeout: float | None) -> int:
        """Run a statement; rows affected, from the command tag (-1 if it has none).

        Without ``params`` asyncpg uses the simple protocol, so ``sql`` may hold
        several statements (the last one's count is returned).
        """
        args = _NO_PARAMS if params is None else params
        if timeout is None:
            return rows_affected(await conn.execute(sql, *args))
        return rows_affected(await _bounded(conn, conn.execute(sql, *args, timeout=timeout)))

    async def executemany(
        self, conn: Any, sql: str, seq: Iterable[Any], timeout: float | None
    ) -> None:
        """Run a statement once per parameter set (asyncpg pipelines them).

        asyncpg runs them atomically: outside a transaction, all or none apply.
        """
        await _bounded(conn, conn.executemany(sql, seq, timeout=timeout))

    async def copy_records(
        self,
        conn: Any,
        table: str,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None,
        schema: str | None,
        timeout: float | None,
    ) -> int:
        """``copy_records_to_table`` (binary COPY, identifiers quoted by asyncpg); rows copied."""
        status = await _bounded(
            conn,
            conn.copy_records_to_table(
                table,
                records=records,
                columns=None if columns is None else list(columns),
                schema_name=schema,
                timeout=timeout,
            ),
        )
        return rows_affected(status)

    async def begin(
        self, conn: Any, isolation: Isolation | None, read_only: bool, deferrable: bool
    ) -> None:
        """Send one ``BEGIN`` with the transaction's settings."""
        await conn.execute(begin_statement(isolation, read_only, deferrable))

    async def commit(self, conn: Any) -> None:
        """Send ``COMMIT``; the driver's error if it fails or the connection is lost."""
        await conn.execute("COMMIT")

    async def rollback(self, conn: Any) -> None:
        """Send ``ROLLBACK``."""
        await conn.execute("ROLLBACK")

    # -- bounded results -------------------------------------------------------

    async def fetch_limited(
        self,
        conn: Any,
        sql: str,
        params: Any,
        max_rows: int | None,
        timeout: float | None,
        cursor: bool,
    ) -> Rows:
        """One statement, prepared (extended protocol), at most ``max_rows``
        rows; with ``cursor``, inside a transaction, through a portal with a
        row limit (the server stops producing)."""
        args = _NO_PARAMS if params is None else params
        return await _bounded(conn, _fetch_limited(conn, sql, args, max_rows, timeout, cursor))

    def stream(
        self, conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
    ) -> AsyncIterator[list[Row]]:
        """Batches of rows through an asyncpg cursor (a transaction must be open)."""
        return _stream(conn, sql, _NO_PARAMS if params is None else params, batch_size, timeout)

    def render(self, conn: Any, sql: str, params: Any) -> tuple[str, str, Any]:
        """``(sql, sql, params)``: asyncpg always sends parameters apart."""
        return sql, sql, params

    async def close(self, conn: Any) -> None:
        """Close the connection at once (the pool then discards it); never raises."""
        try:
            conn.terminate()
        except Exception:
            pass
