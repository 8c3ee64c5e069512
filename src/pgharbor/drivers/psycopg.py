"""Adapters over psycopg 3: :class:`AsyncPsycopgDriver` and :class:`PsycopgDriver`.

Pings and the session reset scripts go through psycopg's low-level ``pgconn``
(non-blocking libpq) so they can be bounded by a deadline in both flavours:
psycopg's own query path cannot be (sync waits have no deadline; an async
cancellation triggers a server-side cancel that may itself wait up to 10 s).
Rollback uses psycopg's generator so its prepared-statement cache is cleared as
psycopg expects, bounded by psycopg's ``wait(timeout=)``. The private touches
live in :func:`_rollback_gen` and :func:`_forget_prepared`.
"""

from __future__ import annotations

import asyncio
import math
import select
import time
from collections.abc import Callable
from typing import Any, ClassVar

import psycopg
from psycopg import errors as e
from psycopg import pq

from pgharbor._policy.sqlstate import is_disconnect, is_disconnect_message, sqlstate_of
from pgharbor.drivers._sockets import poller, sever, wait_fd
from pgharbor.drivers.base import ConnStatus

__all__ = ["AsyncPsycopgDriver", "PsycopgDriver"]

_TS = pq.TransactionStatus
_STATUS = {
    _TS.IDLE: ConnStatus.IDLE,
    _TS.INTRANS: ConnStatus.INTRANS,
    _TS.INERROR: ConnStatus.INERROR,
    _TS.ACTIVE: ConnStatus.ACTIVE,
    _TS.UNKNOWN: ConnStatus.BROKEN,
}
_BAD = pq.ConnStatus.BAD
_TS_IDLE = _TS.IDLE
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
_LIBPQ_MIN_CONNECT_TIMEOUT = 2  # libpq (and psycopg) round anything lower up to 2 s


def connect_timeout(params: dict[str, Any], timeout: float) -> int:
    """The libpq ``connect_timeout`` (whole seconds, per host) for ``timeout``.

    libpq counts whole seconds and treats anything below 2 as 2, so a sync
    connect can overrun a sub-2 s timeout; a smaller value set by the user wins.
    """
    ours = max(_LIBPQ_MIN_CONNECT_TIMEOUT, math.ceil(timeout))
    try:
        theirs = int(params.get("connect_timeout") or 0)
    except ValueError:
        theirs = 0
    return min(ours, max(theirs, _LIBPQ_MIN_CONNECT_TIMEOUT)) if theirs > 0 else ours


def _connect_kwargs(
    params: dict[str, Any], timeout: float, prepared_statements: bool
) -> dict[str, Any]:
    kwargs = dict(params)
    kwargs["connect_timeout"] = connect_timeout(params, timeout)
    kwargs["autocommit"] = True
    if not prepared_statements:
        kwargs["prepare_threshold"] = None  # PgBouncer transaction mode
    return kwargs


def _status(conn: Any) -> ConnStatus:
    # Hot path (every return to the pool): two attribute reads and a dict lookup.
    pgconn = conn.pgconn
    if pgconn.status == _BAD:
        return ConnStatus.BROKEN
    return _STATUS[pgconn.transaction_status]


def _is_error_disconnect(exc: BaseException) -> bool:
    if not isinstance(exc, e.Error) or isinstance(exc, e._WaitTimeout):
        return False
    pgconn = exc.pgconn  # set when psycopg raised it on a (now broken) connection
    if pgconn is not None and pgconn.status == _BAD:
        return True
    code = sqlstate_of(exc)
    if code is not None:
        return is_disconnect(code)
    return isinstance(exc, e.OperationalError | e.InterfaceError) and (
        is_disconnect_message(str(exc))
    )


def _rollback_gen(conn: Any) -> Any:
    """psycopg's own rollback generator (private API, psycopg >= 3.2).

    Used with ``conn.wait(gen, timeout=)``, which raises ``_WaitTimeout`` rather
    than cancelling server-side, so the rollback is bounded and psycopg still
    clears its prepared-statement cache after ``ROLLBACK``.
    """
    return conn._rollback_gen()


def _forget_prepared(conn: Any) -> None:
    """After a ``DISCARD ALL`` sent below psycopg: clear its prepared-statement
    cache, as psycopg does when it sees that command go through its own
    ``execute`` (private API, psycopg >= 3.1; a bounded send needs libpq)."""
    conn._prepared.clear()


def _take_result(conn: Any, result: Any, error: e.Error | None) -> e.Error | None:
    """Keep the first error the server sent; results must all be read anyway."""
    if error is None and result.status == _FATAL_ERROR:
        return e.error_from_result(result, encoding=conn.info.encoding)
    return error


