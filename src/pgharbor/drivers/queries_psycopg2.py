"""The query protocol over psycopg2: :class:`Psycopg2Queries`.

SQL and parameters go to psycopg2 untouched (``%s`` / ``%(name)s``;
``params=None`` sends none, so a ``%`` in the SQL is literal). Rows are
rebuilt as `Row` from ``cursor.description``.

``copy_records`` streams the records as COPY text through ``copy_expert``,
rendering values itself (see :func:`copy_text`). Timeouts cancel the
statement from a timer thread with ``connection.cancel()``, as for blocking
psycopg (a thread start per call, only when ``timeout`` is not None).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg2.extensions as ext
import psycopg2.extras

from pgharbor.drivers._sockets import sever
from pgharbor.drivers.psycopg2 import cancel
from pgharbor.drivers.queries_psycopg import (
    CURSOR_NAME,
    begin_statement,
    cached_row_class,
    limited,
    run_with_timeout,
)
from pgharbor.drivers.query import Isolation, Row, Rows

__all__ = ["Psycopg2Queries", "copy_text"]

T = TypeVar("T")

# COPY text format: backslash starts an escape, tab separates columns,
# newline / carriage return end a row.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_CHUNK = 64 * 1024  # characters handed to psycopg2 per read()


def copy_text(value: Any) -> str:
    """One value as a COPY text field: None -> ``\\N``, escapes applied.

    bool -> t/f, bytes-like -> bytea hex, dict -> JSON, timedelta -> an
    interval, anything else -> ``str(value)`` (numbers, str, dates and times,
    UUID, Decimal...).

    Raises:
        TypeError: a list or tuple (arrays are not rendered; use psycopg).
    """
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()  # bytea hex input, its backslash escaped
    if isinstance(value, dict):
        return json.dumps(value).translate(_ESCAPES)
    if isinstance(value, datetime.timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    if isinstance(value, list | tuple):
        raise TypeError("copy_records with psycopg2 cannot render arrays; use psycopg")
    return str(value).translate(_ESCAPES)


class _CopyStream:
    """A file-like ``read()`` over records rendered as COPY text, a chunk at a
    time, so memory stays bounded whatever the number of records."""

    def __init__(self, records: Iterable[Sequence[Any]]) -> None:
        self._records: Iterator[Sequence[Any]] = iter(records)
        self.rows = 0

    def read(self, size: int = -1) -> str:
        # Whole rows only: a chunk may run past ``size`` by one row, which
        # psycopg2 accepts (it sends whatever read() returns).
        limit = _CHUNK if size is None or size < 0 else max(size, 1)
        parts: list[str] = []
        length = 0
        for record in self._records:
            line = "\t".join([copy_text(v) for v in record]) + "\n"
            parts.append(line)
            length += len(line)
            self.rows += 1
            if length >= limit:
                break
        return "".join(parts)

    readline = read  # psycopg2 only calls read(); here for file-likeness


def _copy_statement(
    conn: Any, table: str, columns: Sequence[str] | None, schema: str | None
) -> str:
    # quote_ident needs the connection for its encoding.
    target = ext.quote_ident(table, conn)
    if schema is not None:
        target = ext.quote_ident(schema, conn) + "." + target
    if columns is not None:
        names = ", ".join([ext.quote_ident(c, conn) for c in columns])
        target += f" ({names})"
    return f"COPY {target} FROM STDIN"


def _fetch(conn: Any, sql: str, params: Any) -> list[Row]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
        if not rows:
            return []
        cls = cached_row_class(tuple([col[0] for col in cur.description]))
        return [cls(row) for row in rows]


def _fetchrow(conn: Any, sql: str, params: Any) -> Row | None:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        if row is None:
            return None
        return cached_row_class(tuple([col[0] for col in cur.description]))(row)


def _fetchval(conn: Any, sql: str, params: Any) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        return None if row is None else row[0]


def _execute(conn: Any, sql: str, params: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return int(cur.rowcount)


def _executemany(conn: Any, sql: str, seq: Iterable[Any]) -> None:
    with conn.cursor() as cur:
        # Pages of 100 statements per round trip instead of one each.
        psycopg2.extras.execute_batch(cur, sql, seq)


def _copy(conn: Any, statement: str, records: Iterable[Sequence[Any]]) -> int:
    stream = _CopyStream(records)
    with conn.cursor() as cur:
        cur.copy_expert(statement, stream)
        return int(cur.rowcount) if cur.rowcount >= 0 else stream.rows


def _timed(conn: Any, timeout: float, fn: Callable[..., T], *args: Any) -> T:
    return run_with_timeout(
        lambda: cancel(conn), ext.QueryCanceledError, timeout, fn, *args, sever=lambda: sever(conn)
    )


def _as_rows(cur: Any, rows: list[tuple[Any, ...]]) -> list[Row]:
    if not rows:
        return []
    cls = cached_row_class(tuple([col[0] for col in cur.description]))
    return [cls(row) for row in rows]


def _declare(cur: Any, sql: str, params: Any) -> None:
    # psycopg2 only speaks the simple protocol: a second statement in
    # ``sql`` would run. The guard parses the exact text sent (`render`);
    # the transaction it opens is the next wall.
    cur.execute(f"DECLARE {CURSOR_NAME} NO SCROLL CURSOR FOR {sql}", params)


def _fetch_limited(conn: Any, sql: str, params: Any, max_rows: int | None, cursor: bool) -> Rows:
    with conn.cursor() as cur:
        if cursor:
            _declare(cur, sql, params)
            try:
                count = "ALL" if max_rows is None else str(max_rows + 1)
                cur.execute(f"FETCH FORWARD {count} FROM {CURSOR_NAME}")
                names = [col[0] for col in cur.description or ()]
                return limited(_as_rows(cur, cur.fetchall()), names, max_rows, -1)
            finally:
                if conn.get_transaction_status() == ext.TRANSACTION_STATUS_INTRANS:
                    cur.execute(f"CLOSE {CURSOR_NAME}")
        cur.execute(sql, params)
        if cur.description is None:
            return Rows(rowcount=int(cur.rowcount))
        names = [col[0] for col in cur.description]
        rows = cur.fetchall() if max_rows is None else cur.fetchmany(max_rows + 1)
        return limited(_as_rows(cur, rows), names, max_rows, int(cur.rowcount))


def _stream(
    conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
) -> Iterator[list[Row]]:
    def run(cur: Any, text: str, args: Any) -> None:
        if timeout is None:
            cur.execute(text, args)
        else:
            _timed(conn, timeout, cur.execute, text, args)

    with conn.cursor() as cur:
        run(cur, f"DECLARE {CURSOR_NAME} NO SCROLL CURSOR FOR {sql}", params)
        try:
            while True:
                run(cur, f"FETCH FORWARD {int(batch_size)} FROM {CURSOR_NAME}", None)
                batch = _as_rows(cur, cur.fetchall())
                if not batch:
                    return
                yield batch
        finally:
            if conn.get_transaction_status() == ext.TRANSACTION_STATUS_INTRANS:
                cur.execute(f"CLOSE {CURSOR_NAME}")


class Psycopg2Queries:
    """The query protocol on a psycopg2 ``connection`` (autocommit).

    Every method blocks until the server answers. With a ``timeout``, a timer
    thread cancels the statement (``connection.cancel()``) when it passes and
    ``TimeoutError`` is raised; the connection is then idle (or idle in a
    failed transaction, if one was open). Other errors are psycopg2's own.
    """

    def __init__(self, *, prepared_statements: bool = True) -> None:
        self.prepared_statements = prepared_statements  # psycopg2 never prepares

    def __repr__(self) -> str:
        return "<Psycopg2Queries>"

    def fetch(self, conn: Any, sql: str, params: Any, timeout: float | None) -> list[Row]:
        """All rows of the result.

        Raises:
            TimeoutError: ``timeout`` passed; the statement was cancelled.
            psycopg2.ProgrammingError: the statement returns no rows.
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
        """Run a statement; rows affected (psycopg2's ``rowcount``, -1 if none)."""
        if timeout is None:
            return _execute(conn, sql, params)
        return _timed(conn, timeout, _execute, conn, sql, params)

    def executemany(self, conn: Any, sql: str, seq: Iterable[Any], timeout: float | None) -> None:
        """Run a statement once per parameter set, 100 per round trip
        (``execute_batch``); each page commits on its own unless a transaction
        is open."""
        if timeout is None:
            _executemany(conn, sql, seq)
        else:
            _timed(conn, timeout, _executemany, conn, sql, seq)

    def copy_records(
        self,
        conn: Any,
        table: str,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None,
        schema: str | None,
        timeout: float | None,
    ) -> int:
        """``COPY table (columns) FROM STDIN`` in text format; rows copied.

        Raises:
            TypeError: a value :func:`copy_text` cannot render.
        """
        statement = _copy_statement(conn, table, columns, schema)
        if timeout is None:
            return _copy(conn, statement, records)
        return _timed(conn, timeout, _copy, conn, statement, records)

    def begin(
        self, conn: Any, isolation: Isolation | None, read_only: bool, deferrable: bool
    ) -> None:
        """Send one ``BEGIN`` with the transaction's settings."""
        _execute(conn, begin_statement(isolation, read_only, deferrable), None)

    def commit(self, conn: Any) -> None:
        """Send ``COMMIT`` (psycopg2's ``commit()`` does nothing in autocommit)."""
        _execute(conn, "COMMIT", None)

    def rollback(self, conn: Any) -> None:
        """Send ``ROLLBACK`` (psycopg2's ``rollback()`` does nothing in autocommit)."""
        _execute(conn, "ROLLBACK", None)

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
        """One statement, at most ``max_rows`` rows; with ``cursor``
        ``DECLARE``/``FETCH FORWARD max_rows + 1`` (a transaction must be
        open). psycopg2 sends the text with the simple protocol."""
        if timeout is None:
            return _fetch_limited(conn, sql, params, max_rows, cursor)
        return _timed(conn, timeout, _fetch_limited, conn, sql, params, max_rows, cursor)

    def stream(
        self, conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
    ) -> Iterator[list[Row]]:
        """Batches of rows through ``DECLARE``/``FETCH`` (a transaction must be open)."""
        return _stream(conn, sql, params, batch_size, timeout)

    def render(self, conn: Any, sql: str, params: Any) -> tuple[str, str, Any]:
        """The exact text psycopg2 will send (parameters inlined by
        ``mogrify``), to be parsed and then sent as it is, without params."""
        if params is None:
            return sql, sql, None
        with conn.cursor() as cur:
            raw = cur.mogrify(sql, params)
        text = raw.decode(ext.encodings.get(conn.encoding, "utf-8"))
        return text, text, None

    def close(self, conn: Any) -> None:
        """Close the connection (the pool then discards it); never raises."""
        try:
            conn.close()
        except Exception:
            pass
