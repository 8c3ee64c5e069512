"""`AsyncPool`: the I/O shell around the pure `PoolState`.

This file is the source of truth for both flavours: `tools/unasync.py`
generates `pgharbor/_sync/pool.py` (`Pool`) from it. Differences between
asyncio and threads live in the paired primitives of `pgharbor._acompat`.

Rules this shell keeps:

- decide under the lock (``PoolState`` methods), do I/O outside it;
- the hot path (`acquire`, `release`, `connection`) does no I/O unless a
  connection needs a ping (idle longer than ``check_window``) or a rollback
  (returned inside a transaction);
- connections are opened and closed by background work (`maintenance.py`:
  `maintain`, `connect_one`, `close_slots`), never by the caller waiting for one;
- a slot is always either given back or discarded, whatever exception —
  cancellation included — interrupts the path that holds it.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import traceback
import warnings
import weakref
from collections.abc import Callable, Mapping
from time import monotonic
from types import TracebackType
from typing import Any

from .._acompat import (
    ADeadlines,
    AEvent,
    ALock,
    AStrFactory,
    ATaskFn,
    AWaiter,
    aalive,
    aensure,
    ajoin,
    akeep,
    aspawn,
)
from .._conninfo import describe, parse_conninfo, redact, secrets_of, with_defaults
from .._policy.backoff import Backoff
from .._policy.breaker import Breaker, BreakerOptions
from .._policy.health import Alerts, HealthThresholds
from .._policy.options import PoolOptions, timeout_arg
from .._policy.pool import CHECK, DISCARD, OK, Io, PoolState, Slot
from .._pool_observe import PoolObservability
from ..drivers import get_async_driver
from ..drivers.base import AsyncDriver, ConnStatus
from ..errors import (
    ConfigError,
    ConnectionFailed,
    PoolClosed,
    PoolTimeout,
)
from ..version import ServerVersion
from .maintenance import call_reconnect_failed, close_slots, is_fatal, keepalive, maintain

__all__ = ["AsyncPool"]

logger = logging.getLogger("pgharbor.pool")

Conninfo = str | AStrFactory
Callback = Callable[[Any], Any]

_IDLE = ConnStatus.IDLE
_ALERT_PERIOD = 1.0  # seconds between samples of the alert conditions
_INTRANS = (ConnStatus.INTRANS, ConnStatus.INERROR)
_names = itertools.count(1)
# Pools to forget in a child process after fork (see _after_fork).
_pools: weakref.WeakSet[AsyncPool] = weakref.WeakSet()


class AsyncPool(PoolObservability):
    """A pool of native driver connections.

    ``conninfo`` is a URL or keyword DSN, or a callable (sync or async) that
    returns one at every connection attempt, for credential rotation; so may
    ``password`` be. Connections are in autocommit mode: transactions are
    explicit. Settings are described in :class:`pgharbor.PoolOptions`; every
    time is in seconds. ``breaker=True`` (or a `BreakerOptions`) adds a
    circuit breaker: after repeated connect failures, callers fail fast with
    `CircuitOpen` and no connection is attempted until a probe is due.
    Invalid settings raise `ConfigError` here, at once.

    Use it as a context manager, or call `open` and `close`::

        async with AsyncPool(url, max_size=10, name="main") as pool:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
    """

    def __init__(
        self,
        conninfo: Conninfo = "",
        *,
        driver: str = "psycopg",
        name: str | None = None,
        min_size: int = 5,
        max_size: int | None = None,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float | None = 30 * 60.0,
        max_idle: float | None = 10 * 60.0,
        max_uses: int | None = None,
        check_window: float = 0.5,
        check_timeout: float = 5.0,
        keepalive: float | None = 120.0,
        leak_threshold: float | None = None,
        connect_timeout: float = 10.0,
        reconnect_timeout: float = 5 * 60.0,
        backoff: Backoff | None = None,
        password: str | AStrFactory | None = None,
        kwargs: dict[str, Any] | None = None,
        configure: Callback | None = None,
        reset: Callback | None = None,
        reconnect_failed: Callback | None = None,
        prepared_statements: bool = True,
        minimum_version: int | None = None,
        breaker: BreakerOptions | bool | None = None,
        metrics: Any = None,
        health: HealthThresholds | None = None,
        alerts: Alerts | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if max_size is None:
            max_size = max(min_size, 5) if isinstance(min_size, int) else 5
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
        for field, cb in (
            ("configure", configure),
            ("reset", reset),
            ("reconnect_failed", reconnect_failed),
        ):
            if cb is not None and not callable(cb):
                raise ConfigError(field, "must be callable")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("name", "must be a non-empty string")
        self.name = name or f"pool-{next(_names)}"
        self._conninfo = conninfo
        self._params: dict[str, str] | None = None
        if isinstance(conninfo, str):
            self._params = parse_conninfo(conninfo)
        elif not callable(conninfo):
            raise ConfigError("conninfo", "must be a string or a callable returning one")
        if password is not None and not (isinstance(password, str) or callable(password)):
            raise ConfigError("password", "must be a string or a callable returning one")
        self._password = password
        self._kwargs = {k: str(v) for k, v in (kwargs or {}).items()}
        self._secrets: list[str] = secrets_of({**(self._params or {}), **self._kwargs})
        if isinstance(password, str):
            self._secrets.append(password)
        self._driver: AsyncDriver = get_async_driver(
            driver, prepared_statements=prepared_statements
        )
        if minimum_version is not None and (
            isinstance(minimum_version, bool) or not isinstance(minimum_version, int)
        ):
            raise ConfigError("minimum_version", "must be a major version number, e.g. 13")
        self._minimum_version = minimum_version
        self._version: ServerVersion | None = None
        self._configure = configure
        self._reset = reset
        self._reconnect_failed = reconnect_failed
        if breaker is True:
            breaker = BreakerOptions()
        elif (
            breaker is not None and breaker is not False and not isinstance(breaker, BreakerOptions)
        ):
            raise ConfigError("breaker", "must be True, False, None or a BreakerOptions")
        self._breaker_options = breaker or None
        self._init_observability(metrics, health, alerts, labels)
        self._state = self._new_state()
        self._lock = ALock()
        self._wakeup = AEvent()  # maintenance: there is work to plan
        self._deadlines = ADeadlines()  # expires waiters (one timer, not one each)
        self._progress = AEvent()  # open(wait=True): an attempt finished
        self._opened = False
        self._tasks: set[Any] = set()  # background tasks (threads, in Pool)
        self._pid = os.getpid()
        self._forked = False
        # Take the slow acquire path: after a fork, or to record leak holders.
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
            self._driver.terminate(slot.conn)
        self._wakeup.set_threadsafe()  # the maintenance loop ends
        warnings.warn(
            f"pool {self.name!r} was never closed: call close(), or use it as a "
            "context manager; its idle connections were dropped",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )

    async def __aenter__(self) -> AsyncPool:
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

        Raises:
            PoolTimeout: ``min_size`` connections could not be opened within
                ``timeout`` (default: the pool's ``timeout``); the last connect
                error is the cause.
            PoolClosed: the pool was closed; pools are not reopened.
        """
        timeout = timeout_arg(timeout)
        if self._state.closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        if not self._opened:
            self._opened = True
            # Sinks meet the pool when it opens (and forget it when it
            # closes): a pool never opened leaves no stale series behind.
            self._start_observers()
            akeep(self._spawn(maintain, weakref.ref(self)))
        if wait:
            await self.wait(timeout)

    async def wait(self, timeout: float | None = None) -> None:
        """Block until ``min_size`` connections are open.

        Raises:
            PoolTimeout: not within ``timeout`` (default: the pool's timeout).
        """
        timeout = timeout_arg(timeout)
        timeout = self.options.timeout if timeout is None else timeout
        deadline = monotonic() + timeout
        while True:
            # Clear before looking, so a connection that joins in between
            # still wakes us (threads).
            self._progress.clear()
            st = self._state
            if st.closed:
                raise PoolClosed(f"pool {self.name!r} is closed")
            if st.size >= self.options.min_size:
                return
            if st.failures and is_fatal(st.last_error):
                # Waiting cannot help (wrong password, no such database...).
                assert st.last_error is not None
                raise st.last_error
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise self._timeout_error(
                    f"pool {self.name!r} could not open {self.options.min_size} "
                    f"connections within {timeout:.2f} s"
                )
            await self._progress.wait_timeout(remaining)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool.

        Waiters get `PoolClosed` at once; idle connections are closed;
        connections still in use are closed when they are returned. Returns
        within about ``timeout`` seconds whatever the network does. Idempotent.
        """
        deadline = monotonic() + (timeout_arg(timeout) or 0.0)
        with self._lock:
            io = self._state.close()
        self._wakeup.set()
        self._perform(io)
        # Background work winds down by itself once the state is closed;
        # connections that finish opening meanwhile are closed at once.
        while monotonic() < deadline:
            running = [t for t in list(self._tasks) if aalive(t)]
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
        self._stop_observers()

    def connection(self, timeout: float | None = None) -> _ConnectionContext:
        """Context manager lending a connection: ``async with pool.connection() as conn``.

        On exit the connection goes back to the pool: rolled back if a
        transaction was left open, discarded if broken. Waits up to
        ``timeout`` (default: the pool's) for a connection.

        Raises:
            PoolTimeout: no connection within the timeout.
            TooManyRequests: ``max_waiting`` callers are already queued.
            CircuitOpen: the breaker (``breaker=``) is open and no connection
                is open: failing fast, with ``retry_after``.
            ConnectionFailed: connecting fails in a way retrying cannot fix
                (authentication, missing database) and no connection is open.
            PoolClosed: the pool is closed, or closes while waiting.
        """
        if timeout is not None:
            timeout = timeout_arg(timeout)
        return _ConnectionContext(self, timeout)

    async def acquire(self, timeout: float | None = None) -> Any:
        """Take a connection; every `acquire` needs a matching `release`.

        Prefer `connection`, which cannot forget to give it back. Raises as
        `connection` does.
        """
        if timeout is not None:
            timeout = timeout_arg(timeout)
        slot: Slot | None = None
        if not self._slow and not self._state.waiters:  # (see _ConnectionContext)
            with self._lock:
                slot = self._state.checkout(monotonic())
        if slot is None or slot.verdict:
            slot = await self._acquire_slow(slot, timeout, not self._slow)
        elif self._obs is not None:
            self._obs.acquired(slot.conn, 0.0)
        return slot.conn

    async def release(self, conn: Any) -> None:
        """Give back a connection taken with `acquire`.

        Raises:
            ValueError: ``conn`` is not currently lent out by this pool.
        """
        slot = self._state.owns(conn)
        if slot is None or not slot.in_use or slot.conn is not conn:
            raise ValueError(f"connection {conn!r} is not lent out by pool {self.name!r}")
        if not self._put_back(slot):
            await self._release_slot(slot)

    @property
    def target(self) -> str:
        """Where connections go, ``host:port/dbname as user`` — never a secret."""
        if self._params is None:
            return "(conninfo from a callable)"
        return describe({**self._params, **self._kwargs})

    def stats(self) -> dict[str, int | float]:
        """Sizes and counters: ``size``, ``idle``, ``in_use``, ``connecting``,
        ``waiting``, ``min_size``, ``max_size``, ``acquired``, ``waited``,
        ``wait_ms``, ``wait_p50_ms``, ``wait_p99_ms``, ``usage_ms``,
        ``timeouts``, ``rejected``, ``connections_created``, ``connect_ms``,
        ``connections_failed``, ``connections_lost``, ``connections_expired``,
        ``checks``, ``checks_failed``, ``leaks``, ``breaker_open``,
        ``breaker_opened`` (see docs/observability.md)."""
        with self._lock:
            return self._state.stats()

    async def check(self) -> None:
        """Ping every idle connection now; discard the dead, refill the pool."""
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
            ok = await self._ping(slot)
            with self._lock:
                after: Io | None
                if ok:
                    self._state.check_passed(slot, monotonic())
                    after = self._state.checkin(slot, monotonic(), healthy=True)
                else:
                    after = self._state.check_failed(slot, monotonic())
            if after is not None:
                self._perform(after)

    async def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change the sizes at runtime (validated first; nothing changes on error).

        Growing opens connections in the background; shrinking closes idle
        connections now and in-use ones as they are returned.
        """
        options = self.options.with_sizes(min_size, max_size)
        self.options = options
        with self._lock:
            io = self._state.resize(options)
        self._perform(io)

    async def drain(self) -> None:
        """Replace every connection: idle ones now, in-use ones when returned;
        new connections are opened in the background."""
        with self._lock:
            io = self._state.drain()
        self._perform(io)

    def _nudge(self) -> None:
        """The server answered someone else (the topology's probe): stop
        waiting out the reconnect backoff."""
        with self._lock:
            io = self._state.nudge(monotonic())
        if io is not None:
            self._perform(io)

    # -- the hot path ------------------------------------------------------------

    # The fast paths live in `acquire`, `release` and `_ConnectionContext`:
    # pop an idle connection that needs no check and hand it over; take back
    # a clean one. Everything else comes here.

    async def _acquire_slow(
        self, slot: Slot | None, timeout: float | None, tried: bool = False
    ) -> Slot:
        """Acquire, starting from ``slot`` (popped by a fast path, maybe None;
        ``tried``: the fast path found no idle connection just now)."""
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
                waiter = self._enqueue(started)
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
                    raise waiter.error
                slot = waiter.value
                assert slot is not None
                if slot.verdict != OK:
                    continue  # an idle one enqueue handed over: its verdict applies
            elif slot.verdict != OK:
                if slot.verdict == CHECK:
                    try:
                        alive = await self._ping(slot)
                    except BaseException:
                        # Cancelled mid-ping: the connection's state is unknown.
                        with self._lock:
                            io = st.discard(slot, monotonic())
                        self._perform(io)
                        raise
                    if not alive:
                        with self._lock:
                            io = st.check_failed(slot, monotonic())
                        self._perform(io)
                        slot = None
                        continue
                    with self._lock:
                        st.check_passed(slot, monotonic())
                else:
                    with self._lock:
                        io = st.discard(slot, monotonic())
                    self._perform(io)
                    slot = None
                    continue
            if self.options.leak_threshold is not None:
                slot.holder = sys._getframe(2)
            if self._obs is not None:
                self._obs.acquired(slot.conn, monotonic() - started)
            return slot

    def _put_back(self, slot: Slot) -> bool:
        """Take back a clean connection with no I/O; False if it needs cleaning."""
        if (
            self._driver.status(slot.conn) is not _IDLE
            or self._reset is not None
            or slot.leak_reported
        ):
            return False
        now = monotonic()
        if self._obs is not None:
            self._obs.released(slot.conn, now - slot.acquired_at)
        with self._lock:
            io = self._state.checkin(slot, now, True)
        if io is not None:
            self._perform(io)
        return True

    async def _release_slot(self, slot: Slot) -> None:
        # Unhealthy unless cleaning completes: a rollback interrupted (by
        # cancellation, say) leaves the connection in an unknown state.
        healthy = False
        try:
            status = self._driver.status(slot.conn)
            if status is not _IDLE or self._reset is not None:
                healthy = await self._clean(slot, status)
            else:
                healthy = True
        finally:
            # Runs even when cancelled mid-rollback: the slot is never lost.
            now = monotonic()
            if self._obs is not None:
                self._obs.released(slot.conn, now - slot.acquired_at)
            with self._lock:
                io = self._state.checkin(slot, now, healthy)
            if slot.leak_reported:
                logger.warning(
                    "pool %r: connection #%d reported as leaked was returned after %.1f s",
                    self.name,
                    slot.id,
                    monotonic() - slot.acquired_at,
                )
            if io is not None:
                self._perform(io)

    def _enqueue(self, since: float) -> AWaiter:
        """Join the FIFO queue (or be handed an idle connection at once)."""
        if self._state.closed or not self._opened:
            raise PoolClosed(f"pool {self.name!r} is {'closed' if self._opened else 'not open'}")
        waiter = self._deadlines.waiter(since)
        with self._lock:
            io = self._state.enqueue(waiter, monotonic())
        if io is not None:
            self._perform(io)  # a hand-off of an idle connection, or a wake-up
        if self._alerts is not None:
            self._sample_alerts()
        return waiter

    def _timed_out(self, waiter: AWaiter, timeout: float) -> bool:
        """The wait timed out: leave the queue and raise `PoolTimeout`; or
        return True when a connection was handed over as the timer fired."""
        with self._lock:
            gone = self._state.dequeue(waiter, timed_out=True)
        if not gone:
            return True
        if self._obs is not None:
            self._obs.timed_out(timeout)
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
                await self._release_slot(waiter.value)

    async def _clean(self, slot: Slot, status: ConnStatus) -> bool:
        """Make a returned connection reusable; False if it must be discarded."""
        conn = slot.conn
        if status is not _IDLE:
            if status not in _INTRANS:
                return False  # broken, or a COPY still running
            self._state.n_returned_dirty += 1
            try:
                await self._driver.rollback(conn, self.options.check_timeout)
            except Exception as exc:
                logger.warning("pool %r: rollback on return failed: %s", self.name, self._safe(exc))
                return False
        if self._reset is not None:
            try:
                await aensure(self._reset, conn)
            except Exception as exc:
                logger.warning("pool %r: reset callback failed: %s", self.name, self._safe(exc))
                return False
            if self._driver.status(conn) is not _IDLE:
                logger.warning("pool %r: reset callback left a transaction open", self.name)
                return False
        return True

    async def _ping(self, slot: Slot) -> bool:
        started = monotonic()
        try:
            await self._driver.ping(slot.conn, self.options.check_timeout)
        except Exception as exc:
            text = self._safe(exc)
            logger.info("pool %r: connection #%d failed its check: %s", self.name, slot.id, text)
            self._record("check", started, text)
            if self._obs is not None:
                self._obs.check_failed(ConnectionFailed(text))
            return False
        self._record("check", started, None)
        return True

    def _perform(self, io: Io) -> None:
        """Carry out what a state change asked for. Never blocks on the network:
        closing and pinging run in the background."""
        for waiter, slot in io.handoff:
            waiter.set(slot)
        for waiter, error in io.fail:
            waiter.fail(error)
        if io.close:
            self._spawn(close_slots, self, io.close)
        if io.ping:
            self._spawn(keepalive, self, io.ping)
        for slot in io.leaks:
            self._report_leak(slot)
        if io.reconnect_failed and self._reconnect_failed is not None:
            self._spawn(call_reconnect_failed, self)
        if io.wake:
            self._wakeup.set()

    def _spawn(self, fn: ATaskFn, *args: Any) -> Any:
        return aspawn(
            fn,
            *args,
            name=f"pgharbor-{self.name}-{fn.__name__.strip('_')}",
            group=self._tasks,
        )

    # -- background work (see maintenance.py) -----------------------------------------

    async def _connect_params(self) -> dict[str, str]:
        params = self._params
        if params is None:
            assert callable(self._conninfo)
            params = parse_conninfo(await aensure(self._conninfo))
        params = {**params, **self._kwargs}
        if self._password is not None:
            password = self._password
            params["password"] = password if isinstance(password, str) else await aensure(password)
        return with_defaults(params, connect_timeout=self.options.connect_timeout)

    # -- reporting -----------------------------------------------------------------

    def _safe(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._secrets)

    def _new_state(self) -> PoolState:
        options = self._breaker_options
        breaker = Breaker(options) if options is not None else None
        return PoolState(self.options, breaker=breaker, name=self.name)

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

    def _report_leak(self, slot: Slot) -> None:
        frame = slot.holder
        where = "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)\n"
        logger.warning(
            "pool %r: connection #%d held for more than %.1f s; the holder is now at:\n%s",
            self.name,
            slot.id,
            self.options.leak_threshold,
            where.rstrip(),
        )

    def _after_fork(self) -> None:
        """In a child process: forget the parent's connections without touching
        their sockets (closing them would end the parent's sessions)."""
        _orphans.extend(s.conn for s in self._state.slots.values())
        self._state = self._new_state()
        self._tasks = set()
        self._pid = os.getpid()
        self._forked = False
        self._slow = self.options.leak_threshold is not None
        self._lock = ALock()
        self._wakeup = AEvent()
        self._progress = AEvent()
        self._deadlines = ADeadlines()
        if self._opened:
            akeep(self._spawn(maintain, weakref.ref(self)))


# Connections inherited from a parent process: kept referenced so that no
# destructor ever sends a Terminate message on the parent's socket.
_orphans: list[Any] = []


def _mark_forked() -> None:
    for pool in list(_pools):
        pool._forked = pool._slow = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


class _ConnectionContext:
    """What `AsyncPool.connection` returns (a class, not a generator: cheaper)."""

    __slots__ = ("_pool", "_slot", "_timeout")

    def __init__(self, pool: AsyncPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._slot: Slot | None = None

    async def __aenter__(self) -> Any:
        pool = self._pool
        slot: Slot | None = None
        # With callers queued there is no idle connection to take (they would
        # have it): join the queue at once (enqueue hands over one if there is).
        if not pool._slow and not pool._state.waiters:
            with pool._lock:
                slot = pool._state.checkout(monotonic())
        if slot is None or slot.verdict:
            slot = await pool._acquire_slow(slot, self._timeout, not pool._slow)
        elif pool._obs is not None:
            pool._obs.acquired(slot.conn, 0.0)
        self._slot = slot
        return slot.conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        if slot is not None:
            self._slot = None
            if not self._pool._put_back(slot):
                await self._pool._release_slot(slot)
