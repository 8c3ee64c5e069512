"""psycopg_pool's ``AsyncNullConnectionPool`` on a pgharbor `AsyncPool`;
source of the generated ``NullConnectionPool`` (public as
`pgharbor.compat.psycopg_pool`): a drop-in pool that keeps no idle
connection (see `pgharbor._async.psycopg_pool`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from psycopg import AsyncConnection

from .psycopg_pool import ACT, AsyncConnectionPool

__all__ = ["AsyncNullConnectionPool"]

Callback = Callable[[Any], Any]


class AsyncNullConnectionPool(AsyncConnectionPool[ACT]):
    """psycopg_pool's ``AsyncNullConnectionPool``: no idle connection is kept.

    A connection is opened for each request (up to ``max_size`` at once; 0,
    the default, means no limit) and closed when returned — unless a client
    is waiting, who gets it. ``min_size`` must be 0; ``close_returns`` is
    ignored. Takes the arguments of `AsyncConnectionPool`.
    """

    _null = True

    def __init__(
        self,
        conninfo: str | Callable[[], Any] = "",
        *,
        connection_class: type[ACT] = cast(type[ACT], AsyncConnection),  # noqa: B008
        kwargs: Mapping[str, Any] | Callable[[], Any] | None = None,
        min_size: int = 0,
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
        super().__init__(
            conninfo,
            connection_class=connection_class,
            kwargs=kwargs,
            min_size=min_size,
            max_size=max_size,
            open=open,
            configure=configure,
            check=check,
            reset=reset,
            name=name,
            close_returns=close_returns,
            timeout=timeout,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            reconnect_timeout=reconnect_timeout,
            reconnect_failed=reconnect_failed,
            num_workers=num_workers,
            pgharbor=pgharbor,
        )

    async def check(self) -> None:
        """Nothing to check: the pool keeps no connection."""

    async def _wait_ready(self, timeout: float) -> None:
        # A connection opened for the test and closed: the database is there.
        conn = await self.pgharbor.acquire(timeout)
        await self.pgharbor.release(conn, keep=False)
