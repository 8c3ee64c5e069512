"""SQLAlchemy 2 engines whose connections come from a pgharbor pool.

``create_engine`` and ``create_async_engine`` build an ordinary SQLAlchemy
`Engine` / `AsyncEngine` (Core, ORM, events, dialects unchanged) whose pool
is a `HarborPool`: a `sqlalchemy.pool.Pool` that lends the connections of a
pgharbor `Pool` / `AsyncPool` instead of keeping its own. pgharbor's checkout
check, reconnect backoff, breaker, leak detection, health and metrics apply;
``pool_of(engine)`` returns the pgharbor pool.

How the two meet:

- One SQLAlchemy connection record per pgharbor connection, kept for the
  connection's life, so the dialect's ``connect`` events (type codecs, the
  first-connect ``initialize``) run once per connection, as with SQLAlchemy's
  own pools.
- pgharbor's connections are in autocommit mode; SQLAlchemy expects DB-API
  connections that are not (``begin()`` is implicit, ``rollback()`` undoes).
  At checkout the connection's client-side attributes (autocommit, isolation
  level, read-only, deferrable) are set to what SQLAlchemy left them at its
  last return — autocommit off, for a new one; at return, after SQLAlchemy's
  own rollback, autocommit goes back on and pgharbor's return path restores
  the rest (no round trip on a clean connection).
- A connection SQLAlchemy invalidates (a disconnect, ``invalidate()``) is
  closed by SQLAlchemy and discarded by pgharbor at return. SQLAlchemy's
  pool-wide invalidation is left to pgharbor: after a disconnect, every idle
  connection older than it is checked at its next checkout, rather than the
  healthy ones being closed.
- For the asyncio dialects (psycopg, asyncpg), the pool's calls are awaited
  through SQLAlchemy's greenlet bridge, as `AsyncAdaptedQueuePool` does, and
  the dialect wraps the pgharbor connection in its own adapter.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

try:
    import sqlalchemy
    from sqlalchemy.engine import URL, Engine, make_url
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.ext.asyncio import create_async_engine as _sa_create_async_engine
    from sqlalchemy.pool import ConnectionPoolEntry, Pool
    from sqlalchemy.pool.base import _AsyncConnDialect, _ConnectionRecord
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pgharbor.sqlalchemy needs SQLAlchemy 2: pip install 'pgharbor[sqlalchemy]'"
    ) from exc

try:  # SQLAlchemy 2.1 renamed await_only (the old name goes in 2.2)
    from sqlalchemy.util import await_
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util import await_only as await_

from ._async.pool import AsyncPool
from ._conninfo import _libpq_keywords
from ._sync.pool import Pool as HarborSyncPool
from .drivers.base import ConnStatus
from .errors import ConfigError

__all__ = ["AsyncHarborPool", "HarborPool", "create_async_engine", "create_engine", "pool_of"]

logger = logging.getLogger("pgharbor.sqlalchemy")

AnyHarborPool = HarborSyncPool | AsyncPool

# SQLAlchemy's own pool settings and what to use instead: refused rather than
# silently ignored (pgharbor sizes, times and recycles its connections itself).
_REFUSED = {
    "pool_size": "size the pool with min_size and max_size",
    "max_overflow": "size the pool with min_size and max_size",
    "pool_timeout": "use timeout (seconds to wait for a connection)",
    "pool_recycle": "use max_lifetime (seconds a connection is kept)",
    "pool_use_lifo": "pgharbor's pool is always last-in, first-out",
    "poolclass": "the pool is pgharbor's",
    "pool": "the pool is pgharbor's",
    "creator": "connections come from pgharbor's pool",
    "async_creator": "connections come from pgharbor's pool",
}

# The SQLAlchemy driver names served, per flavour, and pgharbor's driver.
_SYNC_DRIVERS = {"psycopg": "psycopg", "psycopg2": "psycopg2"}
_ASYNC_DRIVERS = {"psycopg": "psycopg", "psycopg_async": "psycopg", "asyncpg": "asyncpg"}

# The client-side attributes pgharbor restores at return, per driver, which
# SQLAlchemy expects to keep between checkouts (in this order).
_ATTRIBUTES = {
    "psycopg": ("isolation_level", "read_only", "deferrable"),
    "psycopg2": ("isolation_level", "readonly", "deferrable"),
}

_harbor_params = frozenset(inspect.signature(AsyncPool.__init__).parameters) - {"self", "conninfo"}
_names = itertools.count(1)

# The connection being adopted, between `_do_get` and the creator that the
# dialect calls: the hand-over is synchronous (no switch in between).
_handover = threading.local()


def _take() -> Any:
    conn = getattr(_handover, "conn", None)
    _handover.conn = None
    return conn


def _take_async(*args: Any, **kwargs: Any) -> Any:
    """The ``async_creator_fn`` the asyncio dialects call: returns an awaitable
    of the connection being adopted (taken now, before any switch)."""
    del args, kwargs  # the dialect's connect arguments: pgharbor connects
    conn = _take()

    async def adopted() -> Any:
        return conn

    return adopted()


class _Record(_ConnectionRecord):
    """SQLAlchemy's connection record, with the pgharbor connection it wraps
    and the client-side attributes SQLAlchemy left on it."""

    native: Any = None
    attributes: tuple[Any, ...] | None = None


class HarborPool(Pool):
    """A SQLAlchemy pool lending a pgharbor `Pool`'s connections (sync engines).

    Built by `create_engine` (``poolclass=HarborPool``); ``pgharbor`` is a
    callable returning a new, unopened pgharbor pool (called again by
    `recreate`, after ``engine.dispose()``). The pgharbor pool opens at the
    first checkout.
    """

    _async: ClassVar[bool] = False

    def __init__(
        self, creator: Any, pgharbor: Callable[[], AnyHarborPool] | None = None, **kw: Any
    ) -> None:
        # (Not keyword-only: SQLAlchemy's create_engine passes on only the
        # pool's positional-or-keyword parameters.)
        if pgharbor is None:
            raise ConfigError("pgharbor", "must be a callable returning an unopened pgharbor pool")
        super().__init__(creator, **kw)
        self._factory = pgharbor
        self._harbor: Any = pgharbor()
        self._driver = self._harbor.connector.driver
        self._attributes = _ATTRIBUTES.get(self._driver.name, ())
        self._opened = False
        self._open_lock = threading.Lock()
        # One record per pgharbor connection, by id (checked against the
        # record's connection: ids are reused after a connection is gone).
        self._records: dict[int, _Record] = {}
        # Connections SQLAlchemy let go of while still open (``detach()``,
        # or an asyncio connection garbage-collected unreturned): given back
        # once closed.
        self._detached: list[Any] = []
        self._detached_lock = threading.Lock()  # never held across a wait
        # The engine's creator (the dialect's connect) wraps, for the asyncio
        # dialects, the adopted connection in the dialect's adapter.
        self._engine_connect = self._invoke_creator
        self._invoke_creator = self._adopt

    @property
    def pgharbor(self) -> Any:
        """The pgharbor pool lending the connections (`pgharbor.Pool` or
        `pgharbor.AsyncPool`): ``stats()``, ``health()``, ``on()``..."""
        return self._harbor

    def status(self) -> str:
        """A one-line description: the pgharbor pool's repr and counts."""
        return f"HarborPool {self._harbor!r}"

    def size(self) -> int:
        """Connections open (as `QueuePool.size` — here the pool's current size)."""
        return int(self._harbor.stats()["size"])

    def checkedin(self) -> int:
        """Idle connections."""
        return int(self._harbor.stats()["idle"])

    def checkedout(self) -> int:
        """Connections lent out."""
        return int(self._harbor.stats()["in_use"])

    def overflow(self) -> int:
        """Always 0: pgharbor's pool has no overflow (see ``max_size``)."""
        return 0

    def recreate(self) -> HarborPool:
        """A new pool like this one, over a new pgharbor pool (after ``dispose``)."""
        self.logger.info("Pool recreating")
        return type(self)(
            self._creator_arg,
            pgharbor=self._factory,
            recycle=self._recycle,
            echo=self.echo,
            pre_ping=self._pre_ping,
            logging_name=self._orig_logging_name,
            reset_on_return=self._reset_on_return,
            _dispatch=self.dispatch,
            dialect=self._dialect,
        )

    def dispose(self) -> None:
        """Close the pgharbor pool: its idle connections now, the ones in use
        as they come back."""
        self._records.clear()
        if self._opened:
            self._call(self._harbor.close())
        self.logger.info("Pool disposed. %s", self.status())

    def _invalidate(
        self, connection: Any, exception: BaseException | None = None, _checkin: bool = True
    ) -> None:
        # SQLAlchemy would mark every connection older than now for closing
        # at its next checkout. pgharbor already checks each idle connection
        # older than a disconnect before lending it, and keeps the healthy.
        if _checkin and getattr(connection, "is_valid", False):
            connection.invalidate(exception)

    # -- lending ---------------------------------------------------------------

    def _do_get(self) -> ConnectionPoolEntry:
        if not self._opened:
            self._open()
        if self._detached:
            self._give_back_detached()
        native = self._call(self._harbor.acquire())
        try:
            record = self._records.get(id(native))
            if record is None or record.native is not native:
                record = self._new_record(native)
            else:
                self._apply(native, record.attributes)
        except BaseException:
            self._call(self._harbor.release(native))
            raise
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        assert isinstance(record, _Record)
        native = record.native
        if native is None:
            return
        if record.dbapi_connection is None:
            # Closed by SQLAlchemy (invalidated: pgharbor discards it), or
            # detached, still open: given back once closed.
            self._records.pop(id(native), None)
            record.native = None
            if self._driver.status(native) is not ConnStatus.BROKEN:
                with self._detached_lock:
                    self._detached.append(native)
                return
        elif record._soft_invalidate_time > record.starttime:
            # Soft-invalidated: replaced rather than lent again.
            self._records.pop(id(native), None)
            record.native = None
            self._driver.terminate(native)
        elif self._attributes:
            attributes = (*(getattr(native, a) for a in self._attributes), native.autocommit)
            record.attributes = attributes
            if (
                attributes[-1] is False
                and not any(attributes[:-1])
                and self._driver.status(native) is ConnStatus.IDLE
            ):
                # Hand it back as pgharbor lends it (autocommit on): its
                # return then needs no cleaning (the usual case).
                self._autocommit(native, True)
        self._release(native)
        if self._detached:
            self._give_back_detached()

    def _new_record(self, native: Any) -> _Record:
        """A record for a connection seen for the first time: SQLAlchemy runs
        the dialect's connect events on it, with autocommit off."""
        if len(self._records) >= 2 * self._harbor.options.max_size:
            self._forget_closed()
        self._apply(native, None)
        _handover.conn = native
        try:
            record = _Record(self)
        finally:
            _handover.conn = None
        self._records[id(native)] = record
        return record

    def _adopt(self, rec: ConnectionPoolEntry) -> Any:
        """The pool's creator: the DB-API connection for ``rec``."""
        assert isinstance(rec, _Record)
        record = rec
        native = _handover.conn
        if native is None:
            # SQLAlchemy reconnects a record in place (a failed pre-ping, a
            # soft invalidation): the old connection was closed by it.
            if record.native is not None:
                self._records.pop(id(record.native), None)
                self._release(record.native)
            native = self._call(self._harbor.acquire())
            self._apply(native, None)
            _handover.conn = native
            self._records[id(native)] = record
        record.native = native
        if self._async:
            return self._engine_connect(record)  # the dialect's adapter, via _take_async
        _handover.conn = None
        return native

    def _apply(self, native: Any, attributes: tuple[Any, ...] | None) -> None:
        """Set the client-side attributes SQLAlchemy expects: ``attributes``
        as it left them, or the driver's defaults (autocommit off)."""
        if not self._attributes:
            return
        if attributes is None:
            attributes = (None,) * len(self._attributes) + (False,)
        *characteristics, autocommit = attributes
        if not autocommit:
            self._autocommit(native, False)
        for name, value in zip(self._attributes, characteristics, strict=True):
            if getattr(native, name) != value:
                self._set(native, name, value)
        if autocommit:
            self._set(native, "autocommit", True)

    def _set(self, native: Any, name: str, value: Any) -> None:
        setattr(native, name, value)

    def _autocommit(self, native: Any, value: bool) -> None:
        """Turn autocommit on or off on an idle connection."""
        if self._driver.name == "psycopg":
            # What psycopg's own setter does once it has checked that no
            # transaction is open (we know: the connection is idle), without
            # its lock and generator round — or, for the asyncio flavour, a
            # trip through the event loop. pgharbor's psycopg driver reads
            # the same field.
            native._autocommit = value
        else:
            self._set(native, "autocommit", value)

    def _release(self, native: Any) -> None:
        self._call(self._harbor.release(native))

    def _give_back_detached(self) -> None:
        with self._detached_lock:
            pending, self._detached = self._detached, []
        still = []
        for native in pending:
            if self._driver.status(native) is ConnStatus.BROKEN:
                self._release(native)
            else:
                still.append(native)
        if still:
            with self._detached_lock:
                self._detached.extend(still)

    def _forget_closed(self) -> None:
        """Drop the records of connections pgharbor has closed."""
        status = self._driver.status
        for key, record in list(self._records.items()):
            if record.native is None or (
                not record.in_use and status(record.native) is ConnStatus.BROKEN
            ):
                del self._records[key]

    def _open(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            harbor = self._harbor
            try:
                self._call(harbor.open())
            except BaseException:
                # A pool that fails to open is closed: the next checkout tries
                # again with a new one.
                self._harbor = self._factory()
                raise
            self._opened = True

    def _call(self, result: Any) -> Any:
        return result


class AsyncHarborPool(HarborPool):
    """A SQLAlchemy pool lending a pgharbor `AsyncPool`'s connections (asyncio
    engines): the pool's calls are awaited through SQLAlchemy's greenlet
    bridge, as `sqlalchemy.pool.AsyncAdaptedQueuePool` does."""

    _async = True
    _is_asyncio = True
    _dialect = _AsyncConnDialect()

    def _open(self) -> None:
        # One event loop: no lock needed (and a thread lock would block it).
        if self._opened:
            return
        try:
            self._call(self._harbor.open())
        except BaseException:
            self._harbor = self._factory()
            raise
        self._opened = True

    def _set(self, native: Any, name: str, value: Any) -> None:
        await_(getattr(native, f"set_{name}")(value))

    def _release(self, native: Any) -> None:
        if _in_greenlet():
            await_(self._harbor.release(native))
            return
        # Garbage collection of a connection never returned: no awaiting here.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.warning("a connection of pool %r could not be given back", self._harbor.name)
            return
        task = loop.create_task(self._harbor.release(native))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    def _call(self, result: Any) -> Any:
        return await_(result)


_tasks: set[asyncio.Task[None]] = set()


def _in_greenlet() -> bool:
    """Whether the caller runs in a greenlet SQLAlchemy can await from."""
    import greenlet

    return bool(getattr(greenlet.getcurrent(), "__sqlalchemy_greenlet_provider__", False))


# -- building engines ---------------------------------------------------------


def create_engine(url: str | URL, **settings: Any) -> Engine:
    """A SQLAlchemy `Engine` over a pgharbor `Pool`.

    ``url`` is a SQLAlchemy URL: ``postgresql+psycopg://`` (psycopg 3; also
    what a bare ``postgresql://`` means here), ``postgresql+psycopg2://``.
    ``settings`` mixes pgharbor pool settings (``min_size``, ``max_size``,
    ``timeout``, ``max_lifetime``, ``breaker``, ``metrics``, ``name``...; see
    `pgharbor.Pool`) and `sqlalchemy.create_engine` keywords (``echo``,
    ``isolation_level``, ``execution_options``...). ``connect_args`` are
    libpq parameters, given to pgharbor. The pool opens at the first
    checkout; ``engine.dispose()`` closes it (the engine then opens a new one
    if used again).

    Raises:
        ConfigError: an unsupported URL or driver, SQLAlchemy's own pool
            settings (``pool_size``, ``pool_timeout``... — the message names
            pgharbor's), or an invalid pgharbor setting.
    """
    sa_url, factory, sa_settings = _prepare(url, settings, asynchronous=False)
    return sqlalchemy.create_engine(sa_url, poolclass=HarborPool, pgharbor=factory, **sa_settings)


def create_async_engine(url: str | URL, **settings: Any) -> AsyncEngine:
    """A SQLAlchemy `AsyncEngine` over a pgharbor `AsyncPool`.

    ``url``: ``postgresql+psycopg://`` (psycopg 3, async; also what a bare
    ``postgresql://`` means here), ``postgresql+psycopg_async://`` or
    ``postgresql+asyncpg://``. Settings as for `create_engine`. The pgharbor
    pool is bound to the event loop of its first checkout (as the engine's
    connections are): use an engine per event loop.

    Raises:
        ConfigError: as `create_engine`.
    """
    sa_url, factory, sa_settings = _prepare(url, settings, asynchronous=True)
    # The dialect wraps the connection pgharbor lends in its own adapter
    # (keeping its URL options, e.g. asyncpg's prepared statement cache).
    sa_settings["connect_args"] = {"async_creator_fn": _take_async}
    return _sa_create_async_engine(
        sa_url, poolclass=AsyncHarborPool, pgharbor=factory, **sa_settings
    )


def pool_of(engine: Engine | AsyncEngine) -> Any:
    """The pgharbor pool behind an engine made by `create_engine` or
    `create_async_engine`: ``pool_of(engine).stats()``, ``.health()``,
    ``.on(...)``, ``.check()``. After ``engine.dispose()`` the engine has a
    new pool: ask again.

    Raises:
        ConfigError: ``engine`` is not backed by pgharbor.
    """
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    pool = getattr(sync, "pool", None)
    if not isinstance(pool, HarborPool):
        raise ConfigError(
            "engine",
            "is not backed by pgharbor: build it with pgharbor.sqlalchemy.create_engine "
            "or create_async_engine",
        )
    return pool.pgharbor


def _prepare(
    url: str | URL, settings: dict[str, Any], *, asynchronous: bool
) -> tuple[URL, Callable[[], AnyHarborPool], dict[str, Any]]:
    """Split ``settings``, check the URL; the engine's URL (no password: it
    never connects itself), a factory of pgharbor pools, SQLAlchemy's settings."""
    for key in settings:
        if key in _REFUSED:
            raise ConfigError(key, f"is SQLAlchemy's own pool setting: {_REFUSED[key]}")
    harbor = {k: v for k, v in settings.items() if k in _harbor_params}
    sa_settings = {k: v for k, v in settings.items() if k not in _harbor_params}
    connect_args = sa_settings.pop("connect_args", None)
    if connect_args:
        harbor["kwargs"] = {**(harbor.get("kwargs") or {}), **connect_args}
    sa_url, conninfo, driver = _target(url, asynchronous)
    cls: Any = AsyncPool if asynchronous else HarborSyncPool
    harbor.setdefault("name", f"sqlalchemy-{next(_names)}")
    factory = functools.partial(cls, conninfo, driver=driver, **harbor)
    factory()  # invalid settings fail here, at once (a pool never opened holds nothing)
    return sa_url, factory, sa_settings


def _target(url: str | URL, asynchronous: bool) -> tuple[URL, str, str]:
    """The engine's URL, pgharbor's conninfo and driver for ``url``."""
    try:
        if isinstance(url, str) and url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError("url", f"is not a SQLAlchemy URL: {type(exc).__name__}") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError("url", f"must be a postgresql:// URL, got {parsed.drivername!r}")
    drivers = _ASYNC_DRIVERS if asynchronous else _SYNC_DRIVERS
    name = parsed.get_driver_name() if "+" in parsed.drivername else "psycopg"
    if name not in drivers:
        kind = "create_async_engine" if asynchronous else "create_engine"
        raise ConfigError(
            "url",
            f"driver {name!r} is not supported by {kind}: use "
            + ", ".join(f"postgresql+{d}" for d in drivers),
        )
    libpq = _libpq_keywords()
    query = {k: v for k, v in parsed.query.items() if k in libpq}
    conninfo = parsed.set(drivername="postgresql", query=query).render_as_string(
        hide_password=False
    )
    engine_url = parsed.set(
        drivername=f"postgresql+{name}",
        query={k: v for k, v in parsed.query.items() if k not in libpq},
    )._replace(password=None)  # (set() leaves a None alone)
    return engine_url, conninfo, drivers[name]
