"""Adapter over asyncpg (async only): :class:`AsyncpgDriver`.

asyncpg does not speak libpq keywords, so :func:`asyncpg_kwargs` translates
them; the TCP settings libpq applies itself (keepalives, ``tcp_user_timeout``)
are set on the socket after connecting. asyncpg is autocommit unless the user
sends ``BEGIN``. The touches of asyncpg internals live in :func:`_socket`,
:func:`_is_cancelling`, and `AsyncpgDriver.pristine`/`restore` (asyncpg's
``_top_xact`` and listeners, which its own pool forgets at release the same
way).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any, ClassVar

import asyncpg

from pgharbor._policy.sqlstate import is_disconnect, is_disconnect_message, sqlstate_of
from pgharbor.drivers._sockets import watch_fd
from pgharbor.drivers.base import ConnStatus
from pgharbor.errors import ConfigError

__all__ = ["CONNECT_OPTIONS", "AsyncpgDriver", "asyncpg_kwargs", "parse_options", "set_tcp_options"]

# libpq keywords that have no asyncpg equivalent and are safe to drop: the
# connect bound comes from ``timeout``; the TCP ones are applied to the socket.
_HANDLED_ELSEWHERE = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "client_encoding",  # asyncpg always uses UTF8
    }
)
_OPTION_TOKEN = re.compile(r"(?:\\.|\S)+")
#: Arguments of ``asyncpg.connect`` that have no libpq keyword, which a pool's
#: ``kwargs`` may carry: passed as they are (``server_settings`` is merged
#: with the settings made from ``application_name`` and ``options``, which
#: win; ``ssl`` replaces what ``sslmode`` would give).
CONNECT_OPTIONS = frozenset(
    {
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "command_timeout",
        "server_settings",
        "record_class",
        "connection_class",
        "ssl",
        "direct_tls",
        "krbsrvname",
        "gsslib",
    }
)


def parse_options(options: str) -> dict[str, str] | None:
    """Parse libpq ``options`` made only of ``-c name=value`` settings.

    Accepts ``-c name=value``, ``-cname=value`` and ``--name=value``; a
    backslash escapes the next character (libpq's rule for spaces in values).

    Returns:
        The settings, or None if ``options`` holds anything else (the caller
        then sends the string as the ``options`` startup parameter, verbatim).
    """
    tokens = [re.sub(r"\\(.)", r"\1", t) for t in _OPTION_TOKEN.findall(options)]
    settings: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "-c" and i + 1 < len(tokens):
            pair, i = tokens[i + 1], i + 2
        elif token[:2] in ("-c", "--") and len(token) > 2:
            pair, i = token[2:], i + 1
        else:
            return None
        name, sep, value = pair.partition("=")
        if not sep or not name:
            return None
        settings[name.replace("-", "_")] = value
    return settings


def _ssl_context(params: dict[str, Any], sslmode: str) -> ssl.SSLContext:
    """An ``SSLContext`` with libpq's semantics for require/verify-ca/verify-full."""
    rootcert = params.get("sslrootcert")
    if sslmode == "require" and not rootcert:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # libpq "require": encrypt, trust anything
    else:
        # libpq's "require" with a root certificate behaves like verify-ca.
        if not rootcert:
            rootcert = os.path.expanduser("~/.postgresql/root.crt")
        if rootcert == "system":
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.create_default_context(cafile=rootcert)
        ctx.check_hostname = sslmode == "verify-full"
    if params.get("sslcert"):
        ctx.load_cert_chain(params["sslcert"], params.get("sslkey"), params.get("sslpassword"))
    return ctx


def _split(value: Any) -> list[str]:
    return [part.strip() for part in str(value).split(",")]


def asyncpg_kwargs(params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Translate libpq keyword parameters to ``asyncpg.connect()`` arguments;
    those in `CONNECT_OPTIONS` are asyncpg's own and pass as they are.

    Raises:
        ConfigError: a parameter asyncpg cannot honour (named, value omitted).
    """
    kwargs: dict[str, Any] = {"timeout": timeout}
    settings: dict[str, str] = {}
    passed: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or key in _HANDLED_ELSEWHERE:
            continue
        if key in CONNECT_OPTIONS:
            passed[key] = value
        elif key == "host":
            hosts = _split(value)
            kwargs["host"] = hosts if len(hosts) > 1 else hosts[0]
        elif key == "port":
            ports = [int(p) for p in _split(value)]
            kwargs["port"] = ports if len(ports) > 1 else ports[0]
        elif key == "dbname":
            kwargs["database"] = value
        elif key in ("user", "password", "passfile", "target_session_attrs"):
            kwargs[key] = value
        elif key == "service":
            kwargs["service"] = value
        elif key == "application_name":
            settings["application_name"] = value
        elif key == "options":
            parsed = parse_options(value)
            settings.update({"options": value} if parsed is None else parsed)
        elif key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword"):
            continue  # below, all together
        else:
            raise ConfigError(key, "is not supported by the asyncpg driver")
    sslmode = params.get("sslmode") or None
    if sslmode == "disable":
        kwargs["ssl"] = False
    elif sslmode in ("allow", "prefer"):
        kwargs["ssl"] = sslmode  # asyncpg falls back to plain text like libpq
    elif sslmode in ("require", "verify-ca", "verify-full"):
        kwargs["ssl"] = _ssl_context(params, sslmode)
    elif sslmode is not None:
        raise ConfigError("sslmode", "must be a libpq sslmode")
    if settings or "server_settings" in passed:
        settings = {**(passed.pop("server_settings", None) or {}), **settings}
        kwargs["server_settings"] = settings
    kwargs.update(passed)
    return kwargs


def _socket(conn: Any) -> Any:
    # asyncpg has no public accessor for its socket; the transport is private.
    transport = getattr(conn, "_transport", None)
    return None if transport is None else transport.get_extra_info("socket")


def set_tcp_options(conn: Any, params: dict[str, Any]) -> None:
    """Apply libpq's TCP settings (keepalives on by default) to the socket."""
    sock = _socket(conn)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix socket: nothing to keep alive
    if str(params.get("keepalives", "1")) != "0":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for key, opt in (
            ("keepalives_idle", "TCP_KEEPIDLE"),
            ("keepalives_interval", "TCP_KEEPINTVL"),
            ("keepalives_count", "TCP_KEEPCNT"),
        ):
            if params.get(key) and hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), int(params[key]))
    if params.get("tcp_user_timeout") and hasattr(socket, "TCP_USER_TIMEOUT"):
        ms = int(params["tcp_user_timeout"])  # libpq takes milliseconds, as Linux does
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)


