"""The small protocol every driver adapter implements, sync and async.

The pool never imports a driver directly: it talks to an adapter through the
methods below and hands the *native* connection object to the user. Adapters
are stateless apart from their construction options, so one instance serves a
whole pool.

Every method that does I/O is bounded by the ``timeout`` it is given; methods
without a timeout never block on the network.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from typing_extensions import TypeVar

__all__ = ["AsyncDriver", "ConnStatus", "Driver"]

#: The native connection an adapter's ``connect`` returns (Any unless it says).
C_co = TypeVar("C_co", covariant=True, default=Any)


class ConnStatus(enum.Enum):
    """What a returned connection looks like, read without any I/O."""

    IDLE = "idle"  # clean: no transaction open
    INTRANS = "intrans"  # a transaction is open and healthy: roll it back
    INERROR = "inerror"  # a failed transaction is open: roll it back
    ACTIVE = "active"  # a command (e.g. COPY) is still in progress: discard
    BROKEN = "broken"  # closed or lost: discard


class AsyncDriver(Protocol[C_co]):
    """Adapter over an asyncio driver (psycopg async, asyncpg), generic in the
    connection type its ``connect`` returns (a pool given the adapter lends
    that type).

    An adapter may also have a ``connect_options`` attribute: the names of
    its connect's arguments that are not libpq keywords (psycopg's
    ``row_factory``...). A pool's ``kwargs`` may carry them; they reach
    `connect` in ``params`` as they are, not as text.
    """

    name: ClassVar[str]

    async def connect(self, params: dict[str, Any], timeout: float) -> C_co:
        """Open a connection in autocommit mode, bounded by ``timeout`` seconds.

        ``params`` are libpq keyword parameters (as from
        ``psycopg.conninfo.conninfo_to_dict``), already including TCP keepalive
        settings and startup options, and any of the adapter's
        ``connect_options`` the pool was given. Raises the driver's error (or
        ``TimeoutError``) on failure.
        """
        ...

    async def ping(self, conn: Any, timeout: float) -> None:
        """Send an empty query and wait for the answer; raise if it fails or
        takes longer than ``timeout`` (the connection is then unusable)."""
        ...

    def status(self, conn: Any) -> ConnStatus:
        """The connection's state, without I/O."""
        ...

    async def rollback(self, conn: Any, timeout: float) -> None:
        """Roll back the open transaction, bounded by ``timeout``."""
        ...

    async def close(self, conn: Any, timeout: float) -> None:
        """Close gracefully (Terminate message), bounded; never raises."""
        ...

    def terminate(self, conn: Any) -> None:
        """Close the socket at once, without any network round trip; never raises."""
        ...

    def server_version(self, conn: Any) -> int:
        """``server_version_num`` of the server, e.g. 150018 (no I/O)."""
        ...

    def backend_pid(self, conn: Any) -> int:
        """The server process id serving this connection (no I/O)."""
        ...

    def parameter(self, conn: Any, name: str) -> str | None:
        """A parameter the server reported at startup or since
        (``in_hot_standby``, ``server_version``, ``application_name``...), or None."""
        ...

    def is_error_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is lost or the server is going away."""
        ...

    def watch(self, conn: Any) -> Callable[[], bool]:
        """A check of an idle connection, with no round trip: the function
        returns False when the connection must not be lent — the driver knows
        it is closed, or the server sent something while it sat idle (a server
        that restarted or ended the backend sends its FATAL before closing).
        Called at every checkout: it costs at most one zero-timeout ``poll``."""
        ...

    def pristine(self, conn: Any) -> bool:
        """Whether the client-side session attributes (autocommit, isolation
        level, read-only, deferrable) are still those pgharbor connected with (no I/O)."""
        ...

    def reusable(self, conn: Any) -> bool:
        """`status` is IDLE and the connection is `pristine`: it can go back
        to the pool as it is (no I/O; every return asks, so one call)."""
        ...

    async def restore(self, conn: Any) -> None:
        """Set those attributes back (no I/O unless the driver needs it)."""
        ...

    async def run_script(self, conn: Any, sql: str, timeout: float) -> None:
        """Run ``sql`` (several statements allowed) as one simple query,
        bounded by ``timeout``: the session reset presets."""
        ...

    async def discard(self, conn: Any, timeout: float) -> None:
        """``DISCARD ALL``, and forget what the driver cached about the
        session (prepared statements), bounded by ``timeout``."""
        ...

    def sever(self, conn: Any) -> bool:
        """Shut the connection's socket down from any thread, so a blocked
        read ends at once; whether it could. Never raises."""
        ...


class Driver(Protocol[C_co]):
    """Adapter over a blocking driver (psycopg, psycopg2). Same methods (and
    optional ``connect_options``) as :class:`AsyncDriver`, without ``async``."""

    name: ClassVar[str]

    def connect(self, params: dict[str, Any], timeout: float) -> C_co: ...

    def ping(self, conn: Any, timeout: float) -> None: ...

    def status(self, conn: Any) -> ConnStatus: ...

    def rollback(self, conn: Any, timeout: float) -> None: ...

    def close(self, conn: Any, timeout: float) -> None: ...

    def terminate(self, conn: Any) -> None: ...

    def server_version(self, conn: Any) -> int: ...

    def backend_pid(self, conn: Any) -> int: ...

    def parameter(self, conn: Any, name: str) -> str | None: ...

    def is_error_disconnect(self, exc: BaseException) -> bool: ...

    def watch(self, conn: Any) -> Callable[[], bool]: ...

    def pristine(self, conn: Any) -> bool: ...

    def reusable(self, conn: Any) -> bool: ...

    def restore(self, conn: Any) -> None: ...

    def run_script(self, conn: Any, sql: str, timeout: float) -> None: ...

    def discard(self, conn: Any, timeout: float) -> None: ...

    def sever(self, conn: Any) -> bool: ...
