"""The candidates: how each one is opened, lends a connection, and is closed.

A sync candidate is a context manager yielding a *borrow* callable
(``with borrow() as conn``); an async one is an async context manager yielding
an async *borrow*. ``raw`` candidates instead yield ``P`` dedicated
connections, one per worker; ``call`` candidates yield a pgharbor
``Database`` / ``AsyncDatabase`` whose helpers borrow and return a connection
inside each call. pgbench is run as a subprocess.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import asyncpg
import psycopg
import psycopg2
import psycopg2.pool
import psycopg_pool
import sqlalchemy.pool
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from pgharbor import AsyncDatabase, Database

from ._prototype import AsyncPrototype, Prototype
from ._workloads import DB_WORKLOADS

__all__ = ["CANDIDATES", "DB", "PROTO", "SAFETY", "Candidate", "P", "Target", "pgharbor_class"]

#: Pool size for every candidate (and the number of raw connections).
P = 5

#: "Every safety feature on": validation window (default 0.5 s), a lifetime,
#: leak detection and keepalive. (Metrics are measured on their own: PROM.)
SAFETY: dict[str, Any] = {
    "check_window": 0.5,
    "max_lifetime": 600.0,
    "leak_threshold": 60.0,
    "keepalive": 120.0,
}

#: The Prometheus sink on (a fresh registry per pool opened).
PROM = "pgharbor+prometheus"


def _prometheus() -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from pgharbor.metrics.prometheus import PrometheusSink

    return {"metrics": PrometheusSink(CollectorRegistry())}


Kind = Literal["raw", "sync", "async", "call", "pgbench"]


@dataclass(frozen=True)
class Target:
    """Where the server is: a keyword conninfo (libpq drivers) and a URL (asyncpg)."""

    conninfo: str
    url: str


@dataclass(frozen=True)
class Candidate:
    """One line of the table.

    ``driver`` names the client library (and flavour); ``raw`` candidates are
    the baseline of their driver, ``peer`` marks the pool pgharbor is compared
    with for that driver. ``opener`` takes a `Target` and returns the context
    manager described in the module docstring. ``workloads`` limits the cells
    the candidate runs in (None: all); ``quick=False`` leaves it out of
    ``--quick``.
    """

    name: str
    driver: str
    kind: Kind
    lib: str  # the driver module: psycopg, psycopg2, asyncpg (for queries)
    opener: Callable[[Target], Any] | None = None
    is_async: bool = False
    peer: bool = False
    workloads: tuple[str, ...] | None = None
    quick: bool = True

    def runs(self, workload: str) -> bool:
        """Whether this candidate takes part in cells of *workload*."""
        return self.workloads is None or workload in self.workloads

    @property
    def key(self) -> str:
        return f"{self.driver}/{self.name}"


def pgharbor_class(name: str) -> Any:
    """``Pool`` or ``AsyncPool``: the private module now, ``pgharbor.X`` later."""
    module = "pgharbor._async.pool" if name == "AsyncPool" else "pgharbor._sync.pool"
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return getattr(importlib.import_module("pgharbor"), name)


# -- raw connections --------------------------------------------------------------


@contextmanager
def _raw_psycopg(t: Target) -> Iterator[list[Any]]:
    conns = [psycopg.connect(t.conninfo, autocommit=True) for _ in range(P)]
    try:
        yield conns
    finally:
        for c in conns:
            c.close()


@contextmanager
def _raw_psycopg2(t: Target) -> Iterator[list[Any]]:
    conns = [psycopg2.connect(t.conninfo) for _ in range(P)]
    try:
        for c in conns:
            c.autocommit = True
        yield conns
    finally:
        for c in conns:
            c.close()


@asynccontextmanager
async def _raw_apsycopg(t: Target) -> AsyncIterator[list[Any]]:
    conns = [await psycopg.AsyncConnection.connect(t.conninfo, autocommit=True) for _ in range(P)]
    try:
        yield conns
    finally:
        for c in conns:
            await c.close()


@asynccontextmanager
async def _raw_asyncpg(t: Target) -> AsyncIterator[list[Any]]:
    conns = [await asyncpg.connect(t.url) for _ in range(P)]
    try:
        yield conns
    finally:
        for c in conns:
            await c.close()


# -- pgharbor ---------------------------------------------------------------------


def _pgharbor_sync(
    driver: str, extra: Callable[[], dict[str, Any]] | None = None, **options: Any
) -> Callable[[Target], Any]:
    @contextmanager
    def opener(t: Target) -> Iterator[Any]:
        pool_cls = pgharbor_class("Pool")
        opts = {**options, **(extra() if extra else {})}
        with pool_cls(t.conninfo, driver=driver, min_size=P, max_size=P, **opts) as pool:
            yield pool.connection

    return opener


def _pgharbor_async(
    driver: str, extra: Callable[[], dict[str, Any]] | None = None, **options: Any
) -> Callable[[Target], Any]:
    @asynccontextmanager
    async def opener(t: Target) -> AsyncIterator[Any]:
        pool_cls = pgharbor_class("AsyncPool")
        opts = {**options, **(extra() if extra else {})}
        async with pool_cls(t.conninfo, driver=driver, min_size=P, max_size=P, **opts) as pool:
            yield pool.connection

    return opener


def _database(driver: str) -> Callable[[Target], Any]:
    @contextmanager
    def opener(t: Target) -> Iterator[Any]:
        with Database(t.conninfo, driver=driver, min_size=P, max_size=P) as db:
            yield db

    return opener


def _adatabase(driver: str) -> Callable[[Target], Any]:
    @asynccontextmanager
    async def opener(t: Target) -> AsyncIterator[Any]:
        async with AsyncDatabase(t.conninfo, driver=driver, min_size=P, max_size=P) as db:
            yield db

    return opener


def _prototype(raw: Callable[[Target], Any]) -> Callable[[Target], Any]:
    @contextmanager
    def opener(t: Target) -> Iterator[Any]:
        with raw(t) as conns:
            yield Prototype(conns).borrow

    return opener


def _aprototype(raw: Callable[[Target], Any]) -> Callable[[Target], Any]:
    @asynccontextmanager
    async def opener(t: Target) -> AsyncIterator[Any]:
        async with raw(t) as conns:
            yield AsyncPrototype(conns).borrow

    return opener


# -- peers ------------------------------------------------------------------------


def _pool_module(compat: bool) -> Any:
    """psycopg_pool, or pgharbor's drop-in for it (same arguments)."""
    if compat:
        from pgharbor.compat import psycopg_pool as dropin

        return dropin
    return psycopg_pool


