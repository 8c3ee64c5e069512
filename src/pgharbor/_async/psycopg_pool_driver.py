"""The connections psycopg_pool's drop-in lends, as psycopg_pool makes them;
source of the generated sync module (see `pgharbor._async.psycopg_pool`).

`PoolDriver` opens them (``connection_class``, ``kwargs`` of any type or a
callable, psycopg's default transactions) and sets back, at each return,
the client-side attributes a borrower changed; `configure_hook` is the
pgharbor pool's ``configure``: the user's callback, psycopg_pool's check
that it left no transaction open, then the attributes to keep.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from psycopg import errors as e
from psycopg.pq import TransactionStatus

from .._acompat import aensure
from ..compat._psycopg_pool import attributes
from ..drivers.psycopg import AsyncPsycopgDriver, connect_timeout
from ..errors import ConfigError

if True:  # ASYNC
    import asyncio

__all__ = ["PoolDriver", "configure_hook"]

Callback = Callable[[Any], Any]

_IDLE = TransactionStatus.IDLE


class PoolDriver(AsyncPsycopgDriver):
    """Connections as psycopg_pool makes them: of ``connection_class``, with
    psycopg's own default transactions (``autocommit`` comes from
    ``kwargs``), ``kwargs`` given as a callable asked at every attempt. The
    client-side attributes a borrower changed are set back to what they
    were after ``configure`` (`remember`)."""

    connect_options = frozenset({"autocommit", *AsyncPsycopgDriver.connect_options})

    def __init__(self, connection_class: type[Any], kwargs_fn: Callable[[], Any] | None) -> None:
        super().__init__()
        self.connection_class = connection_class
        self._kwargs_fn = kwargs_fn
        self._baseline: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )

    async def connect(self, params: dict[str, Any], timeout: float) -> Any:
        """Open a ``connection_class`` connection within ``timeout``."""
        kwargs = dict(params)
        if self._kwargs_fn is not None:
            more = await aensure(self._kwargs_fn)
            if not isinstance(more, Mapping):
                raise ConfigError("kwargs", "the callable must return a mapping")
            kwargs.update(more)
        kwargs["connect_timeout"] = connect_timeout(kwargs, timeout)
        if True:  # ASYNC
            async with asyncio.timeout(timeout):
                return await self.connection_class.connect(**kwargs)
        else:
            return self.connection_class.connect(**kwargs)

    def remember(self, conn: Any) -> None:
        """Take ``conn``'s attributes as the ones to set back at each return."""
        self._baseline[conn] = attributes(conn)

    def pristine(self, conn: Any) -> bool:
        """Whether the attributes are still those `remember` took (no I/O)."""
        base = self._baseline.get(conn)
        return base is None or base == attributes(conn)

    async def restore(self, conn: Any) -> None:
        """Set the attributes back to those `remember` took (no I/O)."""
        base = self._baseline.get(conn)
        if base is None:
            return
        autocommit, isolation_level, read_only, deferrable = base
        if True:  # ASYNC
            await conn.set_autocommit(autocommit)
            await conn.set_isolation_level(isolation_level)
            await conn.set_read_only(read_only)
            await conn.set_deferrable(deferrable)
        else:
            conn.autocommit = autocommit
            conn.isolation_level = isolation_level
            conn.read_only = read_only
            conn.deferrable = deferrable


def configure_hook(
    owner: Callable[[], Any], configure: Callback | None, driver: PoolDriver
) -> Callback:
    """The pgharbor pool's ``configure``: the user's, with psycopg_pool's
    check that it left no transaction open; then the attributes to keep."""

    async def configure_new(conn: Any) -> None:
        conn._pool = owner()  # as psycopg_pool does: `with conn` must not close it
        try:
            if configure is not None:
                await aensure(configure, conn)
                status = conn.pgconn.transaction_status
                if status != _IDLE:
                    raise e.ProgrammingError(
                        f"connection left in status {TransactionStatus(status).name} "
                        f"by configure function {configure}: discarded"
                    )
        finally:
            conn._pool = None
        driver.remember(conn)

    return configure_new
