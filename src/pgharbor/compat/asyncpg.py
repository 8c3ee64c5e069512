"""A drop-in for asyncpg's pool on pgharbor's `AsyncPool`: change
``asyncpg.create_pool(...)`` to ``pgharbor.compat.asyncpg.create_pool(...)``
and keep your code.

``create_pool`` and ``Pool`` take asyncpg's arguments (``init_size``, ``min_size``,
``max_size``, ``max_queries``, ``max_inactive_connection_lifetime``,
``connect``, ``setup``, ``init``, ``reset``, ``connection_class``,
``record_class`` and ``asyncpg.connect``'s keyword arguments) and keep its
pool semantics: ``await`` or ``async with`` to open it; ``acquire()`` as an
awaitable or an ``async with``, giving asyncpg's ``PoolConnectionProxy``
(unusable once released); the session reset on release; ``init`` once per
connection, ``setup`` at every acquire; ``fetch``/``fetchrow``/``fetchval``/
``execute``/``executemany`` and the copy methods on the pool;
``expire_connections``, ``set_connect_args``, ``close`` (waits for every
connection to be released), ``terminate``, ``get_size``/``get_idle_size``/
``get_min_size``/``get_max_size``, ``is_closing``.

The connections come from a pgharbor pool (``pool.pgharbor``): opened in the
background, checked at checkout without a round trip, kept alive, reconnected
after an outage, observed (health, metrics, leak detection); further pgharbor
settings go in ``pgharbor={...}`` (``breaker``, ``leak_threshold``,
``timeout``, ``metrics``...). The reset on release is pgharbor's
``"session"`` preset (asyncpg's reset query, and ``SET SESSION
AUTHORIZATION DEFAULT``), or, with ``reset=``, a rollback then your
callable, as asyncpg does. docs/coming-from-asyncpg.md lists the
differences.

asyncpg internals touched, all in this module: ``PoolConnectionProxy``'s
``_con``/``_holder``/``_detach`` (asyncpg's own proxy class is used, so
released proxies, prepared statements and cursors fail as asyncpg's do),
``Connection._on_release`` (what asyncpg's pool calls at release),
``Connection._top_xact`` and its ``_managed`` (whether asyncpg reports a
transaction left open, as its pool does), and the
``_drop_statement_cache``/``_drop_type_cache`` methods asyncpg's
connections call on their pool.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any

import asyncpg
from asyncpg import exceptions as pg_exceptions

from .._async.pool import AsyncPool
from ..errors import ConfigError
from ..errors import PoolClosed as HarborClosed
from ._asyncpg import WHERE, AcquireContext, Holder, PoolDriver, endpoint

__all__ = ["Pool", "create_pool"]

# asyncpg's own proxy class, used untyped: its private fields are the point.
_Proxy: Any = asyncpg.pool.PoolConnectionProxy

Callback = Callable[[Any], Awaitable[Any]]

#: pgharbor settings the drop-in takes in its ``pgharbor=`` mapping.
EXTRAS = frozenset(
    {
        "alerts",
        "backoff",
        "breaker",
        "check_timeout",
        "check_window",
        "connect_timeout",
        "health",
        "keepalive",
        "labels",
        "leak_threshold",
        "max_lifetime",
        "max_waiting",
        "metrics",
        "minimum_version",
        "name",
        "reconnect_failed",
        "reconnect_timeout",
        "timeout",
    }
)


class Pool:
    """asyncpg's ``Pool``, lending the connections of a pgharbor `AsyncPool`
    (``self.pgharbor``). Create it with `create_pool` (same arguments).

    Raises:
        ValueError: a bad size, ``max_queries`` or lifetime (as asyncpg).
        TypeError: ``connection_class`` or ``record_class`` of the wrong type.
        ConfigError: a bad ``pgharbor`` setting (a ``ValueError``).
    """

    def __init__(
        self,
        *connect_args: Any,
        init_size: int | None = None,
        min_size: int = 10,
        max_size: int = 10,
        max_queries: int = 50000,
        max_inactive_connection_lifetime: float = 300.0,
        connect: Callable[..., Awaitable[Any]] | None = None,
        setup: Callback | None = None,
        init: Callback | None = None,
        reset: Callback | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        connection_class: type[Any] = asyncpg.Connection,
        record_class: type[Any] = asyncpg.Record,
        pgharbor: Mapping[str, Any] | None = None,
        **connect_kwargs: Any,
    ) -> None:
        del loop  # asyncpg's pool takes the running loop; so does this one
        if len(connect_args) > 1:
            raise TypeError("Pool takes one positional argument, the dsn")
        if max_size <= 0:
            raise ValueError("max_size is expected to be greater than zero")
        if min_size < 0:
            raise ValueError("min_size is expected to be greater or equal to zero")
        if min_size > max_size:
            raise ValueError("min_size is greater than max_size")
        if init_size is None:
            init_size = min_size
        if init_size < 0:
            raise ValueError("init_size is expected to be greater or equal to zero")
        if init_size > max_size:
            raise ValueError("init_size is greater than max_size")
        if init_size < min_size:
            raise ValueError("init_size is smaller than min_size")
        if max_queries <= 0:
            raise ValueError("max_queries is expected to be greater than zero")
        if max_inactive_connection_lifetime < 0:
            raise ValueError(
                "max_inactive_connection_lifetime is expected to be greater or equal to zero"
            )
        if not (
            isinstance(connection_class, type) and issubclass(connection_class, asyncpg.Connection)
        ):
            raise TypeError(
                "connection_class is expected to be a subclass of asyncpg.Connection, "
                f"got {connection_class!r}"
            )
        if not isinstance(record_class, type) or not issubclass(record_class, asyncpg.Record):
            raise TypeError(
                f"record_class is expected to be a subclass of asyncpg.Record, got {record_class!r}"
            )
        settings = dict(pgharbor or {})
        for key in settings:
            if key not in EXTRAS:
                known = ", ".join(sorted(EXTRAS))
                raise ConfigError(
                    "pgharbor", f"{key!r} is not one of the settings it takes: {known}"
                )
        self._initsize = init_size
        self._minsize = min_size
        self._maxsize = max_size
        self._setup = setup
        self._init = init
        self._connection_class = connection_class
        self._driver = PoolDriver(
            connect if connect is not None else asyncpg.connect,
            connect_args,
            connect_kwargs,
            connection_class,
            record_class,
        )
        self._holder = Holder(self)
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()  # every open connection
        self._lent: dict[Any, Any] = {}  # connection -> its proxy
        # Connections whose ``init`` raised: the error goes to the caller who
        # gets the connection, which is then closed (asyncpg's behaviour).
        self._init_failed: weakref.WeakKeyDictionary[Any, Exception] = weakref.WeakKeyDictionary()
        self._released = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._initialized = self._initializing = False
        self._closing = self._closed = False
        conninfo, password = endpoint(connect_args, connect_kwargs)
        if "connect_timeout" not in settings and "timeout" in connect_kwargs:
            settings["connect_timeout"] = connect_kwargs["timeout"]
        options: dict[str, Any] = {
            "driver": self._driver,
            "min_size": init_size,  # min_size once open (see _async__init__)
            "max_size": max_size,
            "max_uses": max_queries,
            "max_idle": max_inactive_connection_lifetime or None,
            "configure": self._on_connect,
            "reset": "session" if reset is None else reset,
            "password": password,
            **settings,
        }
        try:
            #: The pgharbor pool that opens, checks and observes the
            #: connections: ``pool.pgharbor.health()``, ``.stats()``...
            self.pgharbor = AsyncPool(conninfo, **options)
        except ConfigError as exc:
            if exc.field in ("conninfo", *(k for _, k in WHERE)) and conninfo:
                # Not something libpq reads (asyncpg's own DSN options): the
                # endpoint stays unnamed in pgharbor's messages.
                self.pgharbor = AsyncPool("", **options)
            else:
                raise
        # asyncpg's pool opens a connection for each waiting caller, up to
        # max_size (pgharbor's own opens one at a time beyond min_size).
        self.pgharbor._peer_semantics(grow_per_waiter=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("closing" if self._closing else "open")
        return f"<{type(self).__module__}.Pool {state} {self.pgharbor!r}>"

    # -- life cycle -------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Pool]:
        return self._async__init__().__await__()

    async def __aenter__(self) -> Pool:
        await self._async__init__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _async__init__(self) -> Pool:
        if self._initialized:
            return self
        if self._initializing:
            raise pg_exceptions.InterfaceError("pool is being initialized in another task")
        if self._closed:
            raise pg_exceptions.InterfaceError("pool is closed")
        self._initializing = True
        try:
            self._loop = asyncio.get_running_loop()
            try:
                await self.pgharbor.open(wait=True)
                if self._init_failed:
                    # As asyncpg: an init that raised fails the pool's creation.
                    error = next(iter(self._init_failed.values()))
                    await self.pgharbor.close()
                    raise error
                if self._initsize != self._minsize:
                    # init_size connections opened; min_size kept from now on.
                    await self.pgharbor.resize(self._minsize, self._maxsize)
            except BaseException:
                self._closed = True  # pgharbor closed it: pools are not reopened
                raise
            return self
        finally:
            self._initializing = False
            self._initialized = True

    async def close(self) -> None:
        """Wait until every connection is released, then close them all.

        If anything (cancellation included) interrupts it, the pool is
        terminated. Use ``asyncio.wait_for`` to bound it.
        """
        if self._closed:
            return
        self._check_init()
        self._closing = True
        try:
            while self._lent:
                self._released.clear()
                await self._released.wait()
            await self.pgharbor.close()
        except BaseException:
            self.terminate()
            raise
        finally:
            self._closed = True
            self._closing = False

    def terminate(self) -> None:
        """Terminate every connection of the pool now (no round trip)."""
        if self._closed:
            return
        self._check_init()
        for con in list(self._conns):
            con.terminate()
        self._closed = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if loop.is_running():
            self._spawn(self.pgharbor.close(0.0))
        else:
            loop.run_until_complete(self.pgharbor.close(0.0))

    def is_closing(self) -> bool:
        """True if the pool is closing or closed."""
        return self._closed or self._closing

    # -- sizes and settings ------------------------------------------------------------

    def get_size(self) -> int:
        """The number of open connections."""
        return int(self.pgharbor.stats()["size"])

    def get_idle_size(self) -> int:
        """The number of idle connections."""
        return int(self.pgharbor.stats()["idle"])

    def get_min_size(self) -> int:
        """The minimum number of connections."""
        return self._minsize

    def get_max_size(self) -> int:
        """The maximum number of connections."""
        return self._maxsize

    def set_connect_args(self, dsn: str | None = None, **connect_kwargs: Any) -> None:
        """Connect with these arguments from now on; open connections stay
        until they expire (see `expire_connections`)."""
        self._driver.args = (dsn,)
        self._driver.kwargs = connect_kwargs

    async def expire_connections(self) -> None:
        """Replace every connection: idle ones now, those in use when released."""
        await self.pgharbor.drain()

    # -- lending -------------------------------------------------------------------------

    def acquire(self, *, timeout: float | None = None) -> AcquireContext:
        """A connection (asyncpg's ``PoolConnectionProxy``): ``await`` it
        (then `release` it) or use it in ``async with``.

        ``timeout`` bounds the wait; without one, the pool's ``timeout``
        (pgharbor's, 30 s unless ``pgharbor={"timeout": ...}``) does.

        Raises:
            TimeoutError: no connection in time (a `pgharbor.PoolTimeout`).
            asyncpg.InterfaceError: the pool is not initialized, or closing.
        """
        return AcquireContext(self, timeout)

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        """Give back a connection from `acquire` (a second release does
        nothing). Cancelled during the reset, the connection is discarded,
        never lost.

        Raises:
            asyncpg.InterfaceError: not a connection of this pool.
        """
        del timeout  # resets are bounded by the pool's check_timeout
        if type(connection) is not _Proxy or connection._holder._pool is not self:
            raise pg_exceptions.InterfaceError(
                f"Pool.release() received invalid connection: {connection!r} "
                "is not a member of this pool"
            )
        con = connection._con
        if con is None:
            return  # released already
        self._check_init()
        con._on_release()
        if self._claim(con):
            # No shield (asyncpg's): a cancelled release never loses the
            # connection — the pgharbor pool discards one whose reset was cut.
            await self._give_back(con)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        """``Connection.execute`` on one of the pool's connections."""
        async with self.acquire() as con:
            return str(await con.execute(query, *args, timeout=timeout))

    async def executemany(self, command: str, args: Any, *, timeout: float | None = None) -> Any:
        """``Connection.executemany`` on one of the pool's connections."""
        async with self.acquire() as con:
            return await con.executemany(command, args, timeout=timeout)

    async def fetch(
        self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None
    ) -> list[Any]:
        """``Connection.fetch`` on one of the pool's connections."""
        async with self.acquire() as con:
            return list(await con.fetch(query, *args, timeout=timeout, record_class=record_class))

    async def fetchval(
        self, query: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        """``Connection.fetchval`` on one of the pool's connections."""
        async with self.acquire() as con:
            return await con.fetchval(query, *args, column=column, timeout=timeout)

    async def fetchrow(
        self, query: str, *args: Any, timeout: float | None = None, record_class: Any = None
    ) -> Any:
        """``Connection.fetchrow`` on one of the pool's connections."""
        async with self.acquire() as con:
            return await con.fetchrow(query, *args, timeout=timeout, record_class=record_class)

    async def fetchmany(
        self, query: str, args: Any, *, timeout: float | None = None, record_class: Any = None
    ) -> list[Any]:
        """``Connection.fetchmany`` on one of the pool's connections."""
        async with self.acquire() as con:
            return list(
                await con.fetchmany(query, args, timeout=timeout, record_class=record_class)
            )

    async def copy_from_table(self, table_name: str, **kwargs: Any) -> str:
        """``Connection.copy_from_table`` on one of the pool's connections."""
        async with self.acquire() as con:
            return str(await con.copy_from_table(table_name, **kwargs))

    async def copy_from_query(self, query: str, *args: Any, **kwargs: Any) -> str:
        """``Connection.copy_from_query`` on one of the pool's connections."""
        async with self.acquire() as con:
            return str(await con.copy_from_query(query, *args, **kwargs))

    async def copy_to_table(self, table_name: str, **kwargs: Any) -> str:
        """``Connection.copy_to_table`` on one of the pool's connections."""
        async with self.acquire() as con:
            return str(await con.copy_to_table(table_name, **kwargs))

    async def copy_records_to_table(self, table_name: str, **kwargs: Any) -> str:
        """``Connection.copy_records_to_table`` on one of the pool's connections."""
        async with self.acquire() as con:
            return str(await con.copy_records_to_table(table_name, **kwargs))

    # -- internals ------------------------------------------------------------------------

    async def _acquire(self, timeout: float | None) -> Any:
        if self._closing:
            raise pg_exceptions.InterfaceError("pool is closing")
        self._check_init()
        try:
            con = await self.pgharbor.acquire(timeout)
        except HarborClosed:
            raise pg_exceptions.InterfaceError("pool is closing") from None
        if self._init is not None and self._init_failed:
            error = self._init_failed.pop(con, None)
            if error is not None:
                # Opened for this caller (or the first to take it), its init
                # raised: the caller gets the error, the connection is closed.
                try:
                    await con.close()
                finally:
                    await self.pgharbor.release(con)
                raise error
        proxy = _Proxy(self._holder, con)
        self._lent[con] = proxy
        if self._setup is not None:
            try:
                await self._setup(proxy)
            except BaseException:
                # As asyncpg: a connection whose setup failed is closed, not
                # reused; the proxy setup saw stays on it (``is_closed()``).
                if self._lent.pop(con, None) is None:
                    raise  # its borrower closed it meanwhile: given back already
                try:
                    await con.close()
                finally:
                    await self.pgharbor.release(con)
                    self._released.set()
                raise
        return proxy

    def _claim(self, con: Any) -> bool:
        """Take ``con`` back from its borrower (its proxy is detached); False
        if it was already (a release racing the borrower's close)."""
        proxy = self._lent.pop(con, None)
        if proxy is None:
            return False
        proxy._detach()
        return True

    async def _give_back(self, con: Any) -> None:
        """Back to the pgharbor pool (which resets or discards it)."""
        try:
            top = con._top_xact
            open_ = not con.is_closed() and (con.is_in_transaction() or top is not None)
            if open_ and (top is None or not top._managed):
                # As asyncpg: a transaction begun by hand is a bug worth
                # telling; a managed one ends by itself.
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"Resetting connection with an active transaction {con!r}"}
                )
            await self.pgharbor.release(con)
        finally:
            self._released.set()

    async def _on_connect(self, con: Any) -> None:
        """pgharbor's ``configure``: remember the connection, then ``init``.

        An ``init`` that raises does not fail the attempt (pgharbor would try
        again in the background): as in asyncpg, the error is raised to the
        caller who acquires the connection, and the connection closed."""
        self._conns.add(con)
        con.add_termination_listener(self._on_terminated)
        if self._init is not None:
            try:
                await self._init(con)
            except Exception as exc:
                self._init_failed[con] = exc

    def _on_terminated(self, con: Any) -> None:
        # A lent connection closed by its borrower: back to the pool (which
        # discards it) without waiting for a release, as asyncpg's pool does.
        con = getattr(con, "_con", None) or con  # asyncpg hands the proxy
        if self._claim(con):
            self._spawn(self._give_back(con))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_init(self) -> None:
        if not self._initialized:
            if self._initializing:
                raise pg_exceptions.InterfaceError(
                    "pool is being initialized, but not yet ready: likely there is a race "
                    "between creating a pool and using it"
                )
            raise pg_exceptions.InterfaceError("pool is not initialized")
        if self._closed:
            raise pg_exceptions.InterfaceError("pool is closed")

    def _drop_statement_cache(self) -> None:
        # Called by asyncpg's connections (schema changes).
        for con in list(self._conns):
            con._drop_local_statement_cache()

    def _drop_type_cache(self) -> None:
        # Called by asyncpg's connections (type changes).
        for con in list(self._conns):
            con._drop_local_type_cache()


def create_pool(
    dsn: str | None = None,
    *,
    init_size: int | None = None,
    min_size: int = 10,
    max_size: int = 10,
    max_queries: int = 50000,
    max_inactive_connection_lifetime: float = 300.0,
    connect: Callable[..., Awaitable[Any]] | None = None,
    setup: Callback | None = None,
    init: Callback | None = None,
    reset: Callback | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    connection_class: type[Any] = asyncpg.Connection,
    record_class: type[Any] = asyncpg.Record,
    pgharbor: Mapping[str, Any] | None = None,
    **connect_kwargs: Any,
) -> Pool:
    """asyncpg's ``create_pool``: a `Pool` to ``await`` or ``async with``.

    Takes asyncpg's arguments (see asyncpg's documentation); ``pgharbor`` is
    a mapping of further pgharbor pool settings (`EXTRAS`).
    """
    return Pool(
        dsn,
        init_size=init_size,
        min_size=min_size,
        max_size=max_size,
        max_queries=max_queries,
        max_inactive_connection_lifetime=max_inactive_connection_lifetime,
        connect=connect,
        setup=setup,
        init=init,
        reset=reset,
        loop=loop,
        connection_class=connection_class,
        record_class=record_class,
        pgharbor=pgharbor,
        **connect_kwargs,
    )
