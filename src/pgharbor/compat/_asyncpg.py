"""The parts of asyncpg's pool drop-in (`pgharbor.compat.asyncpg`) that are
not the pool: how its connections are made (`PoolDriver`: with asyncpg's
own arguments), where they go (`endpoint`, for pgharbor's messages and its
reachability probe), the holder asyncpg's proxies expect (`Holder`), and
what ``acquire()`` returns (`AcquireContext`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any

from asyncpg import exceptions as pg_exceptions
from psycopg.conninfo import make_conninfo

from ..drivers.asyncpg import AsyncpgDriver, set_tcp_options

__all__ = ["WHERE", "AcquireContext", "Holder", "PoolDriver", "endpoint"]

# asyncpg.connect's arguments that say where to connect: they also describe
# the endpoint to pgharbor (messages, metric labels, the reachability probe).
WHERE = (("host", "host"), ("port", "port"), ("user", "user"), ("database", "dbname"))


class Holder:
    """What asyncpg's ``PoolConnectionProxy`` and ``Connection`` expect of
    their pool's holder: its ``_pool``."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Any) -> None:
        self._pool = pool


class PoolDriver(AsyncpgDriver):
    """Connects with asyncpg's own arguments (the pool's ``connect``
    callable, ``connection_class``, ``record_class``, ``connect_kwargs``),
    as asyncpg's pool does; pgharbor's TCP keepalives are set on the socket
    afterwards."""

    def __init__(
        self,
        connect: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        connection_class: type[Any],
        record_class: type[Any],
    ) -> None:
        super().__init__()
        self.connect_fn = connect
        self.args = args
        self.kwargs = kwargs
        self.connection_class = connection_class
        self.record_class = record_class

    async def connect(self, params: dict[str, Any], timeout: float) -> Any:
        """Open a connection as asyncpg's pool would, within ``timeout``.

        Raises:
            asyncpg.InterfaceError: ``connect`` returned something else than
                a ``connection_class`` instance.
        """
        async with asyncio.timeout(timeout):
            conn = await self.connect_fn(
                *self.args,
                loop=asyncio.get_running_loop(),
                connection_class=self.connection_class,
                record_class=self.record_class,
                **self.kwargs,
            )
        if not isinstance(conn, self.connection_class):
            good = f"{self.connection_class.__module__}.{self.connection_class.__name__}"
            bad = type(conn)
            name = (
                bad.__name__ if bad.__module__ == "builtins" else f"{bad.__module__}.{bad.__name__}"
            )
            raise pg_exceptions.InterfaceError(
                f"expected pool connect callback to return an instance of '{good}', got '{name}'"
            )
        try:
            set_tcp_options(conn, params)
        except BaseException:
            conn.terminate()
            raise
        return conn


def endpoint(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[str, str | None]:
    """A keyword conninfo describing where asyncpg will connect (best
    effort: "" when it cannot be told), and the password (for redaction)."""
    params: dict[str, str] = {}
    for ours, theirs in WHERE:
        value = kwargs.get(ours)
        if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
            value = ",".join(map(str, value))
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            params[theirs] = str(value)
    password = kwargs.get("password") if isinstance(kwargs.get("password"), str) else None
    dsn = args[0] if args else kwargs.get("dsn")
    if isinstance(dsn, str) and dsn:
        return dsn, password  # pgharbor reads it if it can (see Pool.__init__)
    try:
        return make_conninfo("", **params), password
    except Exception:
        return "", password


class AcquireContext:
    """What ``Pool.acquire`` returns: awaitable, or an ``async with`` block
    that releases the connection at its end."""

    __slots__ = ("connection", "done", "pool", "timeout")

    def __init__(self, pool: Any, timeout: float | None) -> None:
        self.pool = pool
        self.timeout = timeout
        self.connection: Any = None
        self.done = False

    async def __aenter__(self) -> Any:
        if self.connection is not None or self.done:
            raise pg_exceptions.InterfaceError("a connection is already acquired")
        self.connection = await self.pool._acquire(self.timeout)
        return self.connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.done = True
        con, self.connection = self.connection, None
        await self.pool.release(con)

    def __await__(self) -> Generator[Any, None, Any]:
        self.done = True
        acquiring: Awaitable[Any] = self.pool._acquire(self.timeout)
        return acquiring.__await__()
