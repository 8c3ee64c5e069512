"""`AsyncTopology`: a pool per node, a role probe, and routing through `Router`.

This file is the source of truth for both flavours: `tools/unasync.py`
generates `pgharbor/_sync/topology.py` (`Topology`) from it.

Every node gets its own `RoleProbe` task (a thread in the sync flavour), so a
node that hangs never delays what the others report. Each probe keeps one
*dedicated* session to its node, outside the node's pool, and every
``probe_interval`` seconds (at once when woken by `note_error`, or by a write
that found no primary) it asks::

    pg_is_in_recovery(), replay lag in seconds and bytes, the primary's timeline

A dedicated session is what makes failover quick and the probe honest: a pool
busy with user queries would make a healthy node look dead (the probe would
queue behind them), and a server that went away is seen on the first query of
the probe's own session, not after the pool's connect retries time out. It
costs one session per node. Every probe step is bounded by ``probe_timeout``:
the query by a `_Watchdog` that cuts the session's socket, because a node that
is paused or blackholed answers no cancel request either.

Decisions are the `Router`'s: this shell only runs the probe, hands results
in under its lock, and does the logging.

A database with one endpoint is a topology of one node without a probe
(``probe=False``): every route leads to its pool, and there is nothing to ban
or fail over to, so `Database` talks to a topology whatever its shape.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from functools import partial
from time import monotonic
from types import TracebackType
from typing import Any

from .._acompat import AEvent, ALock, aalive, ajoin, arun_all, aspawn
from .._conninfo import redact, secrets_of
from .._policy.routing import OPTIONS, PROBE_INTERVAL, PROBE_TIMEOUT, Role, Route, Router
from .._policy.sqlstate import is_disconnect_message, sqlstate_of
from .._policy.validate import MAX_TIMEOUT, seconds
from ..drivers import get_async_queries
from ..drivers.base import ConnStatus
from ..drivers.query import AsyncQueries
from ..errors import (
    ConfigError,
    ConnectionFailed,
    ConnectionLost,
    NoAvailableServer,
    PoolClosed,
    PoolError,
)
from .pool import AsyncPool

__all__ = ["PROBE_SQL", "AsyncTopology"]

logger = logging.getLogger("pgharbor.topology")

PoolFactory = Callable[[str, str], AsyncPool]

#: One round trip per probe. Lag is 0 when everything received is replayed
#: (an idle primary sends nothing, so the last replayed commit gets old without
#: the standby being behind); otherwise it is the age of the last replayed
#: commit. The timeline (first 8 hex digits of the current WAL file) breaks
#: split-brain ties; CASE keeps the primary-only functions off standbys.
PROBE_SQL = """\
SELECT pg_is_in_recovery() AS standby,
  CASE WHEN pg_is_in_recovery() THEN
    CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
      THEN 0.0::float8
      ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, 0.0)
    END
  END AS lag_seconds,
  CASE WHEN pg_is_in_recovery() THEN
    coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8
  END AS lag_bytes,
  CASE WHEN NOT pg_is_in_recovery() THEN
    ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
  END AS timeline"""

# Woken probes still leave this much time between two probes of one node, so
# a storm of errors (or of writers finding no primary) cannot become a storm
# of probe queries.
_MIN_GAP = 0.05
# Seconds between two logs of a split brain that persists.
_REPEAT_WARNING = 10.0


def _default_factory(conninfo: str, name: str) -> AsyncPool:
    return AsyncPool(conninfo, name=name)


class _Node:
    """The shell's side of a node: its pool and its probe's plumbing."""

    __slots__ = ("conn", "name", "pool", "queries", "task", "wakeup")

    def __init__(self, name: str, pool: AsyncPool) -> None:
        self.name = name
        self.pool = pool
        self.wakeup = AEvent()
        self.conn: Any = None  # the probe's dedicated session
        self.queries: AsyncQueries | None = None
        self.task: Any = None


class AsyncTopology:
    """Pools for a primary and its standbys, with roles discovered and kept fresh.

    ``nodes`` maps node names to conninfo strings; the first is the listed
    primary, a hint only (it wins split-brain ties). Roles come from the
    probe, so whichever node is writable is the primary, and a demoted old
    primary is treated as the standby it is. ``pool_factory(conninfo, name)``
    builds each node's pool (default: `AsyncPool` with its defaults); the
    topology opens and closes them.

    Routing options (``reads``, ``max_replica_lag``, ``max_replica_lag_bytes``,
    ``fallback_to_primary``, ``ban_time``, ``read_your_writes``, ``balance``)
    are those of :class:`pgharbor._policy.routing.Router`.

    A caller asks `pool_for` for each statement, reports failures with
    `note_error` and successful writes with `note_write`::

        async with AsyncTopology({"a": url_a, "b": url_b}) as topo:
            async with topo.pool_for("primary").connection() as conn:
                ...

    Raises:
        ConfigError: an invalid setting, naming it.
    """

    def __init__(
        self,
        nodes: Mapping[str, str],
        *,
        pool_factory: PoolFactory | None = None,
        probe_interval: float = PROBE_INTERVAL,
        probe_timeout: float = PROBE_TIMEOUT,
        name: str = "topology",
        probe: bool = True,
        **router_options: Any,
    ) -> None:
        if not isinstance(nodes, Mapping) or not nodes:
            raise ConfigError("nodes", "must be a non-empty mapping of name to conninfo")
        if not probe and len(nodes) != 1:
            raise ConfigError("probe", "may be off only for a topology of one node")
        for key, value in (("probe_interval", probe_interval), ("probe_timeout", probe_timeout)):
            seconds(key, value, positive=True, maximum=MAX_TIMEOUT)
        unknown = set(router_options) - set(OPTIONS)
        if unknown:
            raise ConfigError(
                sorted(unknown)[0],
                f"is not a topology option ({', '.join(sorted(OPTIONS))})",
            )
        self.name = name
        self.router = Router(list(nodes), **router_options)
        self.probe_interval = float(probe_interval)
        self.probe_timeout = float(probe_timeout)
        factory = pool_factory or _default_factory
        self._nodes: dict[str, _Node] = {}
        for node_name, conninfo in nodes.items():
            if not isinstance(conninfo, str):
                raise ConfigError(f"nodes[{node_name!r}]", "must be a conninfo string")
            self._nodes[node_name] = _Node(node_name, factory(conninfo, node_name))
        self._by_pool = {id(n.pool): n for n in self._nodes.values()}
        # A topology of one without a probe: every route leads to this pool.
        self._single: AsyncPool | None = None
        if not probe:
            self._single = next(iter(self._nodes.values())).pool
        self._lock = ALock()
        self._progress = AEvent()  # a probe finished (open(wait=True) listens)
        self._closing = AEvent()
        self._tasks: set[Any] = set()
        self._opened = False
        self._closed = False
        self._warned: tuple[str, ...] = ()  # split-brain warnings last logged
        self._warned_at = 0.0

    # -- public API ------------------------------------------------------------

    def __repr__(self) -> str:
        status = "closed" if self._closed else ("open" if self._opened else "new")
        if self._single is not None:
            return f"<{type(self).__name__} {self.name!r} {status} single={self._single!r}>"
        with self._lock:
            primary = self.router.primary()
            standbys = [n.name for n in self.router.nodes if n.role == "standby" and n.healthy]
            split = " SPLIT-BRAIN" if self.router.split_brain else ""
        return (
            f"<{type(self).__name__} {self.name!r} {status} "
            f"primary={primary.name if primary else None!r} standbys={standbys}{split}>"
        )

    async def __aenter__(self) -> AsyncTopology:
        try:
            await self.open(wait=True)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self, wait: bool = True, timeout: float | None = None) -> None:
        """Open every node's pool (in the background) and start the probes.

        With ``wait`` (the default), block until every node has been probed
        once, or ``timeout`` seconds pass (default: twice ``probe_timeout``),
        so that roles are known when it returns. Calling it again does nothing.

        Raises:
            NoAvailableServer: with ``wait``, no node answered in time (the
                topology stays open and keeps probing; close it).
            PoolClosed: the topology was closed; it is not reopened.
        """
        if self._closed:
            raise PoolClosed(f"topology {self.name!r} is closed")
        if self._single is not None:
            # One node, no roles to learn: opening is opening its pool.
            self._opened = True
            await self._single.open(wait=wait, timeout=timeout)
            return
        if not self._opened:
            self._opened = True
            # Pools open in the background: a node that is down must not keep
            # the others from serving.
            await arun_all(*(partial(n.pool.open, wait=False) for n in self._nodes.values()))
            for node in self._nodes.values():
                node.task = aspawn(
                    self._probe_loop,
                    node,
                    name=f"pgharbor-{self.name}-RoleProbe-{node.name}",
                    group=self._tasks,
                )
        if wait:
            await self._wait_probed(2 * self.probe_timeout if timeout is None else timeout)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the probes and close every pool; returns within about
        ``timeout`` seconds whatever the network does. Idempotent."""
        deadline = monotonic() + timeout
        self._closed = True
        self._closing.set()
        for node in self._nodes.values():
            node.wakeup.set()
        for node in self._nodes.values():
            if node.task is not None and aalive(node.task):
                await ajoin(node.task, deadline - monotonic())
        remaining = max(0.1, deadline - monotonic())
        await arun_all(*(partial(n.pool.close, remaining) for n in self._nodes.values()))

    def pool_for(self, route: Route | None = "primary", now: float | None = None) -> AsyncPool:
        """The pool of the node that should serve ``route`` now (no I/O, no wait).

        ``route`` is "primary" (writes, transactions), "replica" or "any"; None
        means the topology's ``reads`` setting.

        Raises:
            NoAvailableServer: no node can serve it (writes while there is no
                primary, say); raised at once, and the probes are woken so the
                next call sees a newly promoted primary as soon as possible.
            ValueError: an unknown route.
        """
        if self._single is not None:
            return self._single
        when = monotonic() if now is None else now
        with self._lock:
            if route is None:
                route = self.router.read_route()
            if self.router.balance == "least_busy":
                for node in self._nodes.values():
                    stats = node.pool.stats()
                    self.router.set_in_flight(node.name, int(stats["in_use"] + stats["waiting"]))
            try:
                name = self.router.choose(route, when)
            except NoAvailableServer:
                # Maybe a standby is being promoted right now: ask the nodes
                # that answer (not the dead ones: no connect storms) at once.
                for node in self._nodes.values():
                    if self.router.node(node.name).healthy:
                        node.wakeup.set()
                raise
        return self._nodes[name].pool

    def note_error(self, pool: AsyncPool, exc: BaseException) -> bool:
        """Report that a statement on ``pool`` failed with ``exc``.

        Connection-class errors, pool timeouts and read-only errors (25006) on
        the primary trigger an immediate probe of that node (and, for the
        primary, stop writes there until the probe says primary again).
        Other errors (constraint violations, syntax...) change nothing.

        Returns:
            True if the node is being probed again.

        Raises:
            ValueError: ``pool`` is not one of this topology's pools.
        """
        node = self._node_of(pool)
        if self._single is not None:
            return False  # nowhere else to go: the pool heals itself
        kind = _error_kind(pool, exc)
        with self._lock:
            before = self.router.node(node.name).role
            reprobe = self.router.note_error(node.name, kind, monotonic())
            after = self.router.node(node.name).role
        if before != after:
            logger.warning(
                "topology %r: node %r refused a write as read-only (%s): no more writes "
                "there until a probe says primary",
                self.name,
                node.name,
                kind,
            )
        if reprobe:
            node.wakeup.set()
        return reprobe

    def pools(self) -> list[AsyncPool]:
        """Every node's pool, in the order the nodes were listed."""
        return [node.pool for node in self._nodes.values()]

    @property
    def single(self) -> bool:
        """Whether this is a topology of one node without a role probe."""
        return self._single is not None

    def note_write(self) -> None:
        """Report a successful write (starts the read-your-writes window)."""
        if self._single is not None:
            return
        with self._lock:
            self.router.note_write(monotonic())

    def nodes(self) -> list[dict[str, Any]]:
        """A snapshot per node: ``name``, ``target`` (never a secret), ``role``,
        ``healthy``, ``lag_seconds``, ``lag_bytes``, ``timeline``, ``banned``,
        ``failures``, ``probed_ago`` (seconds, or None) and ``pool`` (its stats)."""
        now = monotonic()
        out = []
        for node in self._nodes.values():
            with self._lock:
                st = self.router.node(node.name)
                info: dict[str, Any] = {
                    "name": node.name,
                    "target": node.pool.target,
                    "role": st.role,
                    "healthy": st.healthy,
                    "lag_seconds": st.lag_seconds,
                    "lag_bytes": st.lag_bytes,
                    "timeline": st.timeline,
                    "banned": st.banned,
                    "failures": st.failures,
                    "probed_ago": None if st.probed_at is None else now - st.probed_at,
                }
            info["pool"] = node.pool.stats()
            out.append(info)
        return out

    @property
    def warnings(self) -> list[str]:
        """Current anomalies (split brain), one sentence each."""
        with self._lock:
            return list(self.router.warnings)

    # -- the role probe ------------------------------------------------------------

    async def _probe_loop(self, node: _Node) -> None:
        """RoleProbe: probe one node every ``probe_interval`` or when woken."""
        try:
            while not self._closed:
                node.wakeup.clear()
                started = monotonic()
                await self._probe(node)
                self._progress.set()
                if self._closed:
                    break
                await node.wakeup.wait_timeout(self.probe_interval - (monotonic() - started))
                gap = _MIN_GAP - (monotonic() - started)
                if gap > 0 and not self._closed:
                    await self._closing.wait_timeout(gap)
        finally:
            conn, node.conn = node.conn, None
            if conn is not None:
                await node.pool.connector.close(conn)

    async def _probe(self, node: _Node) -> None:
        """One probe of ``node``: report the result to the router and log changes."""
        pool = node.pool
        connector = pool.connector
        driver = connector.driver
        deadline = monotonic() + self.probe_timeout
        secrets: list[str] = []
        try:
            if node.conn is None or driver.status(node.conn) is ConnStatus.BROKEN:
                node.conn = None
                params = await connector.params()
                secrets = secrets_of(params)
                node.conn = await driver.connect(params, self.probe_timeout)
            if node.queries is None:
                node.queries = get_async_queries(driver.name)
            # No statement timeout: it would cancel through a new connection,
            # which a hung node does not answer either (see `_Watchdog`).
            watchdog = _Watchdog(driver, node.conn, max(0.01, deadline - monotonic()), node.name)
            late = f"no answer to the role probe within {self.probe_timeout:.2f} s"
            try:
                row = await node.queries.fetchrow(node.conn, PROBE_SQL, None, None)
            except BaseException as exc:
                # The cut surfaces as a lost connection: say what happened.
                if watchdog.stop() and isinstance(exc, Exception):
                    raise TimeoutError(late) from exc
                raise
            if watchdog.stop():
                raise TimeoutError(late)
            if row is None:
                raise ConnectionFailed("the role probe returned no row")
        except Exception as exc:
            conn, node.conn = node.conn, None
            if conn is not None:
                driver.terminate(conn)
            with self._lock:
                was_healthy = self.router.node(node.name).healthy
                self.router.probe_failed(node.name, monotonic())
                self._after_probe()
            if was_healthy:
                logger.warning(
                    "topology %r: node %r (%s) is unreachable: %s",
                    self.name,
                    node.name,
                    pool.target,
                    redact(f"{type(exc).__name__}: {exc}", secrets),
                )
            return
        role: Role = "standby" if row[0] else "primary"
        with self._lock:
            st = self.router.node(node.name)
            before = (st.role, st.healthy)
            self.router.observe(node.name, role, row[1], row[2], monotonic(), row[3])
            self._after_probe()
        # The node answers: its pool need not wait out a reconnect backoff;
        # and its observers (metrics, role_change hooks) learn the role.
        pool.nudge()
        pool.observation.set_role("replica" if role == "standby" else role)
        if before != (role, True):
            level = logging.INFO if before[0] in ("unknown", role) else logging.WARNING
            logger.log(
                level,
                "topology %r: node %r (%s) is %s%s",
                self.name,
                node.name,
                pool.target,
                role,
                f" (was {before[0]})" if before[0] != "unknown" else "",
            )

    def _after_probe(self) -> None:
        """Log split brain loudly while it lasts: when it starts or changes,
        then every ``_REPEAT_WARNING`` seconds (called under the lock)."""
        warnings = tuple(self.router.warnings)
        now = monotonic()
        if warnings and (warnings != self._warned or now - self._warned_at >= _REPEAT_WARNING):
            for warning in warnings:
                logger.error("topology %r: %s", self.name, warning)
            self._warned_at = now
        elif self._warned and not warnings:
            logger.warning("topology %r: split brain over", self.name)
        self._warned = warnings

    async def _wait_probed(self, timeout: float) -> None:
        deadline = monotonic() + timeout
        while True:
            self._progress.clear()
            with self._lock:
                states = self.router.nodes
                done = all(n.probed_at is not None for n in states)
                answered = any(n.healthy for n in states)
                summary = self.router.describe(monotonic())
            if done and answered:
                return
            remaining = deadline - monotonic()
            if done or remaining <= 0:
                if answered:
                    return
                raise NoAvailableServer(
                    f"topology {self.name!r}: no node answered its role probe within "
                    f"{timeout:.2f} s [{summary}]"
                )
            await self._progress.wait_timeout(remaining)

    def _node_of(self, pool: AsyncPool) -> _Node:
        node = self._by_pool.get(id(pool))
        if node is None or node.pool is not pool:
            raise ValueError(f"{pool!r} is not a pool of topology {self.name!r}")
        return node


