"""psycopg_pool's ``AsyncConnectionPool`` on a pgharbor `AsyncPool`; source of
the generated ``ConnectionPool`` (public as `pgharbor.compat.psycopg_pool`,
with the null pools of `pgharbor._async.psycopg_null_pool`; the connections
are made by `pgharbor._async.psycopg_pool_driver`).

A drop-in keeps psycopg_pool's API and semantics — psycopg's default
transactions (not autocommit), a ``connection()`` block that commits on
success and rolls back on error, ``configure``/``check``/``reset`` callbacks,
``connection_class``, ``kwargs`` (a mapping or a callable, any value types),
``close_returns``, ``get_stats``/``pop_stats`` — and lends the connections
of a pgharbor pool (``pool.pgharbor``), which opens them in the background,
checks them at checkout without a round trip, retires, keeps alive,
reconnects, and observes them (health, metrics, leak detection, a breaker
with ``pgharbor={"breaker": True}``).

What a borrower gives back goes through psycopg_pool's return path first
(the rollback and its warnings, the ``reset`` callback, on psycopg_pool's
logger ``psycopg.pool``), then back to the pgharbor pool, which keeps
psycopg_pool's lending order (first-in first-out), opens ``num_workers``
connections at once and discards a dead connection alone. What differs on
purpose (docs/coming-from-psycopg-pool.md has the whole list): a connection
known dead or past ``max_lifetime`` is never lent, and client-side
attributes a borrower changed (``autocommit``, isolation level, read-only,
deferrable) are set back to what they were after ``configure``.

The one private touch is psycopg's ``conn._pool``: the attribute psycopg
itself reads so that ``with conn:`` does not close a pooled connection and
``close()`` returns it with ``close_returns``; it is set while a connection
is lent, as psycopg_pool sets it.
"""

from __future__ import annotations

import itertools
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, cast, get_origin

from psycopg import AsyncConnection
from psycopg import errors as e
from psycopg.pq import TransactionStatus
from typing_extensions import TypeVar

from .._acompat import aensure, asleep
from .._policy.options import MAX_POOL_SIZE
from ..compat._psycopg_pool import (
    PoolClosed,
    PoolTimeout,
    Stats,
    TooManyRequests,
    check_size,
    check_workers,
    extras,
    logger,
)
from ..errors import ConfigError, ConnectionFailed
from ..errors import PoolClosed as HarborClosed
from ..errors import PoolTimeout as HarborTimeout
from ..errors import TooManyRequests as HarborRejected
from .connector import is_async_callable
from .pool import AsyncPool
from .psycopg_pool_driver import PoolDriver, configure_hook

if TYPE_CHECKING:
    from psycopg.rows import TupleRow

if True:  # ASYNC
    import asyncio

    # What psycopg_pool catches around callbacks, so a connection is never
    # lost to the caller's errors (cancellation included, as it does).
    CLIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (Exception, asyncio.CancelledError)
else:
    CLIENT_EXCEPTIONS = (Exception,)

__all__ = ["ACT", "AsyncConnectionPool"]

ACT = TypeVar("ACT", bound="AsyncConnection[Any]", default="AsyncConnection[TupleRow]")
Callback = Callable[[Any], Any]

_IDLE = TransactionStatus.IDLE
_INTRANS = (TransactionStatus.INTRANS, TransactionStatus.INERROR)
_ACTIVE = TransactionStatus.ACTIVE
_UNKNOWN = TransactionStatus.UNKNOWN
# The first retry after a failed ``check`` is immediate, then 1 s, doubling
# (psycopg_pool's schedule), within the caller's timeout.
_CHECK_RETRY = 1.0
_names = itertools.count(1)


def _reconnect_failed_hook(owner: weakref.ref[AsyncConnectionPool[Any]]) -> Callback:
    """The pgharbor pool's ``reconnect_failed``: the drop-in's method."""

    async def reconnect_failed(_: Any) -> None:
        pool = owner()
        if pool is not None:
            logger.warning(
                "reconnection attempt in pool %r failed after %s sec",
                pool.name,
                pool.reconnect_timeout,
            )
            await pool.reconnect_failed()

    return reconnect_failed


