"""The query protocol over psycopg 3: :class:`AsyncPsycopgQueries`, :class:`PsycopgQueries`.

Also home of what every query adapter shares (psycopg is a core dependency):
:func:`cached_row_class`, :func:`begin_statement`, :func:`run_with_timeout`.

Rows are built once: a row factory hands psycopg the result's `Row` class;
``fetchval`` keeps plain tuples. SQL and parameters go to psycopg untouched
(``params=None`` sends none, so a ``%`` in the SQL is literal).

Timeouts: async calls run under ``asyncio.timeout``; psycopg answers the
cancellation by cancelling the statement server-side and draining it. Blocking
psycopg has no per-call timeout, so :func:`run_with_timeout` cancels from a
``threading.Timer``: one thread start per call (0.1-0.3 ms), paid only when
``timeout`` is not None. A cancel travels over a *new* connection, which a
hung server (paused, partitioned) never answers: so in both flavours, if the
statement is still running ``CANCEL_GRACE`` seconds after its timeout, the
connection's socket is shut down (see `sever`), the call ends with
`TimeoutError`, and the pool discards the connection. A timeout is a contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as e
from psycopg import sql as pgsql
from psycopg.rows import no_result, tuple_row

from pgharbor.drivers._sockets import sever
from pgharbor.drivers.query import Isolation, Row, Rows, row_class

__all__ = [
    "AsyncPsycopgQueries",
    "PsycopgQueries",
    "begin_statement",
    "cached_row_class",
    "limited",
    "run_with_timeout",
]

T = TypeVar("T")

#: Seconds a cancelled statement may take to end before its socket is cut.
CANCEL_GRACE = 2.0


# -- shared by all query adapters ---------------------------------------------

# Creating a class costs ~15 us, a third of a local round trip, and most
# applications run a few hundred distinct column lists: keep them. Cleared
# wholesale when full, so ad-hoc column names cannot grow it without bound.
_ROW_CLASSES: dict[tuple[str, ...], type[Row]] = {}
_ROW_CLASSES_MAX = 1024


def cached_row_class(names: tuple[str, ...]) -> type[Row]:
    """The `Row` class for a result with these column ``names`` (cached)."""
    cls = _ROW_CLASSES.get(names)
    if cls is None:
        if len(_ROW_CLASSES) >= _ROW_CLASSES_MAX:
            _ROW_CLASSES.clear()
        cls = _ROW_CLASSES[names] = row_class(names)
    return cls


def begin_statement(isolation: Isolation | str | None, read_only: bool, deferrable: bool) -> str:
    """The single ``BEGIN ...`` statement; only `Isolation` values reach the SQL.

    Raises:
        ValueError: ``isolation`` is not an isolation level.
    """
    text = "BEGIN"
    if isolation is not None:
        text += " ISOLATION LEVEL " + Isolation(isolation).value.upper()
    if read_only:
        text += " READ ONLY"
    if deferrable:
        # Only has an effect with SERIALIZABLE READ ONLY; the server accepts it anywhere.
        text += " DEFERRABLE"
    return text


#: Name of the server-side cursor bounded fetches declare (one at a time per
#: connection, closed before the call returns).
CURSOR_NAME = "pgharbor_cursor"


def limited(rows: list[Row], names: Sequence[str], max_rows: int | None, rowcount: int) -> Rows:
    """`Rows` from ``rows`` fetched with a cap of ``max_rows + 1``: the extra
    row only says that there were more."""
    truncated = max_rows is not None and len(rows) > max_rows
    if truncated:
        del rows[max_rows:]
    return Rows(rows, columns=names, truncated=truncated, rowcount=rowcount)


def _names(cur: Any) -> list[str]:
    return [col.name for col in cur.description or ()]


class _StatementTimer:
    """Cancels the statement in flight when ``timeout`` passes -- never a later
    one -- and cuts the connection if it is still running `CANCEL_GRACE` later.

    The lock makes "still running?" and "send the cancel" one step: `stop`
    cannot return while a cancel request is being sent, so once the caller has
    its answer no cancel can hit the connection's next statement. The cut
    does not take the lock (a cancel to a hung server may hold it): it only
    looks at ``_done``, which the caller sets first thing on return.
    """

    __slots__ = (
        "_cancel",
        "_cut_timer",
        "_done",
        "_lock",
        "_running",
        "_sever",
        "_timer",
        "fired",
        "severed",
    )

    def __init__(
        self, cancel: Callable[[], object], timeout: float, sever: Callable[[], bool] | None
    ) -> None:
        self._cancel, self._lock, self._sever = cancel, threading.Lock(), sever
        self._running, self._done, self.fired, self.severed = True, False, False, False
        self._cut_timer: threading.Timer | None = None
        self._timer = threading.Timer(timeout, self._fire, (CANCEL_GRACE,))
        self._timer.name = "pgharbor-statement-timeout"
        self._timer.daemon = True  # never keeps the interpreter alive
        self._timer.start()

    def _fire(self, grace: float) -> None:
        if self._done:
            return
        if self._sever is not None:
            cut = threading.Timer(grace, self._cut)
            cut.name = "pgharbor-statement-cut"
            cut.daemon = True
            cut.start()
            self._cut_timer = cut
            if self._done:  # stop() ran meanwhile and may have missed it
                cut.cancel()
        with self._lock:
            if not self._running:
                return
            self.fired = True
            try:
                self._cancel()
            except Exception:
                # The connection is closing or lost: the statement's own error tells.
                pass

    def _cut(self) -> None:
        if not self._done and self._sever is not None:
            # Flagged *before* the cut: the blocked caller wakes the moment
            # the socket goes down and must know not to wait for the lock,
            # which a cancel stuck on the silent server may be holding.
            self.severed = True
            if not self._sever():
                self.severed = False

    def stop(self) -> bool:
        """Disarm (waits for a cancel being sent, unless the connection was
        cut); whether the timer fired."""
        self._done = True
        if self._cut_timer is not None:
            self._cut_timer.cancel()
        if not self.severed:
            with self._lock:
                self._running = False
        self._timer.cancel()
        return self.fired


def run_with_timeout(
    cancel: Callable[[], object],
    canceled: type[BaseException],
    timeout: float,
    fn: Callable[..., T],
    *args: Any,
    sever: Callable[[], bool] | None = None,
) -> T:
    """``fn(*args)`` on a blocking connection, cancelled via ``cancel()`` after
    ``timeout``; if it still runs `CANCEL_GRACE` seconds later, ``sever()``
    cuts the connection.

    Raises:
        TimeoutError: the statement was cancelled because ``timeout`` passed
            (the driver's ``canceled`` error is chained as its cause), or the
            server did not answer the cancel and the connection was cut.
    """
    timer = _StatementTimer(cancel, timeout, sever)
    try:
        return fn(*args)
    except canceled as exc:
        if timer.stop():
            raise TimeoutError(
                f"statement took longer than {timeout} s and was cancelled on the server"
            ) from exc
        raise  # a cancel we did not send (statement_timeout, pg_cancel_backend...)
    except Exception as exc:
        timer.stop()
        if timer.severed:
            raise _cut_error(timeout) from exc
        raise
    finally:
        timer.stop()


def _cut_error(timeout: float) -> TimeoutError:
    return TimeoutError(
        f"statement took longer than {timeout} s and the server did not answer the "
        f"cancel within {CANCEL_GRACE} s: the connection was closed"
    )


# -- psycopg ---------------------------------------------------------------------

_CANCEL_TIMEOUT = 5.0  # as psycopg's own cancel on Ctrl-C


def _row_factory(cursor: Any) -> Any:
    """psycopg row factory: the result's `Row` class *is* the row maker."""
    desc = cursor.description
    if desc is None:
        return no_result  # a command without rows: nothing to make
    return cached_row_class(tuple([col.name for col in desc]))


def _copy_statement(table: str, columns: Sequence[str] | None, schema: str | None) -> Any:
    target = pgsql.Identifier(schema, table) if schema is not None else pgsql.Identifier(table)
    if columns is None:
        return pgsql.SQL("COPY {} FROM STDIN").format(target)
    names = pgsql.SQL(", ").join([pgsql.Identifier(c) for c in columns])
    return pgsql.SQL("COPY {} ({}) FROM STDIN").format(target, names)


def _cancel_of(conn: Any) -> Callable[[], object]:
    """The blocking cancel: ``cancel_safe`` (bounded, libpq 17 API) where available."""
    safe = getattr(conn, "cancel_safe", None)
    if safe is None:
        return conn.cancel  # type: ignore[no-any-return]
    return lambda: safe(timeout=_CANCEL_TIMEOUT)


def _timed(conn: Any, timeout: float, fn: Callable[..., T], *args: Any) -> T:
    return run_with_timeout(
        _cancel_of(conn), e.QueryCanceled, timeout, fn, *args, sever=lambda: sever(conn)
    )


async def _abounded(conn: Any, timeout: float, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(conn, *args)``, bounded: after ``timeout`` the statement is
    cancelled on the server (the cancel itself bounded by `CANCEL_GRACE`); if
    it is still running ``CANCEL_GRACE`` later, the socket is cut.

    psycopg's own answer to a cancelled task waits 5 s for the cancel and 5 s
    more for the statement to end; against a server that does not answer,
    that is 10 s, so the statement runs as a task this function cancels
    itself, and the task is only ever cancelled if the caller is.
    """
    task = asyncio.ensure_future(fn(conn, *args))
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
        if not done:
            # Over time: cancel server-side; the statement then ends with
            # QueryCanceled (the usual case) -- or, from a silent server, never.
            cancel = asyncio.ensure_future(conn.cancel_safe(timeout=CANCEL_GRACE))
            done, _ = await asyncio.wait((task,), timeout=CANCEL_GRACE)
            cancel.cancel()
            with contextlib.suppress(BaseException):
                await cancel
            if not done:
                sever(conn)  # the blocked read sees EOF at once
                done, _ = await asyncio.wait((task,), timeout=CANCEL_GRACE)
            if not done:
                task.cancel()
                raise _cut_error(timeout)
            exc = task.exception()
            if isinstance(exc, e.QueryCanceled):
                raise TimeoutError(
                    f"statement took longer than {timeout} s and was cancelled on the server"
                ) from exc
            if exc is not None:
                raise _cut_error(timeout) from exc
        return task.result()
    except asyncio.CancelledError:
        # The caller was cancelled: hand that to the statement (psycopg then
        # cancels it on the server) and wait, since the connection is in use.
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise


# The blocking operations; `PsycopgQueries` adds the timer when asked.


def _fetch(conn: Any, sql: str, params: Any) -> list[Row]:
    cur = conn.cursor(row_factory=_row_factory)
    cur.execute(sql, params)
    return cur.fetchall()  # type: ignore[no-any-return]


def _fetchrow(conn: Any, sql: str, params: Any) -> Row | None:
    cur = conn.cursor(row_factory=_row_factory)
    cur.execute(sql, params)
    return cur.fetchone()  # type: ignore[no-any-return]


def _fetchval(conn: Any, sql: str, params: Any) -> Any:
    cur = conn.cursor(row_factory=tuple_row)
    cur.execute(sql, params)
    row = cur.fetchone()
    return None if row is None else row[0]


def _execute(conn: Any, sql: str, params: Any) -> int:
    cur = conn.cursor()
    cur.execute(sql, params)
    return int(cur.rowcount)


def _executemany(conn: Any, sql: str, seq: Iterable[Any]) -> None:
    conn.cursor().executemany(sql, seq)  # pipelined by psycopg where libpq allows


def _copy(conn: Any, statement: Any, records: Iterable[Sequence[Any]]) -> int:
    cur = conn.cursor()
    with cur.copy(statement) as copy:
        for record in records:
            copy.write_row(record)
    return int(cur.rowcount)  # from the server's "COPY n"


def _cursor_statements(sql: str, max_rows: int | None) -> tuple[str, str, str]:
    count = "ALL" if max_rows is None else str(max_rows + 1)
    return (
        f"DECLARE {CURSOR_NAME} NO SCROLL CURSOR FOR {sql}",
        f"FETCH FORWARD {count} FROM {CURSOR_NAME}",
        f"CLOSE {CURSOR_NAME}",
    )


def _fetch_limited(conn: Any, sql: str, params: Any, max_rows: int | None, cursor: bool) -> Rows:
    # Pipeline mode: every statement goes with the extended protocol (the
    # server refuses a second statement in ``sql``), and all of them in one
    # round trip. With ``cursor``: DECLARE, FETCH max_rows + 1, CLOSE -- the
    # server stops producing at the cap. Without: every row is read (EXPLAIN,
    # SHOW and RETURNING results) and the ones past the cap dropped.
    cur = conn.cursor(row_factory=_row_factory)
    with conn.pipeline():
        if cursor:
            declare, fetch, close = _cursor_statements(sql, max_rows)
            conn.cursor().execute(declare, params, prepare=False)
            cur.execute(fetch, prepare=False)
            conn.cursor().execute(close, prepare=False)
        else:
            cur.execute(sql, params)
    rows = cur.fetchall() if cur.description is not None else []
    return limited(rows, _names(cur), max_rows, -1 if cursor else int(cur.rowcount))


def _stream(
    conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
) -> Iterator[list[Row]]:
    with conn.cursor(name=CURSOR_NAME, row_factory=_row_factory) as cur:
        if timeout is None:
            cur.execute(sql, params)
        else:
            _timed(conn, timeout, cur.execute, sql, params)
        while True:
            if timeout is None:
                batch = cur.fetchmany(batch_size)
            else:
                batch = _timed(conn, timeout, cur.fetchmany, batch_size)
            if not batch:
                return
            yield batch


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


class PsycopgQueries:
    """The query protocol on a blocking ``psycopg.Connection`` (autocommit).

    Every method blocks until the server answers. With a ``timeout``, a timer
    thread cancels the statement server-side when it passes and the call
    raises ``TimeoutError``; the connection is then idle (or idle in a failed
    transaction, if one was open). Other errors are psycopg's own.
    """

    def __init__(self, *, prepared_statements: bool = True) -> None:
        # The connection already carries the setting (prepare_threshold); kept
        # so one options dict configures the driver and the queries alike.
        self.prepared_statements = prepared_statements

    def __repr__(self) -> str:
        return f"<PsycopgQueries prepared_statements={self.prepared_statements}>"

    def fetch(self, conn: Any, sql: str, params: Any, timeout: float | None) -> list[Row]:
        """All rows of the result.

        Raises:
            TimeoutError: ``timeout`` passed; the statement was cancelled.
            psycopg.ProgrammingError: the statement returns no rows.
        """
        if timeout is None:
            return _fetch(conn, sql, params)
        return _timed(conn, timeout, _fetch, conn, sql, params)

    def fetchrow(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Row | None:
        """The first row, or None (see `fetch`)."""
        if timeout is None:
            return _fetchrow(conn, sql, params)
        return _timed(conn, timeout, _fetchrow, conn, sql, params)

    def fetchval(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Any:
        """The first column of the first row, or None (see `fetch`)."""
        if timeout is None:
            return _fetchval(conn, sql, params)
        return _timed(conn, timeout, _fetchval, conn, sql, params)

    def execute(self, conn: Any, sql: str, params: Any, timeout: float | None) -> int:
        """Run a statement; rows affected (psycopg's ``rowcount``, -1 if none)."""
        if timeout is None:
            return _execute(conn, sql, params)
        return _timed(conn, timeout, _execute, conn, sql, params)

    def executemany(self, conn: Any, sql: str, seq: Iterable[Any], timeout: float | None) -> None:
        """Run a statement once per parameter set, pipelined where libpq allows.

        In autocommit each statement commits on its own: wrap the call in a
        transaction to make it all-or-nothing.
        """
        if timeout is None:
            return _executemany(conn, sql, seq)
        return _timed(conn, timeout, _executemany, conn, sql, seq)

    def copy_records(
        self,
        conn: Any,
        table: str,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None,
        schema: str | None,
        timeout: float | None,
    ) -> int:
        """``COPY table (columns) FROM STDIN`` (identifiers quoted); rows copied.

        Values are adapted by psycopg as for query parameters (text format).
        """
        statement = _copy_statement(table, columns, schema)
        if timeout is None:
            return _copy(conn, statement, records)
        return _timed(conn, timeout, _copy, conn, statement, records)

    def begin(
        self, conn: Any, isolation: Isolation | None, read_only: bool, deferrable: bool
    ) -> None:
        """Send one ``BEGIN`` with the transaction's settings."""
        # Never prepared: transaction control is cheap to parse and a prepared
        # BEGIN would only fill psycopg's cache.
        conn.execute(begin_statement(isolation, read_only, deferrable), prepare=False)

    def commit(self, conn: Any) -> None:
        """Send ``COMMIT``; the driver's error if it fails or the connection is lost."""
        conn.execute("COMMIT", prepare=False)

    def rollback(self, conn: Any) -> None:
        """Send ``ROLLBACK`` (psycopg sees it and clears its prepared-statement cache)."""
        conn.execute("ROLLBACK", prepare=False)

    # -- bounded results -------------------------------------------------------

    def fetch_limited(
        self,
        conn: Any,
        sql: str,
        params: Any,
        max_rows: int | None,
        timeout: float | None,
        cursor: bool,
    ) -> Rows:
        """One statement, extended protocol, at most ``max_rows`` rows (see
        `pgharbor.drivers.query.Queries`); with ``cursor`` a server-side
        cursor (a transaction must be open)."""
        if timeout is None:
            return _fetch_limited(conn, sql, params, max_rows, cursor)
        return _timed(conn, timeout, _fetch_limited, conn, sql, params, max_rows, cursor)

    def stream(
        self, conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
    ) -> Iterator[list[Row]]:
        """Batches of rows through a server-side cursor (a transaction must be open)."""
        return _stream(conn, sql, params, batch_size, timeout)

    def render(self, conn: Any, sql: str, params: Any) -> tuple[str, str, Any]:
        """The text with parameters inlined (for the guard to parse; psycopg
        itself sends them separately), and ``sql``/``params`` unchanged."""
        if params is None:
            return sql, sql, None
        return psycopg.ClientCursor(conn).mogrify(sql, params), sql, params

    def close(self, conn: Any) -> None:
        """Close the connection (the pool then discards it); never raises."""
        _close(conn)


# -- psycopg async ----------------------------------------------------------------


async def _afetch(conn: Any, sql: str, params: Any) -> list[Row]:
    cur = conn.cursor(row_factory=_row_factory)
    await cur.execute(sql, params)
    return await cur.fetchall()  # type: ignore[no-any-return]


async def _afetchrow(conn: Any, sql: str, params: Any) -> Row | None:
    cur = conn.cursor(row_factory=_row_factory)
    await cur.execute(sql, params)
    return await cur.fetchone()  # type: ignore[no-any-return]


async def _afetchval(conn: Any, sql: str, params: Any) -> Any:
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(sql, params)
    row = await cur.fetchone()
    return None if row is None else row[0]


async def _aexecute(conn: Any, sql: str, params: Any) -> int:
    cur = conn.cursor()
    await cur.execute(sql, params)
    return int(cur.rowcount)


async def _acopy(conn: Any, statement: Any, records: Iterable[Sequence[Any]]) -> int:
    cur = conn.cursor()
    async with cur.copy(statement) as copy:
        for record in records:
            await copy.write_row(record)
    return int(cur.rowcount)


async def _afetch_limited(
    conn: Any, sql: str, params: Any, max_rows: int | None, cursor: bool
) -> Rows:
    cur = conn.cursor(row_factory=_row_factory)
    async with conn.pipeline():  # as `_fetch_limited`
        if cursor:
            declare, fetch, close = _cursor_statements(sql, max_rows)
            await conn.cursor().execute(declare, params, prepare=False)
            await cur.execute(fetch, prepare=False)
            await conn.cursor().execute(close, prepare=False)
        else:
            await cur.execute(sql, params)
    rows = await cur.fetchall() if cur.description is not None else []
    return limited(rows, _names(cur), max_rows, -1 if cursor else int(cur.rowcount))


async def _astream(
    conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
) -> AsyncIterator[list[Row]]:
    async with conn.cursor(name=CURSOR_NAME, row_factory=_row_factory) as cur:
        if timeout is None:
            await cur.execute(sql, params)
        else:
            await _abounded(conn, timeout, lambda _c: cur.execute(sql, params))
        while True:
            if timeout is None:
                batch = await cur.fetchmany(batch_size)
            else:
                batch = await _abounded(conn, timeout, lambda _c: cur.fetchmany(batch_size))
            if not batch:
                return
            yield batch


class AsyncPsycopgQueries:
    """The query protocol on a ``psycopg.AsyncConnection`` (autocommit).

    With a ``timeout``, the call runs under ``asyncio.timeout``: on expiry
    psycopg cancels the statement on the server and waits (up to 5 s) for it
    to end, then ``TimeoutError`` is raised. The connection is then idle, idle
    in a failed transaction, or -- if the server did not answer the cancel --
    closed. Other errors are psycopg's own.
    """

    def __init__(self, *, prepared_statements: bool = True) -> None:
        self.prepared_statements = prepared_statements  # as `PsycopgQueries`

    def __repr__(self) -> str:
        return f"<AsyncPsycopgQueries prepared_statements={self.prepared_statements}>"

    async def fetch(self, conn: Any, sql: str, params: Any, timeout: float | None) -> list[Row]:
        """All rows of the result.

        Raises:
            TimeoutError: ``timeout`` passed; the statement was cancelled.
            psycopg.ProgrammingError: the statement returns no rows.
        """
        if timeout is None:
            return await _afetch(conn, sql, params)
        return await _abounded(conn, timeout, _afetch, sql, params)

    async def fetchrow(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Row | None:
        """The first row, or None (see `fetch`)."""
        if timeout is None:
            return await _afetchrow(conn, sql, params)
        return await _abounded(conn, timeout, _afetchrow, sql, params)

    async def fetchval(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Any:
        """The first column of the first row, or None (see `fetch`)."""
        if timeout is None:
            return await _afetchval(conn, sql, params)
        return await _abounded(conn, timeout, _afetchval, sql, params)

    async def execute(self, conn: Any, sql: str, params: Any, timeout: float | None) -> int:
        """Run a statement; rows affected (psycopg's ``rowcount``, -1 if none)."""
        if timeout is None:
            return await _aexecute(conn, sql, params)
        return await _abounded(conn, timeout, _aexecute, sql, params)

    async def executemany(
        self, conn: Any, sql: str, seq: Iterable[Any], timeout: float | None
    ) -> None:
        """Run a statement once per parameter set, pipelined where libpq allows
        (each one commits on its own unless a transaction is open)."""
        async with asyncio.timeout(timeout):
            await conn.cursor().executemany(sql, seq)

    async def copy_records(
        self,
        conn: Any,
        table: str,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None,
        schema: str | None,
        timeout: float | None,
    ) -> int:
        """``COPY table (columns) FROM STDIN`` (identifiers quoted); rows copied."""
        async with asyncio.timeout(timeout):
            return await _acopy(conn, _copy_statement(table, columns, schema), records)

    async def begin(
        self, conn: Any, isolation: Isolation | None, read_only: bool, deferrable: bool
    ) -> None:
        """Send one ``BEGIN`` with the transaction's settings."""
        await conn.execute(begin_statement(isolation, read_only, deferrable), prepare=False)

    async def commit(self, conn: Any) -> None:
        """Send ``COMMIT``; the driver's error if it fails or the connection is lost."""
        await conn.execute("COMMIT", prepare=False)

    async def rollback(self, conn: Any) -> None:
        """Send ``ROLLBACK`` (psycopg sees it and clears its prepared-statement cache)."""
        await conn.execute("ROLLBACK", prepare=False)

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
        """One statement, extended protocol, at most ``max_rows`` rows (see
        `pgharbor.drivers.query.AsyncQueries`); with ``cursor`` a server-side
        cursor (a transaction must be open)."""
        if timeout is None:
            return await _afetch_limited(conn, sql, params, max_rows, cursor)
        return await _abounded(conn, timeout, _afetch_limited, sql, params, max_rows, cursor)

    def stream(
        self, conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
    ) -> AsyncIterator[list[Row]]:
        """Batches of rows through a server-side cursor (a transaction must be open)."""
        return _astream(conn, sql, params, batch_size, timeout)

    def render(self, conn: Any, sql: str, params: Any) -> tuple[str, str, Any]:
        """As `PsycopgQueries.render`."""
        if params is None:
            return sql, sql, None
        return psycopg.AsyncClientCursor(conn).mogrify(sql, params), sql, params

    async def close(self, conn: Any) -> None:
        """Close the connection (the pool then discards it); never raises."""
        try:
            await conn.close()
        except Exception:
            pass