def _psycopg_pool(check: bool, compat: bool = False) -> Callable[[Target], Any]:
    @contextmanager
    def opener(t: Target) -> Iterator[Any]:
        module = _pool_module(compat)
        pool = module.ConnectionPool(
            t.conninfo,
            min_size=P,
            max_size=P,
            open=True,
            kwargs={"autocommit": True},
            check=module.ConnectionPool.check_connection if check else None,
        )
        try:
            pool.wait()
            yield pool.connection
        finally:
            pool.close()

    return opener


def _apsycopg_pool(check: bool, compat: bool = False) -> Callable[[Target], Any]:
    @asynccontextmanager
    async def opener(t: Target) -> AsyncIterator[Any]:
        # open=True in the constructor is deprecated for the async pool:
        # open it explicitly, which is the same thing.
        module = _pool_module(compat)
        pool = module.AsyncConnectionPool(
            t.conninfo,
            min_size=P,
            max_size=P,
            open=False,
            kwargs={"autocommit": True},
            check=module.AsyncConnectionPool.check_connection if check else None,
        )
        try:
            await pool.open(wait=True)
            yield pool.connection
        finally:
            await pool.close()

    return opener


def _sqlalchemy(pre_ping: bool) -> Callable[[Target], Any]:
    @contextmanager
    def opener(t: Target) -> Iterator[Any]:
        def creator() -> Any:
            return psycopg.connect(t.conninfo, autocommit=True)

        pool = sqlalchemy.pool.QueuePool(
            creator,
            pool_size=P,
            max_overflow=0,
            pre_ping=pre_ping,
            # pre_ping needs a dialect to ping with; an Engine would pass this one.
            dialect=cast(Any, PGDialect_psycopg)(),
        )

        @contextmanager
        def borrow() -> Iterator[Any]:
            fairy = pool.connect()
            try:
                yield fairy.dbapi_connection
            finally:
                fairy.close()

        try:
            yield borrow
        finally:
            pool.dispose()

    return opener


@contextmanager
def _psycopg2_pool(t: Target) -> Iterator[Any]:
    pool = psycopg2.pool.ThreadedConnectionPool(P, P, t.conninfo)
    conns = [pool.getconn() for _ in range(P)]
    for c in conns:
        c.autocommit = True
        pool.putconn(c)
    # ThreadedConnectionPool raises when exhausted: a semaphore makes callers wait.
    gate = threading.BoundedSemaphore(P)

    @contextmanager
    def borrow() -> Iterator[Any]:
        with gate:
            conn = pool.getconn()
            try:
                yield conn
            finally:
                pool.putconn(conn)

    try:
        yield borrow
    finally:
        pool.closeall()


@asynccontextmanager
async def _asyncpg_pool(t: Target) -> AsyncIterator[Any]:
    async with asyncpg.create_pool(t.url, min_size=P, max_size=P) as pool:
        yield pool.acquire


@asynccontextmanager
async def _compat_asyncpg_pool(t: Target) -> AsyncIterator[Any]:
    from pgharbor.compat.asyncpg import create_pool

    async with create_pool(t.url, min_size=P, max_size=P) as pool:
        yield pool.acquire


# -- the list, in the order they take turns -----------------------------------------

#: The smallest fair pool (``_prototype.py``): the ceiling of a FIFO hand-off.
PROTO = "prototype"

#: The ``Database.fetchval`` candidates' name; each runs right after its
#: driver's ``pgharbor`` pool, the row it is compared with.
DB = "pgharbor Database.fetchval"

