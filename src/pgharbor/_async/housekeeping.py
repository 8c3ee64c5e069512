"""`AsyncHousekeeper`: the background work of a pool. Source of the generated
`Housekeeper`.

The pure core (`pgharbor._policy.pool.PoolState`) decides; the housekeeper
carries out what it decides (`perform`, an `Io` at a time) and runs the
background work as a few named tasks (threads, in the sync flavour), as
HikariCP's ``HouseKeeper`` and psycopg's ``MaintenanceTask`` do:

- ``Maintain``: one loop per pool. It starts connection attempts when the
  core plans them, retires expired and surplus idle connections, hands idle
  ones to ``Keepalive``, reports leaks, samples alerts. It sleeps until
  something can change — the next deadline the core names, or a wake-up —
  and never earlier: with the database down and the breaker open it sleeps
  until the breaker lets a probe through.
- ``Connect``: one connection attempt (the core reserved it).
- ``Reach``: while the pool fails to connect and callers wait, a TCP probe
  every `REACH_INTERVAL` seconds (every `REACH_IDLE_INTERVAL` while only the
  breaker is open); when the server accepts again, the next attempt runs at
  once instead of after the rest of the backoff delay, so a waiting caller
  is served soon after the server is back, however long it was down.
- ``Close``, ``Keepalive``, ``ReconnectFailed``: as named.

An autoscaled pool's `AsyncAutoscaler` rides along: ``Maintain`` lets it
sample (it says when next, or not at all while the pool is idle at its
floor), and ``Connect`` lets it read the server's room on each new connection.

It knows the pool only through the objects the pool hands it (its state,
lock, connector and observation) and never imports it.
"""

from __future__ import annotations

import logging
import traceback
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Any

from .._acompat import AEvent, ALock, ATaskFn, aensure, akeep, asleep, aspawn
from .._observe import PoolObservation
from .._policy.pool import Io, PoolState, Slot
from .._policy.sqlstate import is_refusal
from ..errors import ConnectionFailed
from .autoscaler import AsyncAutoscaler
from .connector import AsyncConnector, is_fatal

__all__ = ["REACH_INTERVAL", "AsyncHousekeeper"]

logger = logging.getLogger("pgharbor.pool")

#: Seconds between two samples of the alert conditions.
ALERT_PERIOD = 1.0
#: Seconds between two reachability probes of a server that is down, while
#: callers wait; and while only the breaker is open (nobody waits: a slower
#: watch, so an idle pool whose server is down stays nearly free).
REACH_INTERVAL = 0.05
REACH_IDLE_INTERVAL = 0.25
#: Bound on one reachability probe (a blackholed server answers nothing).
REACH_TIMEOUT = 1.0


