"""`AsyncConnector`: everything about one connection to one endpoint. Source of
the generated `Connector`.

The pool lends connections; the connector makes, checks, cleans and closes
them: the conninfo and its secrets (a callable conninfo or password is asked
at every attempt), the driver adapter, the version check, the ``configure``
callback, the checkout check (no round trip), the ping, the return path
(client-side attributes, rollback, the ``reset`` preset), closing, and a
cheap TCP probe of the endpoint while it is down. It holds no pool state, so
the topology's role probe opens its own session through it too.

Reset presets, for what a borrower leaves on a connection:

- ``"rollback"`` (a pool's default): an open transaction is rolled back (with
  a WARNING naming the pool: it shows a bug in the caller) and the driver's
  client-side attributes (autocommit, isolation level, read-only, deferrable)
  are set back. No round trip for a clean connection.
- ``"session"``: also `SESSION_RESET` (asyncpg's own reset, and the session
  authorization): ``SET``, advisory locks, ``LISTEN`` and open cursors are gone.
  One round trip per return.
- ``"discard"``: ``DISCARD ALL`` (temporary tables and prepared statements
  too), then ``configure`` again. One round trip, and statements are prepared
  anew.
- a callable ``reset(conn)``: rollback, then the callable.

Session settings given at construction travel as startup parameters, so
every preset keeps them.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from .._acompat import AStrFactory, aensure
from .._conninfo import (
    describe,
    parse_conninfo,
    redact,
    secrets_of,
    validate_params,
    with_defaults,
)
from .._policy.sqlstate import connect_failure_reason, sqlstate_of
from ..drivers import get_async_driver
from ..drivers.base import AsyncDriver, ConnStatus
from ..errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    HarborError,
    UnsupportedServerVersion,
)
from ..version import ServerVersion

if True:  # ASYNC
    import asyncio

__all__ = ["RESETS", "SESSION_RESET", "AsyncConnector", "is_async_callable", "is_fatal"]

logger = logging.getLogger("pgharbor.pool")

#: The reset presets (see the module docstring).
RESETS = ("rollback", "session", "discard")
#: What ``reset="session"`` sends: asyncpg's reset query (unlock, close
#: cursors, unlisten, reset every setting to its session default) and the
#: session authorization, which ``RESET ALL`` leaves alone.
SESSION_RESET = (
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all()"
)

_IDLE = ConnStatus.IDLE
_INTRANS = (ConnStatus.INTRANS, ConnStatus.INERROR)
Callback = Callable[[Any], Any]


class AsyncConnector:
    """Opens, checks, cleans and closes connections to one endpoint.

    Args:
        conninfo: a URL or keyword DSN, or a callable (sync or async)
            returning one at every attempt (credential rotation).
        driver: a driver name ("psycopg", "asyncpg") or an adapter object
            implementing `pgharbor.drivers.AsyncDriver` (tests use fakes).
        password: a string, or a callable returning one at every attempt.
        kwargs: extra libpq parameters (``application_name``, ``options``...),
            validated and passed as text; and arguments of the driver's own
            connect (its ``connect_options``: psycopg's ``row_factory`` or
            ``prepare_threshold``, asyncpg's ``statement_cache_size``...),
            passed as they are.
        prepared_statements: False turns the driver's prepared statements off.
        minimum_version: refuse servers older than this major version.
        configure: called with each new connection (sync or async).
        reset: a preset name (see the module docstring) or a callable.
        connect_timeout: bound on one attempt, seconds.
        check_timeout: bound on a ping, a rollback or a reset, seconds.
        name: the pool's name, for messages.

    Raises:
        ConfigError: an invalid argument, naming it.
    """

    def __init__(
        self,
        conninfo: str | AStrFactory,
        *,
        driver: str | AsyncDriver = "psycopg",
        password: str | AStrFactory | None = None,
        kwargs: dict[str, Any] | None = None,
        prepared_statements: bool = True,
        minimum_version: int | None = None,
        configure: Callback | None = None,
        reset: str | Callback | None = "rollback",
        connect_timeout: float = 10.0,
        check_timeout: float = 5.0,
        name: str = "pool",
    ) -> None:
        self.name = name
        self._conninfo = conninfo
        self._params: dict[str, str] | None = None
        if isinstance(conninfo, str):
            self._params = parse_conninfo(conninfo)
        elif not callable(conninfo):
            raise ConfigError("conninfo", "must be a string or a callable returning one")
        if password is not None and not (isinstance(password, str) or callable(password)):
            raise ConfigError("password", "must be a string or a callable returning one")
        self._password = password
        if isinstance(driver, str):
            self.driver: AsyncDriver = get_async_driver(
                driver, prepared_statements=prepared_statements
            )
        elif all(hasattr(driver, m) for m in ("connect", "ping", "status", "close", "watch")):
            self.driver = driver
        else:
            raise ConfigError("driver", "must be a driver name or a driver adapter object")
        # libpq keywords travel as text; the driver's own connect arguments
        # (a row_factory, a statement cache size...) as they are.
        options = frozenset(getattr(self.driver, "connect_options", ()))
        validate_params(kwargs or {}, "kwargs", options, getattr(self.driver, "name", ""))
        self._kwargs: dict[str, Any] = {
            k: v if k in options else str(v) for k, v in (kwargs or {}).items()
        }
        libpq = {k: v for k, v in self._kwargs.items() if k not in options}
        # A bad sslmode, port or keyword fails here, not after a timeout.
        validate_params({**(self._params or {}), **libpq})
        self.secrets: list[str] = secrets_of({**(self._params or {}), **libpq})
        if isinstance(password, str):
            self.secrets.append(password)
        if minimum_version is not None and (
            isinstance(minimum_version, bool) or not isinstance(minimum_version, int)
        ):
            raise ConfigError("minimum_version", "must be a major version number, e.g. 13")
        self.minimum_version = minimum_version
        if reset is None:
            reset = "rollback"
        if isinstance(reset, str) and reset not in RESETS:
            raise ConfigError(
                "reset", f"must be one of {', '.join(map(repr, RESETS))} or a callable"
            )
        for field, cb in (("configure", configure), ("reset", reset)):
            if cb is None or isinstance(cb, str):
                continue
            if not callable(cb):
                raise ConfigError(field, "must be callable")
            if True:  # ASYNC
                pass
            elif is_async_callable(cb):
                raise ConfigError(
                    field, "must be a plain function: a sync pool cannot await a coroutine"
                )
        self._configure = configure
        #: The preset's name, or None for a callable.
        self.reset: str | None = reset if isinstance(reset, str) else None
        self._reset_fn: Callback | None = None if isinstance(reset, str) else reset
        self.connect_timeout = connect_timeout
        self.check_timeout = check_timeout
        #: The server version seen last (logged when it changes).
        self.version: ServerVersion | None = None

    # -- the endpoint ------------------------------------------------------------

    @property
    def target(self) -> str:
        """``host:port/dbname as user`` — never a secret."""
        if self._params is None:
            return "(conninfo from a callable)"
        return describe({**self._params, **self._kwargs})

    def endpoint(self) -> str | None:
        """``host:port`` for metric labels, when the conninfo is a string with a host."""
        if self._params is None:
            return None
        host = self._params.get("host")
        return f"{host}:{self._params.get('port', '5432')}" if host else None

    def safe(self, exc: BaseException) -> str:
        """``Type: message`` of an error, without any known secret."""
        return redact(f"{type(exc).__name__}: {exc}", self.secrets)

    def is_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the connection is lost (see the driver)."""
        return self.driver.is_error_disconnect(exc)

    async def params(self) -> dict[str, Any]:
        """The libpq parameters of the next attempt (asks the callables), and
        the driver's own connect arguments given in ``kwargs``."""
        params = self._params
        if params is None:
            assert callable(self._conninfo)
            params = parse_conninfo(await aensure(self._conninfo))
        params = {**params, **self._kwargs}
        if self._password is not None:
            password = self._password
            params["password"] = password if isinstance(password, str) else await aensure(password)
        return with_defaults(params, connect_timeout=self.connect_timeout)

    # -- connections ------------------------------------------------------------

    async def connect(self) -> Any:
        """Open a connection, check the server's version, run ``configure``.

        Raises:
            ConnectionFailed: it failed (``reason`` says why; the text holds no
                secret); `AuthenticationFailed` for a rejected login.
            UnsupportedServerVersion: the server is older than ``minimum_version``.
        """
        secrets = list(self.secrets)
        conn = None
        try:
            params = await self.params()
            secrets.extend(secrets_of(params))
            conn = await self.driver.connect(params, self.connect_timeout)
            self._check_version(conn)
            if self._configure is not None:
                await aensure(self._configure, conn)
                if self.driver.status(conn) is not _IDLE:
                    raise ConnectionFailed("the configure callback left a transaction open")
        except BaseException as exc:
            if conn is not None:
                self.driver.terminate(conn)
            if not isinstance(exc, Exception):
                raise
            raise self._connect_error(exc, secrets) from None
        return conn

    def watch(self, conn: Any) -> Callable[[], bool]:
        """The checkout check of ``conn`` (see `AsyncDriver.watch`)."""
        return self.driver.watch(conn)

    async def ping(self, conn: Any) -> str | None:
        """An empty query within ``check_timeout``: None if it answered, else
        the (masked) error."""
        try:
            await self.driver.ping(conn, self.check_timeout)
        except Exception as exc:
            return self.safe(exc)
        return None

    @property
    def resets_raw(self) -> bool:
        """Whether a connection lent raw gets a round trip at return (a
        ``reset`` preset other than ``"rollback"``, or a callable)."""
        return self.reset != "rollback"

    async def clean(self, conn: Any, raw: bool = True) -> bool:
        """Make a returned connection reusable; False if it must be discarded.

        Rolls back an open transaction (with a WARNING), sets the client-side
        attributes back, and — for a connection lent raw (``raw``), not for one
        a `Database` statement used — runs the reset preset or callable.
        """
        driver = self.driver
        status = driver.status(conn)
        try:
            if status is not _IDLE:
                if status not in _INTRANS:
                    return False  # broken, or a COPY still running
                logger.warning(
                    "pool %r: a connection came back inside a transaction; rolling it back",
                    self.name,
                )
                await driver.rollback(conn, self.check_timeout)
            if not driver.pristine(conn):
                await driver.restore(conn)
            if raw:
                if self.reset == "session":
                    await driver.run_script(conn, SESSION_RESET, self.check_timeout)
                elif self.reset == "discard":
                    await driver.discard(conn, self.check_timeout)
                    if self._configure is not None:
                        await aensure(self._configure, conn)
                elif self._reset_fn is not None:
                    await aensure(self._reset_fn, conn)
        except Exception as exc:
            logger.warning(
                "pool %r: cleaning a returned connection failed: %s", self.name, self.safe(exc)
            )
            return False
        if driver.status(conn) is not _IDLE:
            logger.warning("pool %r: the reset left a transaction open", self.name)
            return False
        return True

    async def close(self, conn: Any) -> None:
        """Close gracefully, bounded; never raises."""
        await self.driver.close(conn, self.check_timeout)

    def terminate(self, conn: Any) -> None:
        """Close at once, no round trip; never raises."""
        self.driver.terminate(conn)

    async def reachable(self, timeout: float) -> bool:
        """Whether the endpoint accepts a TCP (or Unix socket) connection now:
        a probe much lighter than a connection attempt (no startup packet, no
        authentication). Host names are resolved as libpq would. True when
        the address cannot be told (a connection attempt will say)."""
        try:
            params = self._params if self._params is not None else await self.params()
        except Exception:
            return True
        addresses = await _addresses(params)
        if not addresses:
            return True
        for family, address in addresses:
            if await _accepts(family, address, timeout):
                return True
        return False

    # -- internals ----------------------------------------------------------------

    def _check_version(self, conn: Any) -> None:
        """Refuse servers older than ``minimum_version``; log each new version once."""
        version = ServerVersion.from_num(self.driver.server_version(conn))
        if version != self.version:
            self.version = version
            logger.info("pool %r: connected to PostgreSQL %s", self.name, version)
        if self.minimum_version is not None and not version.is_compatible(self.minimum_version):
            raise UnsupportedServerVersion(
                f"PostgreSQL {version} at {describe(self._params or {})} is older than "
                f"the minimum supported {self.minimum_version}"
            )

    def _connect_error(self, exc: BaseException, secrets: list[str]) -> HarborError:
        """A password-free stand-in for a connect failure (it becomes the
        cause of `PoolTimeout`, so it must not carry libpq's raw text)."""
        if isinstance(exc, ConnectionFailed | UnsupportedServerVersion):
            return exc
        text = redact(f"{type(exc).__name__}: {exc}".strip(), secrets)
        message = f"connecting to {describe(self._params or {})} failed: {text}"
        reason = connect_failure_reason(sqlstate_of(exc), str(exc))
        if reason == "auth":
            return AuthenticationFailed(message)
        return ConnectionFailed(message, reason=reason)


def is_fatal(error: BaseException | None) -> bool:
    """Connect failures that retrying cannot fix without a change elsewhere."""
    if isinstance(error, UnsupportedServerVersion):
        return True
    return isinstance(error, ConnectionFailed) and error.reason in ("auth", "database-missing")


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine (a sync pool cannot run it)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


async def _addresses(params: dict[str, str]) -> list[tuple[int, Any]]:
    """Where libpq would connect, for the probe: Unix socket paths and socket
    addresses (names resolved as libpq would); empty when nothing is known."""
    hosts = (params.get("hostaddr") or params.get("host") or "").split(",")
    ports = (params.get("port") or "5432").split(",")
    out: list[tuple[int, Any]] = []
    for i, host in enumerate(hosts):
        host = host.strip()
        port = (ports[i] if i < len(ports) else ports[-1]).strip() or "5432"
        try:
            number = int(port)
        except ValueError:
            return []
        if not host:
            return []  # libpq's default socket directory: let an attempt say
        if host.startswith("/"):
            out.append((socket.AF_UNIX, f"{host}/.s.PGSQL.{number}"))
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            try:
                if True:  # ASYNC
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, number, type=socket.SOCK_STREAM
                    )
                else:
                    infos = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM)
            except OSError:
                continue
            out.extend((info[0], info[4]) for info in infos)
            continue
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        out.append((family, (host, number)))
    return out


async def _accepts(family: int, address: Any, timeout: float) -> bool:
    """Whether a connection to ``address`` is accepted within ``timeout``."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if True:  # ASYNC
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, address)
        else:
            sock.settimeout(timeout)
            sock.connect(address)
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()
    return True