def _is_cancelling(conn: Any) -> bool:
    # After a cancelled query asyncpg sends a cancel request and refuses new
    # work until it completes; only the protocol knows (private, asyncpg 0.2x-0.3x).
    probe = getattr(conn._protocol, "_is_cancelling", None)
    return bool(probe()) if probe is not None else False


_CLOSED_TEXT = ("connection is closed", "connection was closed", "not connected")


def _close_orphan(conn: Any) -> None:
    """Close a connection whose event loop is gone (asyncpg can only abort
    through the loop): end the TCP session, then let the transport close its
    socket as it would have on the loop (private, asyncio's selector transport)."""
    transport = getattr(conn, "_transport", None)
    sock = _socket(conn)
    try:
        if sock is not None:
            with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        if transport is not None and hasattr(transport, "_call_connection_lost"):
            transport._call_connection_lost(None)
    except Exception:
        pass


class AsyncpgDriver:
    """asyncpg ``Connection`` adapter."""

    name: ClassVar[str] = "asyncpg"
    #: See `CONNECT_OPTIONS`.
    connect_options: ClassVar[frozenset[str]] = CONNECT_OPTIONS

    def __init__(self, *, prepared_statements: bool = True) -> None:
        self.prepared_statements = prepared_statements

    def __repr__(self) -> str:
        return f"<AsyncpgDriver prepared_statements={self.prepared_statements}>"

    async def connect(self, params: dict[str, Any], timeout: float) -> Any:
        """Open an asyncpg connection within ``timeout`` (all hosts together).

        Raises:
            ConfigError: a libpq parameter asyncpg cannot honour.
            asyncpg.PostgresError | OSError: refused or unreachable.
            TimeoutError: the attempt took longer than ``timeout``.
        """
        kwargs = asyncpg_kwargs(params, timeout)
        if not self.prepared_statements:
            kwargs["statement_cache_size"] = 0  # PgBouncer transaction mode
        async with asyncio.timeout(timeout):
            conn = await asyncpg.connect(**kwargs)
        try:
            set_tcp_options(conn, params)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def ping(self, conn: Any, timeout: float) -> None:
        """Run an empty query within ``timeout``.

        Raises:
            TimeoutError: no answer in time.
            asyncpg.InterfaceError | asyncpg.PostgresError | OSError: lost.
        """
        async with asyncio.timeout(timeout):
            try:
                await conn.execute("")
            except AttributeError:
                # asyncpg 0.32 decodes the (absent) command tag of an
                # EmptyQueryResponse and fails *after* ReadyForQuery: the round
                # trip completed, so the connection is fine if still open.
                if conn.is_closed():
                    raise

    def status(self, conn: Any) -> ConnStatus:
        """State from asyncpg's cached ReadyForQuery status (no I/O)."""
        if conn.is_closed():
            return ConnStatus.BROKEN
        if _is_cancelling(conn):
            return ConnStatus.ACTIVE
        return ConnStatus.INTRANS if conn.is_in_transaction() else ConnStatus.IDLE

    async def rollback(self, conn: Any, timeout: float) -> None:
        """Send ``ROLLBACK`` within ``timeout``.

        Raises:
            TimeoutError: no answer in time.
            asyncpg.PostgresError | asyncpg.InterfaceError: it failed.
        """
        async with asyncio.timeout(timeout):
            await conn.execute("ROLLBACK")

    async def close(self, conn: Any, timeout: float) -> None:
        """Close gracefully within ``timeout``, else abort; never raises."""
        try:
            await conn.close(timeout=timeout)
        except Exception:
            self.terminate(conn)

    def terminate(self, conn: Any) -> None:
        """Abort the transport at once; never raises. On a connection whose
        event loop is closed (a pool used from a second ``asyncio.run``) the
        socket is shut down and closed directly, so no session or descriptor
        is left behind."""
        try:
            conn.terminate()
        except Exception:
            _close_orphan(conn)

    def watch(self, conn: Any) -> Callable[[], bool]:
        """The checkout check: asyncpg's own view, and a zero-timeout ``poll``.

        The event loop reads the socket, but a server that ends an idle
        session sends its FATAL and then closes: asyncpg handles the message
        at once (its protocol then refuses any new operation until it sees
        the close, one loop iteration later: "cannot switch to state 12;
        another operation (2) is in progress"), and the EOF is still pending
        on the socket. The poll sees it."""
        is_closed = conn.is_closed
        sock = _socket(conn)
        if sock is None:

            def open_() -> bool:
                return not is_closed() and not _is_cancelling(conn)

            return open_
        return watch_fd(sock.fileno(), lambda: is_closed() or _is_cancelling(conn))

    def pristine(self, conn: Any) -> bool:
        """Whether asyncpg holds nothing of a borrower's: no transaction
        object, no notification or log listener (its private ``_top_xact``,
        ``_listeners`` and ``_log_listeners``, read directly: this runs at
        every return). asyncpg has no other client-side session state."""
        return conn._top_xact is None and not conn._listeners and not conn._log_listeners

    def reusable(self, conn: Any) -> bool:
        """Open, not cancelling, no transaction (asyncpg's cached status), and
        `pristine` (the return path's one question: nothing to forget)."""
        return not (
            conn.is_closed()
            or conn.is_in_transaction()
            or _is_cancelling(conn)
            or conn._top_xact is not None
            or conn._listeners
            or conn._log_listeners
        )

    async def restore(self, conn: Any) -> None:
        """Forget what a borrower left in asyncpg (no I/O), as asyncpg's own
        pool does at release: a ``Transaction`` left started (rolled back by
        then) or ended with a bare ``COMMIT`` would make the next borrower's
        ``con.transaction()`` a savepoint in a transaction that no longer
        exists; listener callbacks would hear the next borrower's
        notifications, and keep asyncpg from sending its ``LISTEN`` again
        after a ``session`` reset's ``UNLISTEN *``."""
        conn._top_xact = None
        conn._listeners.clear()
        conn._log_listeners.clear()

    async def run_script(self, conn: Any, sql: str, timeout: float) -> None:
        """Run ``sql`` (several statements: the simple protocol, as asyncpg
        uses for ``execute`` without arguments) within ``timeout``."""
        async with asyncio.timeout(timeout):
            await conn.execute(sql)

    async def discard(self, conn: Any, timeout: float) -> None:
        """``DISCARD ALL``, then asyncpg forgets its statement and type caches."""
        async with asyncio.timeout(timeout):
            await conn.execute("DISCARD ALL")
        await conn.reload_schema_state()

    def sever(self, conn: Any) -> bool:
        """Shut the socket down from any thread (the transport then sees EOF)."""
        sock = _socket(conn)
        if sock is None:
            return False
        try:
            with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except Exception:
            return False
        return True

    def server_version(self, conn: Any) -> int:
        """``server_version_num`` (no I/O), e.g. 150018 for 15.18."""
        v = conn.get_server_version()
        if v.major >= 10:  # asyncpg puts the minor release in ``micro``
            return int(v.major * 10000 + v.micro)
        return int(v.major * 10000 + v.minor * 100 + v.micro)

    def backend_pid(self, conn: Any) -> int:
        """The server process id (no I/O)."""
        return int(conn.get_server_pid())

    def parameter(self, conn: Any, name: str) -> str | None:
        """A parameter the server reported, or None (no I/O)."""
        value = getattr(conn.get_settings(), name, None)
        return None if value is None else str(value)

    def is_error_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the asyncpg connection is lost.

        True for ``ConnectionDoesNotExistError``, ``PostgresConnectionError``
        (class 08), 57P01-57P05, ``InterfaceError`` "connection is closed",
        ``InternalClientError`` "another operation is in progress" (the
        server's FATAL read between two operations), and socket errors
        (``OSError`` except ``TimeoutError``).
        """
        if isinstance(exc, TimeoutError):
            return False
        if isinstance(
            exc,
            asyncpg.ConnectionDoesNotExistError | asyncpg.PostgresConnectionError | OSError,
        ):
            return True
        if isinstance(exc, asyncpg.PostgresError):
            return is_disconnect(sqlstate_of(exc))
        if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
            # InternalClientError "cannot switch to state ...; another
            # operation (2) is in progress": the server ended the session
            # (its FATAL was read) between two operations.
            text = str(exc).lower()
            return any(t in text for t in _CLOSED_TEXT) or is_disconnect_message(text)
        return False