class AsyncHousekeeper:
    """Performs the core's decisions and runs a pool's background tasks.

    Args:
        name: the pool's name (tasks and messages).
        state: the pool's `PoolState` (replaced, with a new housekeeper,
            after a fork).
        lock: the lock that guards ``state``.
        connector: opens, pings and closes connections.
        observation: the pool's observation (health, hooks, metrics).
        reconnect_failed: the user's callback, called with ``owner()``.
        owner: a weak reference to the pool, for that callback only.
        on_stop: a weak method (called, it gives the function or None) to
            call if the maintenance loop is stopped while the pool is open:
            its event loop ended under it.
        autoscaler: an autoscaled pool's `AsyncAutoscaler`, or None.
    """

    def __init__(
        self,
        *,
        name: str,
        state: PoolState,
        lock: ALock,
        connector: AsyncConnector,
        observation: PoolObservation,
        reconnect_failed: Any = None,
        owner: weakref.ref[Any] | None = None,
        on_stop: Callable[[], Callable[[], None] | None] | None = None,
        autoscaler: AsyncAutoscaler | None = None,
    ) -> None:
        self.name = name
        self.state = state
        self.lock = lock
        self.connector = connector
        self.observation = observation
        self._reconnect_failed = reconnect_failed
        self._owner = owner
        self._on_stop = on_stop
        self.autoscaler = autoscaler
        self.wakeup = AEvent()  # Maintain: there is work to plan
        self.progress = AEvent()  # an attempt finished (open(wait=True) listens)
        self.tasks: set[Any] = set()  # running background tasks (threads, in Pool)
        self._reaching = False  # a Reach task is running

    def start(self) -> None:
        """Start the maintenance loop. It ends by itself once the state is closed."""
        akeep(self.spawn(self.maintain))

    def spawn(self, fn: ATaskFn, *args: Any) -> Any:
        """Run ``fn(*args)`` as one of the pool's background tasks."""
        return aspawn(
            fn,
            *args,
            name=f"pgharbor-{self.name}-{fn.__name__.strip('_').title()}",
            group=self.tasks,
        )

    def perform(self, io: Io) -> None:
        """Carry out what a state change asked for. Never blocks on the
        network: closing and pinging run in the background."""
        for waiter, slot in io.handoff:
            waiter.set(slot)
        for waiter, error in io.fail:
            waiter.fail(error)
        if io.close:
            self.spawn(self.close, io.close)
        if io.ping:
            self.spawn(self.keepalive, io.ping)
        for slot in io.leaks:
            self._report_leak(slot)
        if io.reconnect_failed and self._reconnect_failed is not None:
            self.spawn(self.reconnect_failed)
        if io.wake:
            self.wakeup.set()

    # -- the named tasks ---------------------------------------------------------

    async def maintain(self) -> None:
        """Maintain: plan connects, retire, keep alive, report leaks; sleep
        until the core's next deadline or a wake-up."""
        try:
            await self._maintain()
        except BaseException:
            # Cancelled with the pool still open: its event loop is ending
            # (asyncio.run() cancels what is left). Tell the pool.
            stop = self._on_stop() if self._on_stop is not None else None
            if not self.state.closed and stop is not None:
                stop()
            raise

    async def _maintain(self) -> None:
        st, observation = self.state, self.observation
        while not st.closed:
            self.wakeup.clear()
            now = monotonic()
            with self.lock:
                n, retry_at = st.plan_connects(now)
                io, due = st.maintain(now)
                reach = not self._reaching and st.wants_probe() and self._probe_helps()
                if reach:
                    self._reaching = True
            for _ in range(n):
                self.spawn(self.connect)
            if reach:
                self.spawn(self.reach)
            self.perform(io)
            observation.note_breaker(st)
            scaled_at = None
            if self.autoscaler is not None:
                scaled, scaled_at = self.autoscaler.tick(now)
                if scaled is not None:
                    self.perform(scaled)
            wake_at = min((t for t in (retry_at, due, scaled_at) if t is not None), default=None)
            if observation.alerts is not None:
                observation.sample_alerts()
                wake_at = min(wake_at or now + ALERT_PERIOD, now + ALERT_PERIOD)
            await self.wakeup.wait_timeout(None if wake_at is None else wake_at - monotonic())

    async def connect(self) -> None:
        """Connect: one attempt the core reserved; the connection joins the pool."""
        started = monotonic()
        try:
            conn = await self.connector.connect()
            if self.autoscaler is not None:
                await self.autoscaler.read_room(conn)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else ConnectionFailed("cancelled")
            with self.lock:
                io = self.state.connect_failed(error, monotonic(), is_fatal(error))
            logger.warning("pool %r: connection attempt failed: %s", self.name, error)
            self.observation.connect_failed(started, error)
            self.observation.note_breaker(self.state)
            self.progress.set()
            self.perform(io)
            if not isinstance(exc, Exception):
                raise
            return
        watch = self.connector.watch(conn)
        now = monotonic()
        with self.lock:
            io = self.state.connected(conn, now, now - started, watch)
        self.observation.connected(started, conn, now - started)
        self.observation.note_breaker(self.state)
        self.progress.set()
        self.perform(io)

    async def reach(self) -> None:
        """Reach: probe the server while it is down and someone needs it;
        bring the next attempt forward as soon as it accepts connections."""
        try:
            while True:
                with self.lock:
                    if not self.state.wants_probe():
                        return
                if await self.connector.reachable(REACH_TIMEOUT):
                    with self.lock:
                        io = self.state.reached(monotonic())
                    if io is not None:
                        self.perform(io)
                await asleep(REACH_INTERVAL if self.state.waiters else REACH_IDLE_INTERVAL)
        finally:
            self._reaching = False
            self.wakeup.set()  # Maintain decides whether to probe on

    async def close(self, slots: list[Slot]) -> None:
        """Close: end connections the core removed, one after the other (each
        close is bounded and sends one message)."""
        for slot in slots:
            self.observation.removed(slot.conn, slot.reason)
            await self.connector.close(slot.conn)

    async def keepalive(self, slots: list[Slot]) -> None:
        """Keepalive: ping idle connections; each comes back, or is closed."""
        pending = list(slots)
        try:
            while pending:
                slot = pending[0]
                ok = False
                try:
                    ok = await self.ping(slot)
                finally:
                    # Even when cancelled (at close): a slot taken out for a
                    # ping always comes back, or is closed.
                    pending.pop(0)
                    with self.lock:
                        io = self.state.ping_done(slot, monotonic(), ok)
                    if io is not None:
                        self.perform(io)
        finally:
            for slot in pending:  # not pinged: as good as they were
                with self.lock:
                    io = self.state.ping_done(slot, monotonic(), True)
                if io is not None:
                    self.perform(io)

    async def reconnect_failed(self) -> None:
        """ReconnectFailed: the user's callback, with the pool."""
        pool = self._owner() if self._owner is not None else None
        if pool is None:
            return
        try:
            await aensure(self._reconnect_failed, pool)
        except Exception:
            logger.exception("pool %r: reconnect_failed callback raised", self.name)

    async def ping(self, slot: Slot) -> bool:
        """Ping one connection (a checkout check or a keepalive); whether it answered."""
        started = monotonic()
        error = await self.connector.ping(slot.conn)
        if error is not None:
            logger.info("pool %r: connection #%d failed its check: %s", self.name, slot.id, error)
        self.observation.checked(started, error)
        return error is None

    # -- internals ------------------------------------------------------------------

    def _probe_helps(self) -> bool:
        """A TCP probe is news only when the last attempt got no TCP session
        at all (refused, unreachable, timed out): a server that accepted and
        then failed the session accepts the probe too."""
        error = self.state.last_error
        return isinstance(error, ConnectionFailed) and (
            error.reason == "timeout" or is_refusal(str(error))
        )

    def _report_leak(self, slot: Slot) -> None:
        frame = slot.holder
        where = "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)\n"
        logger.warning(
            "pool %r: connection #%d held for more than %.1f s; the holder is now at:\n%s",
            self.name,
            slot.id,
            self.state.options.leak_threshold,
            where.rstrip(),
        )
