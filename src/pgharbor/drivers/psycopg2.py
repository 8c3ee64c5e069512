"""Adapter over psycopg2 (sync only): :class:`Psycopg2Driver`.

psycopg2 runs every query through blocking ``PQexec`` and refuses empty
queries, so it can neither ping cheaply nor bound a wait on a hung server. When
the libpq psycopg2 is linked against can be found (the ``psycopg2-binary``
wheel's copy, or the one mapped in the process on Linux), ping and rollback
drive that libpq directly through ``ctypes`` on ``connection.pgconn_ptr``:
an empty query, sent and awaited with ``poll()`` under a deadline. Otherwise
they fall back to ``SELECT 1`` / ``ROLLBACK`` on a cursor, bounded only by the
kernel (``tcp_user_timeout``, keepalives) -- which cannot see a server that is
stopped but still ACKing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import select
import time
from collections.abc import Callable
from typing import Any, ClassVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext

from pgharbor._policy.sqlstate import is_disconnect, is_disconnect_message, sqlstate_of
from pgharbor.drivers._sockets import sever, watch_fd
from pgharbor.drivers._sockets import wait_fd as _wait_fd
from pgharbor.drivers.base import ConnStatus
from pgharbor.drivers.psycopg import connect_timeout

__all__ = ["Psycopg2Driver"]

_STATUS = {
    ext.TRANSACTION_STATUS_IDLE: ConnStatus.IDLE,
    ext.TRANSACTION_STATUS_INTRANS: ConnStatus.INTRANS,
    ext.TRANSACTION_STATUS_INERROR: ConnStatus.INERROR,
    ext.TRANSACTION_STATUS_ACTIVE: ConnStatus.ACTIVE,
    ext.TRANSACTION_STATUS_UNKNOWN: ConnStatus.BROKEN,
}
_TS_IDLE = ext.TRANSACTION_STATUS_IDLE
_PGRES_FATAL_ERROR = 7
_PG_DIAG_SQLSTATE = ord("C")


class _PQError(psycopg2.OperationalError):
    """A failure seen through the direct libpq path; ``sqlstate`` is the server's
    code (psycopg2's own ``pgcode`` attribute is read-only)."""

    sqlstate: str | None = None


def _find_libpq() -> ctypes.CDLL | None:
    """psycopg2's own libpq (never another copy: PGconn layouts may differ)."""
    here = os.path.dirname(os.path.dirname(psycopg2.__file__))
    paths = glob.glob(os.path.join(here, "psycopg2_binary.libs", "libpq*.so*"))
    if not paths and os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            paths = sorted(
                {
                    line.split()[-1]
                    for line in maps
                    if "/libpq" in line and "psycopg_binary" not in line
                }
            )
    if len(paths) != 1:
        return None  # none, or ambiguous: use the cursor fallback
    lib = ctypes.CDLL(paths[0])  # already loaded by psycopg2: same handle
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for fn, res, args in (
        ("PQsendQuery", i, [vp, cp]),
        ("PQflush", i, [vp]),
        ("PQsocket", i, [vp]),
        ("PQconsumeInput", i, [vp]),
        ("PQisBusy", i, [vp]),
        ("PQgetResult", vp, [vp]),
        ("PQresultStatus", i, [vp]),
        ("PQresultErrorField", cp, [vp, i]),
        ("PQresultErrorMessage", cp, [vp]),
        ("PQclear", None, [vp]),
        ("PQerrorMessage", cp, [vp]),
        ("PQgetCancel", vp, [vp]),
        ("PQcancel", i, [vp, cp, i]),
        ("PQfreeCancel", None, [vp]),
    ):
        func = getattr(lib, fn)
        func.restype, func.argtypes = res, args
    return lib


_LIBPQ = _find_libpq()


def cancel(conn: Any) -> None:
    """Ask the server to cancel ``conn``'s statement, *releasing the GIL*.

    psycopg2's own ``connection.cancel()`` keeps the GIL while libpq connects
    to the server and waits for its answer, so against a server that does not
    answer it freezes every thread of the process -- including the timer that
    would cut the connection. Through ``ctypes`` (which releases the GIL) the
    rest of the process runs on. Falls back to psycopg2's when libpq is not
    reachable.
    """
    lib = _LIBPQ
    if lib is None:
        conn.cancel()
        return
    handle = lib.PQgetCancel(ctypes.c_void_p(conn.pgconn_ptr))
    if not handle:
        raise psycopg2.OperationalError("cannot cancel: the connection is closed")
    try:
        errbuf = ctypes.create_string_buffer(256)
        if not lib.PQcancel(handle, errbuf, len(errbuf)):
            raise psycopg2.OperationalError(errbuf.value.decode(errors="replace"))
    finally:
        lib.PQfreeCancel(handle)


def _pq_failure(message: bytes | None, sqlstate: bytes | None = None) -> _PQError:
    err = _PQError((message or b"").decode("utf-8", "replace").strip())
    err.sqlstate = sqlstate.decode() if sqlstate else None
    return err


def _exec_libpq(lib: ctypes.CDLL, conn: Any, query: bytes, timeout: float) -> None:
    """Run ``query`` on psycopg2's PGconn with a deadline (psycopg2 not involved)."""
    deadline = time.monotonic() + timeout
    pg = ctypes.c_void_p(conn.pgconn_ptr)
    if conn.closed or not lib.PQsendQuery(pg, query):
        raise _pq_failure(lib.PQerrorMessage(pg) or b"connection already closed")
    fd = lib.PQsocket(pg)
    while (flushed := lib.PQflush(pg)) == 1:
        _wait_fd(fd, select.POLLOUT, deadline)
    if flushed < 0:
        raise _pq_failure(lib.PQerrorMessage(pg))
    error = None
    while True:
        while lib.PQisBusy(pg):
            _wait_fd(fd, select.POLLIN, deadline)
            if not lib.PQconsumeInput(pg):
                raise _pq_failure(lib.PQerrorMessage(pg))
        res = lib.PQgetResult(pg)
        if not res:
            break
        if error is None and lib.PQresultStatus(res) == _PGRES_FATAL_ERROR:
            error = _pq_failure(
                lib.PQresultErrorMessage(res),
                lib.PQresultErrorField(res, _PG_DIAG_SQLSTATE),
            )
        lib.PQclear(res)
    if error is not None:
        raise error


class Psycopg2Driver:
    """psycopg2 ``connection`` adapter (for existing psycopg2 code)."""

    name: ClassVar[str] = "psycopg2"
    #: Arguments of ``psycopg2.connect`` besides libpq keywords that a pool's
    #: ``kwargs`` may carry, passed as they are.
    connect_options: ClassVar[frozenset[str]] = frozenset({"connection_factory", "cursor_factory"})

    def __init__(self, *, prepared_statements: bool = True) -> None:
        # psycopg2 never prepares server-side: nothing to turn off.
        self.prepared_statements = prepared_statements

    def __repr__(self) -> str:
        direct = "libpq" if _LIBPQ is not None else "cursor"
        return f"<Psycopg2Driver ping={direct}>"

    def connect(self, params: dict[str, Any], timeout: float) -> Any:
        """Open an autocommit psycopg2 connection.

        Bounded by libpq's ``connect_timeout`` = ``max(2, ceil(timeout))`` s per
        host (name resolution is not bounded by libpq).

        Raises:
            psycopg2.OperationalError: refused, unreachable, or timed out.
        """
        kwargs = dict(params)
        kwargs["connect_timeout"] = connect_timeout(params, timeout)
        conn = psycopg2.connect(**kwargs)
        try:
            conn.autocommit = True
        except BaseException:
            conn.close()
            raise
        return conn

    def ping(self, conn: Any, timeout: float) -> None:
        """Empty query through libpq within ``timeout`` (or ``SELECT 1``, unbounded).

        Raises:
            TimeoutError: no answer in time (the connection is left ACTIVE).
            psycopg2.OperationalError: the connection is lost.
        """
        if _LIBPQ is not None:
            _exec_libpq(_LIBPQ, conn, b"", timeout)
            return
        with conn.cursor() as cur:
            cur.execute("SELECT 1")

    def status(self, conn: Any) -> ConnStatus:
        """State from libpq's cached status (no I/O)."""
        if conn.closed:
            return ConnStatus.BROKEN
        return _STATUS[conn.get_transaction_status()]

    def rollback(self, conn: Any, timeout: float) -> None:
        """Send ``ROLLBACK`` (bounded like :meth:`ping`).

        In autocommit mode psycopg2's ``rollback()`` is a no-op even after a
        user's ``BEGIN``, so the command is sent explicitly.

        Raises:
            TimeoutError: no answer in time.
            psycopg2.Error: it failed.
        """
        if _LIBPQ is not None:
            _exec_libpq(_LIBPQ, conn, b"ROLLBACK", timeout)
            return
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")

    def close(self, conn: Any, timeout: float) -> None:
        """Close (Terminate message, then the socket); never raises."""
        del timeout  # a 5-byte write into an empty socket buffer does not wait
        self.terminate(conn)

    def terminate(self, conn: Any) -> None:
        """Close at once; never raises (``PQfinish``: no reply is awaited)."""
        try:
            conn.close()
        except Exception:
            pass

    def server_version(self, conn: Any) -> int:
        """``server_version_num`` (no I/O)."""
        return int(conn.server_version)

    def backend_pid(self, conn: Any) -> int:
        """The server process id (no I/O)."""
        return int(conn.get_backend_pid())

    def parameter(self, conn: Any, name: str) -> str | None:
        """A parameter the server reported, or None (no I/O)."""
        value = conn.get_parameter_status(name)
        return None if value is None else str(value)

    def watch(self, conn: Any) -> Callable[[], bool]:
        """The checkout check: psycopg2's ``closed``, and a zero-timeout ``poll``."""
        return watch_fd(conn.fileno(), lambda: conn.closed != 0)

    def pristine(self, conn: Any) -> bool:
        """Autocommit on, no isolation level, read-only or deferrable set."""
        return (
            conn.autocommit is True
            and conn.isolation_level is None
            and conn.readonly is None
            and conn.deferrable is None
        )

    def reusable(self, conn: Any) -> bool:
        """Idle and pristine, in one call (the return path's question)."""
        return (
            not conn.closed
            and conn.get_transaction_status() == _TS_IDLE
            and conn.autocommit is True
            and conn.isolation_level is None
            and conn.readonly is None
            and conn.deferrable is None
        )

    def restore(self, conn: Any) -> None:
        """Set the attributes back. In autocommit mode psycopg2 sends the
        session characteristics as ``SET`` statements, so the characteristics
        are reset first, then autocommit is turned back on."""
        conn.autocommit = False
        conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT", deferrable="DEFAULT")
        conn.autocommit = True

    def run_script(self, conn: Any, sql: str, timeout: float) -> None:
        """Run ``sql`` as one query (bounded like :meth:`ping`)."""
        if _LIBPQ is not None:
            _exec_libpq(_LIBPQ, conn, sql.encode(), timeout)
            return
        with conn.cursor() as cur:
            cur.execute(sql)

    def discard(self, conn: Any, timeout: float) -> None:
        """``DISCARD ALL`` (psycopg2 prepares nothing, so caches nothing)."""
        self.run_script(conn, "DISCARD ALL", timeout)

    def sever(self, conn: Any) -> bool:
        """Shut the libpq socket down (see `pgharbor.drivers.psycopg.sever`)."""
        return sever(conn)

    def is_error_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the psycopg2 connection is lost.

        True for ``InterfaceError`` (psycopg2 raises it on a closed connection),
        for class 08 / 57P01-57P05, for errors whose cursor's connection is now
        closed, and for SQLSTATE-less errors whose first line says so.
        """
        if not isinstance(exc, psycopg2.Error):
            return False
        if isinstance(exc, psycopg2.InterfaceError):
            return True
        cursor = getattr(exc, "cursor", None)
        if cursor is not None and cursor.connection.closed:
            return True
        code = sqlstate_of(exc)
        if code is not None:
            return is_disconnect(code)
        return is_disconnect_message(str(exc))