class AsyncConnectionPool(Generic[ACT]):
    """psycopg_pool's ``AsyncConnectionPool``, lending the connections of a
    pgharbor `AsyncPool` (``self.pgharbor``).

    Takes psycopg_pool's arguments with their defaults (``min_size=4``,
    ``max_size=min_size``, ``timeout=30``, ``max_lifetime=3600``,
    ``max_idle=600``, ``reconnect_timeout=300``); ``num_workers`` bounds how
    many connections open at the same time. ``pgharbor`` is a mapping of
    further pgharbor pool settings (``breaker``, ``leak_threshold``,
    ``metrics``, ``health``, ``alerts``, ``keepalive``, ``check_window``... see
    `pgharbor.compat._psycopg_pool.EXTRAS`). Static ``kwargs`` are checked here
    (an unknown libpq keyword or a bad ``sslmode`` raises `ConfigError`, a
    ``ValueError``, at once, instead of failing every connection attempt).

    Raises:
        ConfigError: an invalid argument, naming it (a ``ValueError``).
        RuntimeError: ``open`` asked for without a running event loop.
    """

    _null = False  # AsyncNullConnectionPool keeps no idle connection

    def __init__(
        self,
        conninfo: str | Callable[[], Any] = "",
        *,
        connection_class: type[ACT] = cast(type[ACT], AsyncConnection),  # noqa: B008
        kwargs: Mapping[str, Any] | Callable[[], Any] | None = None,
        min_size: int = 4,
        max_size: int | None = None,
        open: bool | None = None,
        configure: Callback | None = None,
        check: Callback | None = None,
        reset: Callback | None = None,
        name: str | None = None,
        close_returns: bool = False,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float = 60 * 60.0,
        max_idle: float = 10 * 60.0,
        reconnect_timeout: float = 5 * 60.0,
        reconnect_failed: Callback | None = None,
        num_workers: int = 3,
        pgharbor: Mapping[str, Any] | None = None,
    ) -> None:
        self._min_size, self._max_size = check_size(min_size, max_size, self._null)
        self.num_workers = check_workers(num_workers)
        for field, cb in (
            ("configure", configure),
            ("check", check),
            ("reset", reset),
            ("reconnect_failed", reconnect_failed),
        ):
            if cb is not None and not callable(cb):
                raise ConfigError(field, "must be callable")
            if True:  # ASYNC
                pass
            elif cb is not None and is_async_callable(cb):
                raise ConfigError(
                    field, "must be a plain function: a sync pool cannot await a coroutine"
                )
        origin = get_origin(connection_class) or connection_class  # MyConnection[MyRow] too
        if not isinstance(origin, type) or not issubclass(origin, AsyncConnection):
            raise ConfigError("connection_class", "must be a subclass of AsyncConnection")
        static = kwargs if isinstance(kwargs, Mapping) else None
        kwargs_fn = None if kwargs is None or static is not None else kwargs
        if kwargs_fn is not None and not callable(kwargs_fn):
            raise ConfigError("kwargs", "must be a mapping, or a callable returning one")
        self.name = name or f"pool-{next(_names)}"
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.connection_class = connection_class
        self.close_returns = close_returns and not self._null
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.reconnect_timeout = reconnect_timeout
        self._check = check
        self._reset = reset
        self._reconnect_failed = reconnect_failed
        self._stats = Stats()
        driver = PoolDriver(connection_class, kwargs_fn)
        owner = weakref.ref(self)
        #: The pgharbor pool that opens, checks and observes the connections:
        #: ``pool.pgharbor.health()``, ``.stats()``, ``.on(...)``.
        self.pgharbor = AsyncPool(
            conninfo,
            driver=driver,
            name=self.name,
            min_size=self._min_size,
            max_size=self._max_size or MAX_POOL_SIZE,
            timeout=timeout,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            reconnect_timeout=reconnect_timeout,
            kwargs=dict(static) if static else None,
            configure=configure_hook(owner, configure, driver),
            reconnect_failed=_reconnect_failed_hook(owner),
            **extras(pgharbor),
        )
        # psycopg_pool's lending order (FIFO: every connection used in turn),
        # num_workers connections opened at once, a dead connection discarded
        # alone, no warning for a pool dropped unclosed.
        self.pgharbor._peer_semantics(
            fifo=True, max_connecting=self.num_workers, lost_alone=True, warn_unclosed=False
        )
        self._opened = False
        self._closed = True
        self._open_implicit = False
        self._opening: Any = None
        if True:  # ASYNC
            if open:
                self._warn_open_async()
        if open is None:
            open = self._open_implicit = True
        if open:
            if True:  # ASYNC
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    raise RuntimeError(f"{type(self).__name__} open with no running loop") from None
                self._opened, self._closed = True, False
                self._opening = loop.create_task(self.pgharbor.open(wait=False))
            else:
                self._opened, self._closed = True, False
                self.pgharbor.open(wait=False)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} {self.name!r} at 0x{id(self):x}>"

    @property
    def min_size(self) -> int:
        """The minimum number of connections kept open."""
        return self._min_size

    @property
    def max_size(self) -> int:
        """The maximum number of connections (0 in a null pool: no limit)."""
        return self._max_size

    @property
    def closed(self) -> bool:
        """True if the pool is closed (or not opened yet)."""
        return self._closed

    # -- life cycle ----------------------------------------------------------------

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool: connections are opened in the background.

        With ``wait``, block until ``min_size`` connections are open (see
        `wait`). Opening an open pool does nothing; a closed pool cannot be
        opened again.

        Raises:
            PoolClosed: the pool was closed.
            PoolTimeout: with ``wait``, not ready within ``timeout``.
        """
        await self._settle()
        if self._closed:
            if self._opened:
                raise PoolClosed("pool has already been opened/closed and cannot be reused")
            self._opened, self._closed = True, False
            await self.pgharbor.open(wait=False)
        if wait:
            await self.wait(timeout=timeout)

    async def wait(self, timeout: float = 30.0) -> None:
        """Wait until ``min_size`` connections are open.

        Raises:
            PoolClosed: the pool is not open.
            PoolTimeout: not within ``timeout`` seconds (the pool is then
                closed, as psycopg_pool does); a connect failure that
                retrying cannot fix (wrong password, no such database) raises
                it at once, with that failure as its cause.
        """
        self._check_open_getconn()
        await self._settle()
        try:
            await self._wait_ready(timeout)
        except (HarborTimeout, ConnectionFailed) as exc:
            await self.close()
            raise PoolTimeout(f"pool initialization incomplete after {timeout} sec") from exc
        logger.info("pool %r is ready to use", self.name)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool: waiting clients get `PoolClosed`, idle connections
        are closed, connections in use are closed when they are returned.
        Returns within about ``timeout`` seconds."""
        await self._settle()
        if self._closed:
            return
        self._closed = True
        await self.pgharbor.close(timeout)

    async def __aenter__(self) -> Self:
        self._open_implicit = False
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- lending ---------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[ACT]:
        """Lend a connection for the block: on exit the transaction is
        committed (rolled back if the block raised) and the connection goes
        back to the pool.

        Raises:
            PoolTimeout: no connection within ``timeout`` (default: the pool's).
            TooManyRequests: ``max_waiting`` clients are already waiting.
            PoolClosed: the pool is not open, or closed while waiting.
        """
        conn = await self.getconn(timeout=timeout)
        start = monotonic()
        try:
            async with conn:
                yield conn
        finally:
            self._stats.counts["usage_ms"] += int(1000.0 * (monotonic() - start))
            await self.putconn(conn)

    async def getconn(self, timeout: float | None = None) -> ACT:
        """Take a connection; every `getconn` needs a `putconn`. Prefer
        `connection`. Raises as `connection` does."""
        if timeout is None:
            timeout = self.timeout
        deadline = monotonic() + timeout
        self._stats.counts["requests_num"] += 1
        self._check_open_getconn()
        await self._settle()
        self.pgharbor._rearm_reconnect_failed()
        delay: float | None = None
        while True:
            conn = await self._acquire(deadline, timeout)
            conn._pool = self
            if self._check is None:
                return cast(ACT, conn)
            try:
                await aensure(self._check, conn)
            except CLIENT_EXCEPTIONS as exc:
                logger.info("connection failed check: %s", exc)
                await self._return(conn, from_getconn=True)
            else:
                return cast(ACT, conn)
            # Another connection, after a pause: at once, then 1 s, doubling.
            if delay is None:
                delay = 0.0
            else:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    self._stats.counts["requests_errors"] += 1
                    raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec")
                delay = min(max(2 * delay, _CHECK_RETRY), remaining)
            await asleep(delay)

    async def putconn(self, conn: ACT) -> None:
        """Give back a connection taken with `getconn`.

        Raises:
            ValueError: ``conn`` was not lent by this pool.
        """
        owner = getattr(conn, "_pool", None)
        if owner is not self:
            where = (
                f"it comes from pool {owner.name!r}" if owner else "it doesn't come from any pool"
            )
            raise ValueError(f"can't return connection to pool {self.name!r}, {where}: {conn}")
        conn._pool = None
        if self._closed:
            await self.pgharbor.release(conn)  # closed before this returns
            return
        await self._return(conn, from_getconn=False)

    # -- administration ----------------------------------------------------------------

    async def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the sizes at runtime.

        Raises:
            ConfigError: invalid sizes (a ``ValueError``); nothing changes.
        """
        min_size, max_size = check_size(min_size, max_size, self._null)
        logger.info("resizing %r to min_size=%s max_size=%s", self.name, min_size, max_size)
        self._min_size, self._max_size = min_size, max_size
        if not self._closed:
            await self.pgharbor.resize(min_size, max_size or MAX_POOL_SIZE)

    async def check(self) -> None:
        """Ping every idle connection now; replace the broken and expired."""
        if self._closed:
            return
        before = self.pgharbor.stats()["connections_lost"]
        await self.pgharbor.check()
        for _ in range(int(self.pgharbor.stats()["connections_lost"] - before)):
            logger.warning("discarding broken connection in pool %r", self.name)

    async def drain(self) -> None:
        """Replace every connection: idle ones now, those in use when returned."""
        if not self._closed:
            await self.pgharbor.drain()

    def get_stats(self) -> dict[str, int]:
        """psycopg_pool's stats: ``pool_min``, ``pool_max``, ``pool_size``,
        ``pool_available``, ``requests_waiting``, ``requests_num``,
        ``requests_queued``, ``requests_wait_ms``, ``requests_errors``,
        ``usage_ms``, ``returns_bad``, ``connections_num``,
        ``connections_ms``, ``connections_errors``, ``connections_lost``.
        pgharbor's own are in ``pool.pgharbor.stats()``."""
        return self._stats.report(
            self.pgharbor.stats(), self._min_size, self._max_size, pop=False, null=self._null
        )

    def pop_stats(self) -> dict[str, int]:
        """`get_stats`, then the counters restart at zero."""
        return self._stats.report(
            self.pgharbor.stats(), self._min_size, self._max_size, pop=True, null=self._null
        )

    async def reconnect_failed(self) -> None:
        """Called when connecting has failed for ``reconnect_timeout``
        (attempts continue): calls the ``reconnect_failed`` callback with
        the pool. Subclasses may override it."""
        if self._reconnect_failed is not None:
            await aensure(self._reconnect_failed, self)

    @staticmethod
    async def check_connection(conn: ACT) -> None:
        """psycopg_pool's check: an empty query (in autocommit, so no
        transaction is left open). Usable as ``check=``.

        Raises:
            psycopg.OperationalError: the connection is broken.
        """
        if conn.autocommit:
            await conn.execute("")
        else:
            if True:  # ASYNC
                await conn.set_autocommit(True)
                try:
                    await conn.execute("")
                finally:
                    await conn.set_autocommit(False)
            else:
                conn.autocommit = True
                try:
                    conn.execute("")
                finally:
                    conn.autocommit = False

    # -- internals --------------------------------------------------------------------

    async def _settle(self) -> None:
        """Finish the opening the constructor started, if any."""
        if True:  # ASYNC
            opening, self._opening = self._opening, None
            if opening is not None:
                await opening

    async def _wait_ready(self, timeout: float) -> None:
        await self.pgharbor.wait(timeout)

    async def _acquire(self, deadline: float, timeout: float) -> Any:
        """A connection from the pgharbor pool, its errors as psycopg_pool's."""
        start = monotonic()
        counts = self._stats.counts
        queued = True
        if self._null:
            # psycopg_pool's null pool counts a request as queued (and its
            # wait) when max_size others already hold or wait for a
            # connection; opening one's own connection is not waiting.
            st = self.pgharbor._state
            queued = bool(self._max_size) and len(st.waiters) + st.in_use >= self._max_size
            if queued:
                counts["requests_queued"] += 1
        try:
            return await self.pgharbor.acquire(max(0.0, deadline - start))
        except HarborTimeout as exc:
            counts["requests_errors"] += 1
            raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec") from exc
        except HarborRejected:
            counts["requests_errors"] += 1
            raise TooManyRequests(
                f"the pool {self.name!r} has already {self.max_waiting} requests waiting"
            ) from None
        except HarborClosed:
            counts["requests_errors"] += 1
            raise PoolClosed(f"the pool {self.name!r} is closed") from None
        except ConnectionFailed as exc:
            # Retrying cannot help (wrong password, no such database): said
            # at once rather than at the end of the timeout.
            counts["requests_errors"] += 1
            raise PoolTimeout(f"couldn't get a connection: {exc}") from exc
        except BaseException:
            counts["requests_errors"] += 1
            raise
        finally:
            if queued:
                counts["requests_wait_ms"] += int(1000.0 * (monotonic() - start))

    async def _return(self, conn: Any, from_getconn: bool) -> None:
        """psycopg_pool's return path, then back to the pgharbor pool."""
        if self._null and not self.pgharbor.stats()["waiting"]:
            # Nobody waits for it: closed, as a null pool does, unreset.
            if conn.pgconn.transaction_status == _UNKNOWN and not from_getconn:
                self._stats.counts["returns_bad"] += 1
            await self.pgharbor.release(conn, keep=False)
            return
        await self._reset_connection(conn)
        if conn.pgconn.transaction_status == _UNKNOWN:
            if from_getconn:
                logger.info("not serving connection found broken")
            else:
                self._stats.counts["returns_bad"] += 1
                logger.warning("discarding closed connection: %s", conn)
        await self.pgharbor.release(conn, keep=not self._null)

    async def _reset_connection(self, conn: Any) -> None:
        """Bring a returned connection to IDLE, or close it (psycopg_pool's
        rules and messages)."""
        status = conn.pgconn.transaction_status
        if status == _UNKNOWN:
            return
        if status in _INTRANS:
            logger.warning("rolling back returned connection: %s", conn)
            try:
                await conn.rollback()
            except CLIENT_EXCEPTIONS as exc:
                logger.warning(
                    "rollback failed: %s: %s. Discarding connection %s",
                    type(exc).__name__,
                    exc,
                    conn,
                )
                await conn.close()
        elif status == _ACTIVE:
            logger.warning("closing returned connection: %s", conn)
            await conn.close()
        if self._reset is not None:
            try:
                await aensure(self._reset, conn)
                status = conn.pgconn.transaction_status
                if status != _IDLE:
                    raise e.ProgrammingError(
                        f"connection left in status {TransactionStatus(status).name} "
                        f"by reset function {self._reset}: discarded"
                    )
            except CLIENT_EXCEPTIONS as exc:
                logger.warning("error resetting connection: %s", exc)
                await conn.close()

    def _check_open_getconn(self) -> None:
        if self._closed:
            if self._opened:
                raise PoolClosed(f"the pool {self.name!r} is already closed")
            raise PoolClosed(f"the pool {self.name!r} is not open yet")
        if self._open_implicit:
            self._open_implicit = False
            if True:  # ASYNC
                self._warn_open_async()
            else:
                warnings.warn(
                    f"the default for the {type(self).__name__} 'open' parameter will "
                    "become 'False' in a future release. Please use open={True|False} "
                    "explicitly, or use the pool as context manager using: "
                    f"`with {type(self).__name__}(...) as pool: ...`",
                    DeprecationWarning,
                    stacklevel=3,
                )

    def _warn_open_async(self) -> None:
        warnings.warn(
            f"opening the async pool {type(self).__name__} in the constructor is "
            "deprecated and will not be supported anymore in a future release. "
            "Please use `await pool.open()`, or use the pool as context manager "
            f"using: `async with {type(self).__name__}(...) as pool: `...",
            RuntimeWarning,
            stacklevel=3,
        )