# --- sync: wait on the socket with poll() (no FD_SETSIZE limit), under a deadline


def _exec_sync(conn: Any, query: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pgconn = conn.pgconn
    pgconn.send_query(query)
    fd = pgconn.socket
    while pgconn.flush():  # non-blocking connection: the send may be partial
        wait_fd(fd, select.POLLOUT, deadline)
    error = None
    while True:
        while pgconn.is_busy():
            wait_fd(fd, select.POLLIN, deadline)
            pgconn.consume_input()
        if (result := pgconn.get_result()) is None:
            break
        error = _take_result(conn, result, error)
    if error is not None:
        raise error


# --- async: the same loop, waiting through the event loop


async def _wait_fd_async(fd: int, writable: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (
        (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    )
    add(fd, ready.set_result, None)
    try:
        await ready
    finally:
        remove(fd)


async def _exec_async(conn: Any, query: bytes, timeout: float) -> None:
    pgconn = conn.pgconn
    error = None
    async with asyncio.timeout(timeout):
        pgconn.send_query(query)
        fd = pgconn.socket
        while pgconn.flush():
            await _wait_fd_async(fd, writable=True)
        while True:
            while pgconn.is_busy():
                await _wait_fd_async(fd)
                pgconn.consume_input()
            if (result := pgconn.get_result()) is None:
                break
            error = _take_result(conn, result, error)
    if error is not None:
        raise error


class _Common:
    """Methods without I/O, shared by both flavours."""

    #: Arguments of psycopg's ``connect`` besides libpq keywords that a pool's
    #: ``kwargs`` may carry, passed as they are (``autocommit`` is not one:
    #: pgharbor's connections are in autocommit mode).
    connect_options: ClassVar[frozenset[str]] = frozenset(
        {"prepare_threshold", "row_factory", "cursor_factory", "context"}
    )

    def __init__(self, *, prepared_statements: bool = True) -> None:
        self.prepared_statements = prepared_statements

    def __repr__(self) -> str:
        return f"<{type(self).__name__} prepared_statements={self.prepared_statements}>"

    def status(self, conn: Any) -> ConnStatus:
        """The connection's state from libpq's cached status (no I/O)."""
        return _status(conn)

    def terminate(self, conn: Any) -> None:
        """Close the socket now; never raises.

        ``PQfinish`` queues a Terminate message on a non-blocking socket and
        closes it, so it never waits on the network.
        """
        try:
            conn.pgconn.finish()
        except Exception:
            pass

    def server_version(self, conn: Any) -> int:
        """``server_version_num``, e.g. 150018 (no I/O)."""
        return int(conn.info.server_version)

    def backend_pid(self, conn: Any) -> int:
        """The server process id (no I/O)."""
        return int(conn.info.backend_pid)

    def parameter(self, conn: Any, name: str) -> str | None:
        """A parameter the server reported (``ParameterStatus``), or None."""
        value = conn.info.parameter_status(name)
        return None if value is None else str(value)

    def is_error_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a psycopg error meaning the connection is lost.

        True when psycopg saw the connection break, for SQLSTATE class 08 and
        57P01-57P05, and for connection errors without a SQLSTATE whose message
        says the server closed the connection. Timeouts are not disconnects.
        """
        return _is_error_disconnect(exc)

    def watch(self, conn: Any) -> Callable[[], bool]:
        """The checkout check: libpq's status, and a zero-timeout ``poll``
        (see `pgharbor.drivers._sockets.watch_fd`)."""
        pgconn = conn.pgconn
        poll = poller(pgconn.socket)

        def lendable() -> bool:
            # The status first: a finished connection's descriptor number may
            # already belong to another socket.
            return pgconn.status != _BAD and not poll(0)

        return lendable

    def pristine(self, conn: Any) -> bool:
        """Autocommit on, no isolation level, read-only or deferrable set.

        Read from psycopg's own fields (private, psycopg >= 3.1): its
        properties cost five times as much, on every return to the pool."""
        return (
            conn._autocommit is True
            and conn._isolation_level is None
            and conn._read_only is None
            and conn._deferrable is None
        )

    def reusable(self, conn: Any) -> bool:
        """Idle and pristine, in one call (the return path's question)."""
        pgconn = conn.pgconn
        return (
            pgconn.transaction_status == _TS_IDLE
            and pgconn.status != _BAD
            and conn._autocommit is True
            and conn._isolation_level is None
            and conn._read_only is None
            and conn._deferrable is None
        )

    def sever(self, conn: Any) -> bool:
        """Shut the libpq socket down (see `sever`)."""
        return sever(conn)


class AsyncPsycopgDriver(_Common):
    """psycopg 3 ``AsyncConnection`` adapter (the default async driver)."""

    name: ClassVar[str] = "psycopg"

    async def connect(self, params: dict[str, Any], timeout: float) -> Any:
        """Open an autocommit ``psycopg.AsyncConnection`` within ``timeout``.

        Raises:
            psycopg.OperationalError: the server refused or could not be reached.
            TimeoutError: the whole attempt took longer than ``timeout``.
        """
        kwargs = _connect_kwargs(params, timeout, self.prepared_statements)
        async with asyncio.timeout(timeout):
            return await psycopg.AsyncConnection.connect(**kwargs)

    async def ping(self, conn: Any, timeout: float) -> None:
        """Run an empty query within ``timeout``.

        Raises:
            TimeoutError: no answer in time (the connection is left ACTIVE).
            psycopg.OperationalError: the connection is lost.
        """
        await _exec_async(conn, b"", timeout)

    async def rollback(self, conn: Any, timeout: float) -> None:
        """Roll back through psycopg, bounded by ``timeout``.

        Raises:
            TimeoutError: no answer in time.
            psycopg.Error: the rollback failed.
        """
        try:
            await conn.wait(_rollback_gen(conn), timeout=timeout)
        except e._WaitTimeout:
            raise TimeoutError(f"rollback took longer than {timeout} s") from None

    async def close(self, conn: Any, timeout: float) -> None:
        """Close (Terminate message, non-blocking); never raises."""
        del timeout  # closing never waits on the network
        try:
            await conn.close()
        except Exception:
            self.terminate(conn)

    async def restore(self, conn: Any) -> None:
        """Autocommit back on, the transaction characteristics unset (no I/O)."""
        await conn.set_autocommit(True)
        await conn.set_isolation_level(None)
        await conn.set_read_only(None)
        await conn.set_deferrable(None)

    async def run_script(self, conn: Any, sql: str, timeout: float) -> None:
        """Run ``sql`` as one simple query through libpq, within ``timeout``."""
        await _exec_async(conn, sql.encode(), timeout)

    async def discard(self, conn: Any, timeout: float) -> None:
        """``DISCARD ALL`` within ``timeout``; psycopg then forgets its
        prepared statements (see `_forget_prepared`)."""
        await _exec_async(conn, b"DISCARD ALL", timeout)
        _forget_prepared(conn)


class PsycopgDriver(_Common):
    """psycopg 3 ``Connection`` adapter (the default sync driver)."""

    name: ClassVar[str] = "psycopg"

    def connect(self, params: dict[str, Any], timeout: float) -> Any:
        """Open an autocommit ``psycopg.Connection``.

        The bound is libpq's ``connect_timeout`` = ``max(2, ceil(timeout))``
        seconds *per host tried* (libpq's floor is 2 s).

        Raises:
            psycopg.OperationalError: refused, unreachable, or timed out.
        """
        return psycopg.Connection.connect(
            **_connect_kwargs(params, timeout, self.prepared_statements)
        )

    def ping(self, conn: Any, timeout: float) -> None:
        """Run an empty query within ``timeout`` through non-blocking libpq.

        Raises:
            TimeoutError: no answer in time (the connection is left ACTIVE).
            psycopg.OperationalError: the connection is lost.
        """
        _exec_sync(conn, b"", timeout)

    def rollback(self, conn: Any, timeout: float) -> None:
        """Roll back through psycopg, bounded by ``timeout``.

        Raises:
            TimeoutError: no answer in time.
            psycopg.Error: the rollback failed.
        """
        try:
            conn.wait(_rollback_gen(conn), timeout=timeout)
        except e._WaitTimeout:
            raise TimeoutError(f"rollback took longer than {timeout} s") from None

    def close(self, conn: Any, timeout: float) -> None:
        """Close (Terminate message, non-blocking); never raises."""
        del timeout  # closing never waits on the network
        try:
            conn.close()
        except Exception:
            self.terminate(conn)

    def restore(self, conn: Any) -> None:
        """Autocommit back on, the transaction characteristics unset (no I/O)."""
        conn.autocommit = True
        conn.isolation_level = None
        conn.read_only = None
        conn.deferrable = None

    def run_script(self, conn: Any, sql: str, timeout: float) -> None:
        """Run ``sql`` as one simple query through libpq, within ``timeout``."""
        _exec_sync(conn, sql.encode(), timeout)

    def discard(self, conn: Any, timeout: float) -> None:
        """``DISCARD ALL`` within ``timeout``; psycopg then forgets its
        prepared statements (see `_forget_prepared`)."""
        _exec_sync(conn, b"DISCARD ALL", timeout)
        _forget_prepared(conn)