class _Watchdog:
    """Cuts a probe session's socket if its query outlives the probe's bound.

    A statement timeout is no bound against a node that is paused (SIGSTOP)
    or behind a partition: the cancel request goes over a *new* connection
    that such a node does not answer either, so psycopg waits out its own
    cancel and drain timeouts (10 s) and a blocking connection waits for
    ever. Shutting the socket down makes the blocked read see EOF at once,
    in either flavour and with any driver; the session is thrown away.
    """

    __slots__ = ("_armed", "_conn", "_driver", "_lock", "_timer", "fired")

    def __init__(self, driver: Any, conn: Any, delay: float, name: str) -> None:
        self._driver = driver
        self._conn = conn
        # "Still running?" and "cut it" are one step: once `stop` has
        # returned, the session is never cut behind the caller's back.
        self._lock = threading.Lock()
        self._armed = True
        self.fired = False
        if True:  # ASYNC
            self._timer: Any = asyncio.get_running_loop().call_later(delay, self._fire)
        else:
            self._timer = threading.Timer(delay, self._fire)
            self._timer.name = f"pgharbor-RoleProbe-{name}-watchdog"
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._armed:
                return
            self.fired = True
            if not self._driver.sever(self._conn):
                logger.debug("could not cut a probe session")

    def stop(self) -> bool:
        """Disarm; whether the bound passed (the session is then unusable)."""
        with self._lock:
            self._armed = False
        self._timer.cancel()
        return self.fired


def _error_kind(pool: AsyncPool, exc: BaseException) -> str | None:
    """A SQLSTATE, or "disconnect"/"timeout" for errors that carry none."""
    code = sqlstate_of(exc)
    if code is not None:
        return code
    if isinstance(exc, PoolError | ConnectionFailed):
        return "timeout"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionLost):  # Database's, caused by the driver's
        return "disconnect"
    if pool.connector.is_disconnect(exc) or is_disconnect_message(str(exc)):
        return "disconnect"
    return None
