"""`AsyncPool`: lends connections; source of the generated `Pool`.

This file is the source of truth for both flavours: `tools/unasync.py`
generates `pgharbor/_sync/pool.py` (`Pool`) from it. Differences between
asyncio and threads live in the paired primitives of `pgharbor._acompat`.

A pool is four things composed (the seams HikariCP cuts along):

- the pure core, `pgharbor._policy.pool.PoolState`: every fact and decision;
- an `AsyncConnector` (``pool.connector``): everything about one connection —
  conninfo, driver, version check, checkout check, ping, cleaning, closing;
- an `AsyncHousekeeper`: carries out the core's decisions and runs the
  background work (opening, retiring, keepalive, probing a server that is down);
- a `PoolObservation` (``pool.observation``): health, alerts, hooks, metrics.

This class is the lending part: `acquire`, `release`, `connection` and the
administration around them. Rules it keeps:

- decide under the lock (``PoolState`` methods), do I/O outside it;
- the hot path does no I/O unless a connection needs a ping (idle longer
  than ``check_window``) or cleaning (returned dirty); its checkout check
  costs at most one zero-timeout ``poll``;
- connections are opened and closed by the housekeeper, never by the caller
  waiting for one (except one returned to a closed pool: closed before the
  return completes);
- a slot is always either given back or discarded, whatever exception —
  cancellation included — interrupts the path that holds it.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Unpack, cast, overload

from .._acompat import (
    ADeadlines,
    ALock,
    AStrFactory,
    AWaiter,
    aalive,
    ajoin,
)
from .._observe import PoolObservation
from .._policy.autoscale import Autoscale, AutoscaleStatus, autoscale_option
from .._policy.backoff import Backoff
from .._policy.breaker import Breaker, BreakerOptions
from .._policy.health import Alerts, HealthReport, HealthThresholds
from .._policy.options import DEFAULTS, PoolOptions, timeout_arg
from .._policy.pool import CHECK, DISCARD, OK, PoolState, Slot
from .._typing import AsyncPoolKwargs, ConnT, PoolStats
from ..drivers.base import AsyncDriver
from ..errors import (
    CircuitOpen,
    ConfigError,
    ConnectionFailed,
    PoolClosed,
    PoolTimeout,
    fresh_copy,
)
from ..metrics import Event as PoolEvent
from .autoscaler import AsyncAutoscaler
from .connector import AsyncConnector, is_async_callable, is_fatal
from .housekeeping import AsyncHousekeeper

if True:  # ASYNC
    import asyncio

if TYPE_CHECKING:
    from .._typing import AsyncpgConn, AsyncPsycopgConn

__all__ = ["AsyncPool"]

logger = logging.getLogger("pgharbor.pool")

Conninfo = str | AStrFactory
Callback = Callable[[Any], Any]

_get_ident = threading.get_ident
_names = itertools.count(1)
# Pools to forget in a child process after fork (see _after_fork).
_pools: weakref.WeakSet[AsyncPool] = weakref.WeakSet()
# Connect failures that end open() at once, with their cause: the server
# refuses or cannot be found, or turns the login down. Others (a server
# starting up or full, a timeout, a failing configure callback) are waited
# out until the open timeout.
_GIVE_UP = frozenset({"network", "dns", "tls", "auth", "database-missing"})
_ENDED_WHILE_IDLE = "the server closed the connection before it was lent"


class AsyncPool(Generic[ConnT]):
    """A pool of native driver connections (of type ``ConnT``).

    ``conninfo`` is a URL or keyword DSN, or a callable (sync or async) that
    returns one at every connection attempt, for credential rotation; so may
    ``password`` be. ``driver`` is a driver name or an adapter object.
    Connections are in autocommit mode: transactions are explicit. Settings
    are described in :class:`pgharbor.PoolOptions`; every time is in seconds.
    ``reset`` says what is cleaned when a connection comes back (see
    `pgharbor._async.connector`): ``"rollback"`` (the default), ``"session"``,
    ``"discard"`` or a callable. ``breaker=True`` (or a `BreakerOptions`) adds
    a circuit breaker: after repeated connect failures, callers fail fast
    with `CircuitOpen` and no connection is attempted until the server is
    seen accepting connections again, or a probe is due. ``autoscale=True``
    (or an `Autoscale`) makes the size follow measured demand between
    ``min_size`` and ``max_size`` and what the server leaves (see
    `pgharbor._policy.autoscale`). Invalid settings raise `ConfigError`
    here, at once.

    Use it as a context manager, or call `open` and `close`::

        async with AsyncPool(url, max_size=10, name="main") as pool:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

    For type checkers the pool is generic in its connection type, chosen by
    ``driver``: ``AsyncPool(url)`` lends ``psycopg.AsyncConnection[tuple[Any,
    ...]]``, ``AsyncPool(url, driver="asyncpg")`` ``asyncpg.Connection``; an
    adapter object, the type its ``connect`` returns; a driver name that is
    not a literal, ``Any``.
    """

    @overload
    def __init__(
        self: AsyncPool[AsyncPsycopgConn],
        conninfo: Conninfo = "",
        *,
        driver: Literal["psycopg"] = "psycopg",
        **settings: Unpack[AsyncPoolKwargs],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncPool[AsyncpgConn],
        conninfo: Conninfo = "",
        *,
        driver: Literal["asyncpg"],
        **settings: Unpack[AsyncPoolKwargs],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncPool[ConnT],
        conninfo: Conninfo = "",
        *,
        driver: AsyncDriver[ConnT],
        **settings: Unpack[AsyncPoolKwargs],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncPool[Any],
        conninfo: Conninfo = "",
        *,
        driver: str,
        **settings: Unpack[AsyncPoolKwargs],
    ) -> None: ...

    def __init__(
        self,
        conninfo: Conninfo = "",
        *,
        driver: str | AsyncDriver = "psycopg",
        name: str | None = None,
        min_size: int = DEFAULTS.min_size,
        max_size: int | None = None,
        timeout: float = DEFAULTS.timeout,
        max_waiting: int = DEFAULTS.max_waiting,
        max_lifetime: float | None = DEFAULTS.max_lifetime,
        max_idle: float | None = DEFAULTS.max_idle,
        max_uses: int | None = DEFAULTS.max_uses,
        check_window: float = DEFAULTS.check_window,
        check_timeout: float = DEFAULTS.check_timeout,
        keepalive: float | None = DEFAULTS.keepalive,
        leak_threshold: float | None = DEFAULTS.leak_threshold,
        connect_timeout: float = DEFAULTS.connect_timeout,
        reconnect_timeout: float = DEFAULTS.reconnect_timeout,
        backoff: Backoff | None = None,
        password: str | AStrFactory | None = None,
        kwargs: dict[str, Any] | None = None,
        configure: Callback | None = None,
        reset: str | Callback | None = "rollback",
        reconnect_failed: Callback | None = None,
        prepared_statements: bool = True,
        minimum_version: int | None = None,
        breaker: BreakerOptions | bool | None = None,
        metrics: Any = None,
        health: HealthThresholds | None = None,
        alerts: Alerts | None = None,
        labels: Mapping[str, str] | None = None,
        autoscale: Autoscale | bool | None = None,
    ) -> None:
        if max_size is None:
            default = DEFAULTS.max_size
            max_size = max(min_size, default) if isinstance(min_size, int) else default
        self.options = PoolOptions(
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            max_waiting=max_waiting,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            max_uses=max_uses,
            check_window=check_window,
            check_timeout=check_timeout,
            keepalive=keepalive,
            leak_threshold=leak_threshold,
            connect_timeout=connect_timeout,
            reconnect_timeout=reconnect_timeout,
            backoff=backoff or Backoff(),
        )
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("name", "must be a non-empty string")
        self.name = name or f"pool-{next(_names)}"
        #: Makes, checks, cleans and closes this pool's connections.
        self.connector = AsyncConnector(
            conninfo,
            driver=driver,
            password=password,
            kwargs=kwargs,
            prepared_statements=prepared_statements,
            minimum_version=minimum_version,
            configure=configure,
            reset=reset,
            connect_timeout=self.options.connect_timeout,
            check_timeout=self.options.check_timeout,
            name=self.name,
        )
        if reconnect_failed is not None and not callable(reconnect_failed):
            raise ConfigError("reconnect_failed", "must be callable")
        if True:  # ASYNC
            pass
        elif reconnect_failed is not None and is_async_callable(reconnect_failed):
            raise ConfigError(
                "reconnect_failed", "must be a plain function: a sync pool cannot await a coroutine"
            )
        self._reconnect_failed = reconnect_failed
        if breaker is True:
            breaker = BreakerOptions()
        elif (
            breaker is not None and breaker is not False and not isinstance(breaker, BreakerOptions)
        ):
            raise ConfigError("breaker", "must be True, False, None or a BreakerOptions")
        self._breaker_options = breaker or None
        self._autoscale = autoscale_option(autoscale, self.options.min_size, self.options.max_size)
        self._state = self._new_state()
        self._lock = ALock()
        #: Health, alerts, hooks and metrics of this pool.
        self.observation = PoolObservation(
            self.name,
            self._state,
            self._lock,
            metrics=metrics,
            health=health,
            alerts=alerts,
            labels=labels,
        )
        self._keeper = self._new_keeper()
        self._perform = self._keeper.perform
        # What the return path asks, looked up once (it runs at every return).
        self._reusable = self.connector.driver.reusable
        self._resets_raw = self.connector.resets_raw
        self._deadlines = ADeadlines()  # expires waiters (one timer, not one each)
        self._opened = False
        self._pid = os.getpid()
        self._forked = False
        self._warn_unclosed = True  # see `_peer_semantics`
        # The thread whose event loop runs the pool (None until opened): a
        # pool is bound to one loop, and the hot path checks the thread.
        self._thread: int | None = None
        self._loop: Any = None
        # Take the slow acquire path: after a fork, to record leak holders,
        # or once the event loop is gone.
        self._slow = leak_threshold is not None
        _pools.add(self)

    # -- public API ------------------------------------------------------------

    def __repr__(self) -> str:
        st = self._state
        status = "closed" if st.closed else ("open" if self._opened else "new")
        return (
            f"<{type(self).__name__} {self.name!r} {status} size={st.size}/"
            f"{self.options.max_size} idle={len(st.idle)} waiting={len(st.waiters)}>"
        )

    def __del__(self) -> None:
        # An open pool dropped without close(): say so, as files and sockets
        # do, and let go of what needs no I/O (no awaiting in a finalizer).
        state = getattr(self, "_state", None)
        if state is None or state.closed or not getattr(self, "_opened", False):
            return  # never opened, closed, or __init__ failed
        if self._forked:
            return  # the parent's connections: not ours to drop
        # Let go first: with warnings turned into errors, warn() raises.
        io = state.close()
        for slot in io.close:
            self.connector.terminate(slot.conn)
        self._keeper.wakeup.set_threadsafe()  # the maintenance loop ends
        if not self._warn_unclosed:
            return  # a drop-in for a peer that says nothing
        warnings.warn(
            f"pool {self.name!r} was never closed: call close(), or use it as a "
            "context manager; its idle connections were dropped",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )

    async def __aenter__(self) -> AsyncPool[ConnT]:
        await self.open(wait=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start the pool: open ``min_size`` connections in parallel.

        With ``wait`` (the default), block until they are open; otherwise
        return at once and let them open in the background. Calling it on an
        open pool does nothing.

        A pool that cannot open (the first attempts fail — refused,
        unresolvable, wrong password, no such database — or ``timeout``
        passes) is closed by the call that opened it, leaving nothing
        behind, and the error says why.

        Raises:
            ConnectionFailed: with ``wait``, the first connection attempts
                failed and retrying is not worth waiting for (``reason``
                says why; a server still starting up is waited for).
            UnsupportedServerVersion: the server is too old.
            PoolTimeout: ``min_size`` connections could not be opened within
                ``timeout`` (default: the pool's ``timeout``); the last connect
                error is the cause.
            PoolClosed: the pool was closed; pools are not reopened.
        """
        timeout = timeout_arg(timeout)
        if self._state.closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        opening = not self._opened
        if opening:
            self._opened = True
            if True:  # ASYNC
                self._loop = asyncio.get_running_loop()
                self._thread = _get_ident()
            # Sinks meet the pool when it opens (and forget it when it
            # closes): a pool never opened leaves no stale series behind.
            self.observation.start(self.connector.target, self.connector.endpoint(), self.stats)
            self._keeper.start()
        if wait:
            try:
                await self._wait(timeout, opening=True)
            except BaseException:
                if opening:
                    await self.close()
                raise

    async def wait(self, timeout: float | None = None) -> None:
        """Block until ``min_size`` connections are open.

        Raises:
            PoolTimeout: not within ``timeout`` (default: the pool's timeout).
            ConnectionFailed: connecting fails in a way retrying cannot fix
                (authentication, missing database) and no connection is open.
        """
        await self._wait(timeout_arg(timeout), opening=False)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool.

        Waiters get `PoolClosed` at once; idle connections are closed;
        connections still in use are closed when they are returned. Returns
        within about ``timeout`` seconds whatever the network does. Idempotent.
        """
        deadline = monotonic() + (timeout_arg(timeout) or 0.0)
        with self._lock:
            io = self._state.close()
        gone = self._loop_gone()
        if gone:
            # Opened under an event loop that has ended: its connections
            # cannot be closed through it. End their sessions directly.
            for slot in io.close:
                self.connector.terminate(slot.conn)
            io.close = []
        self._perform(io)
        self._keeper.wakeup.set()
        # Background work winds down by itself once the state is closed;
        # connections that finish opening meanwhile are closed at once.
        while not gone and monotonic() < deadline:
            running = [t for t in list(self._keeper.tasks) if aalive(t)]
            if not running:
                break
            for task in running:
                await ajoin(task, deadline - monotonic())
        if self._state.in_use:
            logger.warning(
                "pool %r closed with %d connection(s) still in use: they will be "
                "closed when returned",
                self.name,
                self._state.in_use,
            )
        self.observation.stop()

    def connection(
        self, timeout: float | None = None, *, reset: bool = True
    ) -> _ConnectionContext[ConnT]:
        """Context manager lending a connection: ``async with pool.connection() as conn``.

        On exit the connection goes back to the pool: cleaned as the pool's
        ``reset`` says (an open transaction is rolled back, with a warning),
        discarded if broken. Waits up to ``timeout`` (default: the pool's) for
        a connection. ``reset=False`` skips the reset preset for a borrower
        that knows it changes no session state (`Database` statements); the
        rollback and the client-side attributes are still seen to.

        Raises:
            PoolTimeout: no connection within the timeout.
            TooManyRequests: ``max_waiting`` callers are already queued.
            CircuitOpen: the breaker (``breaker=``) is open and no connection
                is open: failing fast, with ``retry_after``.
            ConnectionFailed: connecting fails in a way retrying cannot fix
                (authentication, missing database) and no connection is open.
            PoolClosed: the pool is closed, or closes while waiting.
            RuntimeError: called from another event loop than the pool's.
        """
        if timeout is not None:
            timeout = timeout_arg(timeout)
        return _ConnectionContext(self, timeout, reset)

    async def acquire(self, timeout: float | None = None) -> ConnT:
        """Take a connection; every `acquire` needs a matching `release`.

        Prefer `connection`, which cannot forget to give it back, nor give it
        back twice. Raises as `connection` does.
        """
        if timeout is not None:
            timeout = timeout_arg(timeout)
        slot = await self._lend(timeout)
        slot.owner = _holder()
        conn: ConnT = slot.conn
        return conn

    async def release(self, conn: ConnT, *, keep: bool = True) -> None:
        """Give back a connection taken with `acquire`.

        A connection may be released by another task (thread, in `Pool`)
        than the one that acquired it, once that one has handed it over.
        ``keep=False``: do not keep it idle — it goes to the oldest waiting
        caller if there is one (cleaned as usual), else it is closed before
        this returns (a pool without idle connections, as psycopg_pool's
        ``NullConnectionPool``).

        Raises:
            ValueError: ``conn`` is not currently lent out by this pool, or
                the caller already gave it back and it has since been lent to
                someone else who still holds it (a stale second release:
                nothing changes).
        """
        slot = self._state.owns(conn)
        if slot is None or not slot.in_use or slot.conn is not conn:
            raise ValueError(f"connection {conn!r} is not lent out by pool {self.name!r}")
        me = _holder()
        if me is not slot.owner and me is slot.released_by and _holds(slot.owner):
            # This caller gave it back before, and it is now lent to someone
            # still holding it: a stale second release, not a hand-over.
            raise ValueError(
                f"stale release: connection #{slot.id} of pool {self.name!r} was already "
                "released by this caller and is now lent to another; nothing changed"
            )
        slot.released_by, slot.owner = slot.owner, None
        if not keep:
            await self._release_slow(slot, True, keep=False)
        elif not self._put_back(slot, True):
            await self._release_slow(slot, True)

    @property
    def target(self) -> str:
        """Where connections go, ``host:port/dbname as user`` — never a secret."""
        return self.connector.target

    def stats(self) -> PoolStats:
        """Sizes and counters: ``size``, ``idle``, ``in_use``, ``connecting``,
        ``waiting``, ``min_size``, ``max_size``, ``target_size``, ``acquired``,
        ``waited``, ``wait_ms``, ``wait_p50_ms``, ``wait_p99_ms``,
        ``usage_ms``, ``timeouts``, ``rejected``, ``connections_created``,
        ``connect_ms``, ``connections_failed``, ``connections_lost``,
        ``connections_expired``, ``checks``, ``checks_failed``, ``leaks``,
        ``breaker_open``, ``breaker_opened``; an autoscaled pool adds
        ``autoscale_demand``, ``autoscale_wait_p99_ms``, ``autoscale_cap``,
        ``autoscale_resizes`` (see docs/observability.md)."""
        with self._lock:
            stats = self._state.stats()
        if self._keeper.autoscaler is not None:
            stats.update(cast("PoolStats", self._keeper.autoscaler.stats()))
        return stats

    @property
    def autoscale(self) -> AutoscaleStatus | None:
        """An autoscaled pool's standing — target, cap, demand, the last
        change and why (see `pgharbor.AutoscaleStatus`); None when the pool
        is not autoscaled."""
        keeper = self._keeper.autoscaler
        return keeper.status() if keeper is not None else None

    def health(self) -> HealthReport:
        """A health report: the verdict and figures over the recent window of
        connect, check and query outcomes (see `pgharbor.HealthThresholds`),
        and the pool's numbers. A pool that is not open is not healthy."""
        return self.observation.health(self.target, self._opened)

    def on(self, event: str, fn: Callable[[PoolEvent], Any]) -> Callable[[], None]:
        """Call ``fn(event)`` on every ``event`` (see `pgharbor.metrics.EVENTS`):
        ``connect``, ``acquire``, ``release``, ``remove`` (with a reason),
        ``error``, ``timeout``, ``role_change``, ``breaker_change``, ``alert``.
        Hooks run inline, outside the pool's lock: keep them quick; one that
        raises is logged and ignored. Returns a function that unregisters it.

        Raises:
            ConfigError: unknown event, or ``fn`` is not a plain callable.
        """
        return self.observation.on(event, fn)

    async def check(self) -> None:
        """Ping every idle connection now; discard the dead, refill the pool.

        Raises:
            PoolClosed: the pool is closed.
        """
        self._ensure_open()
        with self._lock:
            slots = []
            while self._state.idle:
                slot = self._state.checkout(monotonic())
                if slot is not None:
                    slots.append(slot)
        for slot in slots:
            if slot.verdict == DISCARD:
                with self._lock:
                    io = self._state.discard(slot, monotonic())
                self._perform(io)
                continue
            ok = await self._keeper.ping(slot)
            with self._lock:
                if ok:
                    self._state.check_passed(slot, monotonic())
                    after = self._state.checkin(slot, monotonic(), healthy=True)
                else:
                    after = self._state.check_failed(slot, monotonic())
            if after is not None:
                self._perform(after)

    # -- for the drop-ins (pgharbor.compat) -------------------------------------

    def _peer_semantics(
        self,
        *,
        fifo: bool = False,
        max_connecting: int = 0,
        grow_per_waiter: bool = False,
        lost_alone: bool = False,
        warn_unclosed: bool = True,
    ) -> None:
        """A peer pool's rules, for its drop-in: lend the least recently
        returned connection first (``fifo``), open at most ``max_connecting``
        connections at once (0: no limit), beyond ``min_size`` open one
        connection per waiting caller (``grow_per_waiter``) rather than one
        at a time, discard only the connection found dead, not its idle
        siblings with it (``lost_alone``; each still gets its own checkout
        check), say nothing of a pool dropped without ``close()``
        (``warn_unclosed`` False)."""
        with self._lock:
            self._state.fifo = fifo
            self._state.max_connecting = max_connecting
            self._state.grow_per_waiter = grow_per_waiter
            self._state.lost_alone = lost_alone
        self._warn_unclosed = warn_unclosed

    def _rearm_reconnect_failed(self) -> None:
        """A caller finds no idle connection after ``reconnect_failed`` was
        called and connecting still fails: a new ``reconnect_timeout`` starts
        (psycopg_pool's rule, for its drop-in; see
        `PoolState.rearm_reconnect_failed`)."""
        st = self._state
        if not st.reconnect_failed_fired or st.idle:
            return  # the usual case: two attribute reads
        with self._lock:
            rearmed = st.rearm_reconnect_failed(monotonic())
        if rearmed:
            self._keeper.wakeup.set()

    async def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the sizes at runtime (validated first; nothing changes on error).

        Growing opens connections in the background; shrinking closes idle
        connections now and in-use ones as they are returned. An autoscaled
        pool's target moves within the new bounds.

        Raises:
            ConfigError: invalid sizes.
            PoolClosed: the pool is closed.
        """
        options = self.options.with_sizes(min_size, max_size)
        self._ensure_open()
        self.options = options
        with self._lock:
            io = self._state.resize(options)
        self._perform(io)

    async def drain(self) -> None:
        """Replace every connection: idle ones now, in-use ones when returned;
        new connections are opened in the background.

        Raises:
            PoolClosed: the pool is closed.
        """
        self._ensure_open()
        with self._lock:
            io = self._state.drain()
        self._perform(io)

    def nudge(self) -> None:
        """The server answered someone else (the topology's role probe): stop
        waiting out the reconnect backoff."""
        with self._lock:
            io = self._state.nudge(monotonic())
        if io is not None:
            self._perform(io)

    # -- lending -------------------------------------------------------------------

    # The fast paths live in `_lend`, `_ConnectionContext` and `_put_back`:
    # pop an idle connection that needs no check and hand it over; take back
    # a clean one. Everything else comes here.

    async def _lend(self, timeout: float | None) -> Slot:
        """The fast path of a checkout (also inlined in `_ConnectionContext`)."""
        slot: Slot | None = None
        if True:  # ASYNC
            if self._thread != _get_ident():  # another loop's thread, or not open
                return await self._acquire_slow(None, timeout)
        if not self._slow and not self._state.waiters:
            with self._lock:
                slot = self._state.checkout(monotonic())
        if slot is None or slot.verdict or not slot.watch():
            slot = await self._acquire_slow(slot, timeout, not self._slow)
        elif self.observation.observer is not None:
            self.observation.observer.acquired(slot.conn, 0.0)
        return slot

    async def _acquire_slow(
        self, slot: Slot | None, timeout: float | None, tried: bool = False
    ) -> Slot:
        """Acquire, starting from ``slot`` (popped by a fast path, maybe None;
        ``tried``: the fast path found no idle connection just now)."""
        if True:  # ASYNC
            if self._opened and (self._thread != _get_ident() or self._loop_gone()):
                if slot is not None:
                    self._unlend(slot)
                raise self._wrong_loop()
        if self._forked:
            self._after_fork()
            slot, tried = None, False  # popped from the parent's state: not ours
        st = self._state
        started = monotonic()
        while True:
            if slot is None and not tried:
                with self._lock:
                    slot = st.checkout(monotonic())
            tried = False
            if slot is None:
                # Queue (should a connection come back meanwhile, enqueue hands
                # it over). The wait is awaited here, not in a helper: one
                # coroutine frame less on every queued acquire.
                waiter, idle = self._enqueue(started)
                limit = self.options.timeout if timeout is None else timeout
                try:
                    # The timeout counts from the start of the acquire.
                    resolved = await waiter.wait(started + limit, self._deadlines)
                except BaseException:
                    await self._abandon(waiter)
                    raise
                if not resolved and self._timed_out(waiter, limit):
                    # A connection arrived as the timer fired: take it.
                    await waiter.settle()
                if waiter.error is not None:
                    raise fresh_copy(waiter.error)
                slot = waiter.value
                assert slot is not None
                if not idle:
                    # Just returned or opened: no verdict to apply, but the
                    # server may have ended the session while its previous
                    # holder sat on it (a FATAL after its last statement).
                    if slot.watch is None or slot.watch():
                        break
                    self._lost(slot)
                    slot = None
                    continue
            # An idle connection: its checkout verdict applies, and the
            # checkout check (no round trip) before anything is sent.
            if await self._vet(slot):
                break
            slot = None
        if self.options.leak_threshold is not None:
            slot.holder = sys._getframe(2)
        if self.observation.observer is not None:
            self.observation.observer.acquired(slot.conn, monotonic() - started)
        return slot

    async def _vet(self, slot: Slot) -> bool:
        """Whether an idle connection just checked out may be lent; if not,
        it is discarded (with its older siblings, when it turned out dead)."""
        st = self._state
        if slot.verdict == OK or slot.verdict == CHECK:
            if slot.watch is not None and not slot.watch():
                self._lost(slot)
                return False
            if slot.verdict == OK:
                return True
            try:
                alive = await self._keeper.ping(slot)
            except BaseException:
                # Cancelled mid-ping: the connection's state is unknown.
                with self._lock:
                    io = st.discard(slot, monotonic())
                self._perform(io)
                raise
            with self._lock:
                if alive:
                    st.check_passed(slot, monotonic())
                    return True
                io = st.check_failed(slot, monotonic())
            self._perform(io)
            return False
        with self._lock:
            io = st.discard(slot, monotonic())
        self._perform(io)
        return False

    def _lost(self, slot: Slot) -> None:
        """A lent slot failed the checkout check: dead without a round trip
        (the server's FATAL, or EOF, is waiting on the socket). As a failed
        check — its older siblings go too — but nothing was sent."""
        self.observation.checked(monotonic(), _ENDED_WHILE_IDLE)
        with self._lock:
            io = self._state.lost(slot, monotonic())
        self._perform(io)

    def _put_back(self, slot: Slot, raw: bool) -> bool:
        """Take back a connection that needs no cleaning, with no I/O; False
        if it does (then `_release_slow`). ``raw``: it was lent as is (not to
        run a `Database` statement), so the reset preset applies."""
        if (
            (raw and self._resets_raw)
            or slot.leak_reported
            or self._state.closed
            or not self._reusable(slot.conn)
        ):
            return False
        now = monotonic()
        if self.observation.observer is not None:
            self.observation.observer.released(slot.conn, now - slot.acquired_at)
        with self._lock:
            io = self._state.checkin(slot, now, True)
        if io is not None:
            self._perform(io)
        return True

    async def _release_slow(self, slot: Slot, raw: bool, keep: bool = True) -> None:
        # Unhealthy unless cleaning completes: a rollback interrupted (by
        # cancellation, say) leaves the connection in an unknown state.
        # Returned to a closed pool: closed below, not cleaned (nor counted lost).
        healthy = self._state.closed
        try:
            if not healthy:
                healthy = await self.connector.clean(slot.conn, raw)
        finally:
            # Runs even when cancelled mid-rollback: the slot is never lost.
            now = monotonic()
            if self.observation.observer is not None:
                self.observation.observer.released(slot.conn, now - slot.acquired_at)
            with self._lock:
                io = self._state.checkin(slot, now, healthy, keep)
            if slot.leak_reported:
                logger.warning(
                    "pool %r: connection #%d reported as leaked was returned after %.1f s",
                    self.name,
                    slot.id,
                    monotonic() - slot.acquired_at,
                )
            if io is not None:
                if (self._state.closed or not keep) and io.close:
                    # Returned to a closed pool, or not to be kept: closed
                    # before the return completes, not later in the background.
                    closing, io.close = io.close, []
                    for gone in closing:
                        self.observation.removed(gone.conn, gone.reason)
                        if self._loop_gone():
                            self.connector.terminate(gone.conn)
                        else:
                            await self.connector.close(gone.conn)
                self._perform(io)

    def _enqueue(self, since: float) -> tuple[AWaiter, bool]:
        """Join the FIFO queue, or be handed an idle connection at once (then
        True: its checkout verdict applies)."""
        if self._state.closed or not self._opened:
            raise PoolClosed(f"pool {self.name!r} is {'closed' if self._opened else 'not open'}")
        waiter = self._deadlines.waiter(since)
        st = self._state
        with self._lock:
            try:
                io = st.enqueue(waiter, monotonic())
            except CircuitOpen:
                if st.demand_wake:  # the breaker's probe comes sooner now
                    st.demand_wake = False
                    self._keeper.wakeup.set()
                raise
        idle = False
        if io is not None:
            idle = bool(io.handoff) and io.handoff[0][0] is waiter
            self._perform(io)  # a hand-off of an idle connection, or a wake-up
        if self.observation.alerts is not None:
            self.observation.sample_alerts()
        return waiter, idle

    def _timed_out(self, waiter: AWaiter, timeout: float) -> bool:
        """The wait timed out: leave the queue and raise `PoolTimeout`; or
        return True when a connection was handed over as the timer fired."""
        with self._lock:
            gone = self._state.dequeue(waiter, timed_out=True)
        if not gone:
            return True
        if self.observation.observer is not None:
            self.observation.observer.timed_out(timeout)
        raise self._timeout_error(
            f"couldn't get a connection from pool {self.name!r} within {timeout:.2f} s"
        )

    async def _abandon(self, waiter: AWaiter) -> None:
        """Cancelled while queued: leave the queue, or give back what we got."""
        with self._lock:
            gone = self._state.dequeue(waiter, timed_out=False)
        if not gone:
            await waiter.settle()
            if waiter.value is not None:
                await self._release_slow(waiter.value, False)

    def _unlend(self, slot: Slot) -> None:
        """Put back a slot the fast path popped but must not lend (no I/O)."""
        with self._lock:
            io = self._state.checkin(slot, monotonic(), True)
        if io is not None:
            self._perform(io)

    # -- opening ----------------------------------------------------------------------

    async def _wait(self, timeout: float | None, opening: bool) -> None:
        """Block until ``min_size`` connections are open. ``opening``: give up
        after the first failed attempts, unless the server is only starting."""
        timeout = self.options.timeout if timeout is None else timeout
        deadline = monotonic() + timeout
        progress = self._keeper.progress
        while True:
            # Clear before looking, so a connection that joins in between
            # still wakes us (threads).
            progress.clear()
            st = self._state
            if st.closed:
                raise PoolClosed(f"pool {self.name!r} is closed")
            if st.size >= self.options.min_size:
                return
            error = st.last_error
            # Waiting cannot help (wrong password, no such database...), or
            # opening: fail now, with the cause (a fresh error each time:
            # re-raising the stored one would grow its traceback).
            if (
                st.failures
                and error is not None
                and not st.slots
                and (is_fatal(error) or (opening and _gives_up(error)))
            ):
                raise fresh_copy(error)
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise self._timeout_error(
                    f"pool {self.name!r} could not open {self.options.min_size} "
                    f"connections within {timeout:.2f} s"
                )
            await progress.wait_timeout(remaining)

    # -- reporting -----------------------------------------------------------------

    def _new_state(self) -> PoolState:
        options = self._breaker_options
        breaker = Breaker(options) if options is not None else None
        return PoolState(
            self.options, breaker=breaker, name=self.name, autoscale=self._autoscale is not None
        )

    def _new_keeper(self) -> AsyncHousekeeper:
        return AsyncHousekeeper(
            name=self.name,
            state=self._state,
            lock=self._lock,
            connector=self.connector,
            observation=self.observation,
            reconnect_failed=self._reconnect_failed,
            owner=weakref.ref(self),
            on_stop=weakref.WeakMethod(self._housekeeping_stopped),
            autoscaler=None
            if self._autoscale is None
            else AsyncAutoscaler(
                self._autoscale,
                name=self.name,
                state=self._state,
                lock=self._lock,
                connector=self.connector,
                observation=self.observation,
            ),
        )

    def _housekeeping_stopped(self) -> None:
        """The maintenance loop was stopped with the pool open: its event
        loop ended. Every acquire now takes the slow path, which says so."""
        self._slow = True

    def _timeout_error(self, message: str) -> PoolTimeout:
        st = self._state
        counts = (
            f"size={st.size}, idle={len(st.idle)}, in_use={st.in_use}, "
            f"connecting={st.connecting}, waiting={len(st.waiters)}, "
            f"max_size={self.options.max_size}"
        )
        last = st.last_error if st.failures else None
        error = PoolTimeout(
            f"{message} ({counts})" + (f"; last connect error: {last}" if last else "")
        )
        error.__cause__ = last
        return error

    def _ensure_open(self) -> None:
        if self._state.closed:
            raise PoolClosed(f"pool {self.name!r} is closed")

    def _loop_gone(self) -> bool:
        """Whether the event loop the pool was opened under has ended."""
        if True:  # ASYNC
            return self._loop is not None and self._loop.is_closed()
        else:
            return False

    def _wrong_loop(self) -> RuntimeError:
        return RuntimeError(
            f"pool {self.name!r} is bound to the event loop it was opened in"
            + (" (now closed)" if self._loop_gone() else "")
            + ": use it only from that loop's thread and tasks, and create a pool "
            "per event loop (for example inside each asyncio.run())"
        )

    def _after_fork(self) -> None:
        """In a child process: forget the parent's connections without touching
        their sockets (closing them would end the parent's sessions)."""
        _orphans.extend(s.conn for s in self._state.slots.values())
        self._state = self._new_state()
        self._lock = ALock()
        self.observation.state, self.observation.lock = self._state, self._lock
        self._keeper = self._new_keeper()
        self._perform = self._keeper.perform
        self._pid = os.getpid()
        self._forked = False
        self._slow = self.options.leak_threshold is not None
        self._deadlines = ADeadlines()
        if self._opened:
            self._keeper.start()


def _gives_up(error: BaseException) -> bool:
    """Whether an opening pool stops at ``error`` rather than wait it out."""
    return isinstance(error, ConnectionFailed) and error.reason in _GIVE_UP


def _holder() -> Any:
    """Who is calling: the current task (thread, in `Pool`)."""
    if True:  # ASYNC
        return asyncio.current_task()
    else:
        return threading.current_thread()


def _holds(holder: Any) -> bool:
    """Whether the holder of a lease still holds it: a running task (thread);
    None is a `connection()` block, which holds it until the block ends."""
    if holder is None:
        return True
    if True:  # ASYNC
        return not holder.done()
    else:
        return bool(holder.is_alive())


# Connections inherited from a parent process: kept referenced so that no
# destructor ever sends a Terminate message on the parent's socket.
_orphans: list[Any] = []


def _mark_forked() -> None:
    for pool in list(_pools):
        pool._forked = pool._slow = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


class _ConnectionContext(Generic[ConnT]):
    """What `AsyncPool.connection` returns (a class, not a generator: cheaper).

    It holds its lease: the connection goes back exactly once, at exit.
    ``raw``: lent as is (the reset preset applies at return); `Database`
    statements use ``raw=False``."""

    __slots__ = ("_pool", "_raw", "_slot", "_timeout")

    def __init__(self, pool: AsyncPool[ConnT], timeout: float | None, raw: bool) -> None:
        self._pool = pool
        self._timeout = timeout
        self._raw = raw
        self._slot: Slot | None = None

    async def __aenter__(self) -> ConnT:
        pool = self._pool
        slot: Slot | None = None
        if True:  # ASYNC
            if pool._thread != _get_ident():  # another loop's thread, or not open
                self._slot = await pool._acquire_slow(None, self._timeout)
                conn: ConnT = self._slot.conn
                return conn
        # With callers queued there is no idle connection to take (they would
        # have it): join the queue at once (enqueue hands over one if there is).
        if not pool._slow and not pool._state.waiters:
            with pool._lock:
                slot = pool._state.checkout(monotonic())
        if slot is None or slot.verdict or not slot.watch():
            slot = await pool._acquire_slow(slot, self._timeout, not pool._slow)
        elif pool.observation.observer is not None:
            pool.observation.observer.acquired(slot.conn, 0.0)
        self._slot = slot
        lent: ConnT = slot.conn
        return lent

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        if slot is not None:
            self._slot = None
            if not self._pool._put_back(slot, self._raw):
                await self._pool._release_slow(slot, self._raw)