CANDIDATES: list[Candidate] = [
    # psycopg 3, sync
    Candidate("raw", "psycopg", "raw", "psycopg", _raw_psycopg),
    Candidate("pgharbor", "psycopg", "sync", "psycopg", _pgharbor_sync("psycopg")),
    Candidate(DB, "psycopg", "call", "psycopg", _database("psycopg"), workloads=DB_WORKLOADS),
    Candidate("pgharbor+safety", "psycopg", "sync", "psycopg", _pgharbor_sync("psycopg", **SAFETY)),
    Candidate(PROM, "psycopg", "sync", "psycopg", _pgharbor_sync("psycopg", _prometheus)),
    Candidate(
        PROTO, "psycopg", "sync", "psycopg", _prototype(_raw_psycopg), workloads=("select1",)
    ),
    Candidate("psycopg_pool", "psycopg", "sync", "psycopg", _psycopg_pool(False), peer=True),
    Candidate("psycopg_pool+check", "psycopg", "sync", "psycopg", _psycopg_pool(True)),
    Candidate("compat.psycopg_pool", "psycopg", "sync", "psycopg", _psycopg_pool(False, True)),
    Candidate("sqlalchemy", "psycopg", "sync", "psycopg", _sqlalchemy(False)),
    Candidate("sqlalchemy+pre_ping", "psycopg", "sync", "psycopg", _sqlalchemy(True)),
    # psycopg2
    Candidate("raw", "psycopg2", "raw", "psycopg2", _raw_psycopg2),
    Candidate("pgharbor", "psycopg2", "sync", "psycopg2", _pgharbor_sync("psycopg2")),
    Candidate(DB, "psycopg2", "call", "psycopg2", _database("psycopg2"), workloads=DB_WORKLOADS),
    Candidate(
        "pgharbor+safety", "psycopg2", "sync", "psycopg2", _pgharbor_sync("psycopg2", **SAFETY)
    ),
    Candidate(
        PROTO, "psycopg2", "sync", "psycopg2", _prototype(_raw_psycopg2), workloads=("select1",)
    ),
    Candidate("ThreadedConnectionPool", "psycopg2", "sync", "psycopg2", _psycopg2_pool, peer=True),
    # psycopg 3, async
    Candidate("raw", "psycopg async", "raw", "psycopg", _raw_apsycopg, is_async=True),
    Candidate(
        "pgharbor", "psycopg async", "async", "psycopg", _pgharbor_async("psycopg"), is_async=True
    ),
    Candidate(
        DB,
        "psycopg async",
        "call",
        "psycopg",
        _adatabase("psycopg"),
        is_async=True,
        workloads=DB_WORKLOADS,
    ),
    Candidate(
        "pgharbor+safety",
        "psycopg async",
        "async",
        "psycopg",
        _pgharbor_async("psycopg", **SAFETY),
        is_async=True,
    ),
    Candidate(
        PROM,
        "psycopg async",
        "async",
        "psycopg",
        _pgharbor_async("psycopg", _prometheus),
        is_async=True,
    ),
    Candidate(
        PROTO,
        "psycopg async",
        "async",
        "psycopg",
        _aprototype(_raw_apsycopg),
        is_async=True,
        workloads=("select1",),
    ),
    Candidate(
        "psycopg_pool",
        "psycopg async",
        "async",
        "psycopg",
        _apsycopg_pool(False),
        is_async=True,
        peer=True,
    ),
    Candidate(
        "psycopg_pool+check",
        "psycopg async",
        "async",
        "psycopg",
        _apsycopg_pool(True),
        is_async=True,
    ),
    Candidate(
        "compat.psycopg_pool",
        "psycopg async",
        "async",
        "psycopg",
        _apsycopg_pool(False, True),
        is_async=True,
    ),
    # asyncpg
    Candidate("raw", "asyncpg", "raw", "asyncpg", _raw_asyncpg, is_async=True),
    Candidate("pgharbor", "asyncpg", "async", "asyncpg", _pgharbor_async("asyncpg"), is_async=True),
    Candidate(
        DB,
        "asyncpg",
        "call",
        "asyncpg",
        _adatabase("asyncpg"),
        is_async=True,
        workloads=DB_WORKLOADS,
    ),
    Candidate(
        "pgharbor+safety",
        "asyncpg",
        "async",
        "asyncpg",
        _pgharbor_async("asyncpg", **SAFETY),
        is_async=True,
    ),
    Candidate(
        PROM, "asyncpg", "async", "asyncpg", _pgharbor_async("asyncpg", _prometheus), is_async=True
    ),
    Candidate(
        PROTO,
        "asyncpg",
        "async",
        "asyncpg",
        _aprototype(_raw_asyncpg),
        is_async=True,
        workloads=("select1",),
    ),
    Candidate("asyncpg.Pool", "asyncpg", "async", "asyncpg", _asyncpg_pool, True, peer=True),
    Candidate("compat.asyncpg", "asyncpg", "async", "asyncpg", _compat_asyncpg_pool, True),
    # context: the C client
    Candidate("pgbench", "libpq (C)", "pgbench", "libpq"),
]
