"""`AsyncAutoscaler`: the shell of a pool that sizes itself. Source of the
generated `Autoscaler`.

The decision is pure (`pgharbor._policy.autoscale.AutoscalePolicy`); this
shell feeds it and carries it out, in the pool's housekeeper:

- ``tick`` — called by the ``Maintain`` loop each time it wakes — samples the
  pool at most every `Autoscale.interval` seconds while there is load, applies
  a new target with `PoolState.retarget` and reports it (a ``resize`` event,
  an INFO log line). An idle pool at its floor is not sampled: ``tick`` asks
  the core to wake the loop for the next caller that has to wait
  (`PoolState.wake_on_wait`), and until then adds no wake-up of its own.
- ``read_room`` — called by ``Connect`` on each new connection, before it
  joins the pool — reads how many connections the server has left
  (`pgharbor.facts.ROOM_QUERY`, one round trip) for the policy's cap.

It knows the pool only through the objects the pool hands it, like the
housekeeper.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

from .._acompat import ALock
from .._observe import PoolObservation
from .._policy.autoscale import Autoscale, AutoscalePolicy, AutoscaleStatus, Decision
from .._policy.pool import Io, PoolState
from ..drivers import get_async_queries
from ..drivers.base import ConnStatus
from ..drivers.query import AsyncQueries
from ..errors import ConnectionFailed
from ..facts import ROOM_QUERY, parse_room
from .connector import AsyncConnector

__all__ = ["AsyncAutoscaler"]

logger = logging.getLogger("pgharbor.pool")


class AsyncAutoscaler:
    """Samples a pool's demand, applies the policy's target, reads the
    server's room.

    Args:
        options: the `Autoscale` settings.
        name: the pool's name (messages).
        state: the pool's `PoolState` (made with ``autoscale=True``).
        lock: the lock that guards ``state`` (and the policy).
        connector: the pool's connector (its driver runs the room query).
        observation: the pool's observation (``resize`` events).
    """

    def __init__(
        self,
        options: Autoscale,
        *,
        name: str,
        state: PoolState,
        lock: ALock,
        connector: AsyncConnector,
        observation: PoolObservation,
    ) -> None:
        self.name = name
        self.state = state
        self.lock = lock
        self.connector = connector
        self.observation = observation
        self.policy = AutoscalePolicy(options)
        self._due: float | None = None  # the next sample; None: asleep
        self._queries: AsyncQueries | None = None
        if options.server_room:
            # The room query runs through the driver's query adapter; a driver
            # object without one (a test fake) leaves the cap at max_size.
            try:
                self._queries = get_async_queries(getattr(connector.driver, "name", ""))
            except Exception:
                self._queries = None
        self._room_failed = False

    def tick(self, now: float) -> tuple[Io | None, float | None]:
        """Sample if one is due and apply what the policy decides. Returns
        the I/O to perform and when to tick next (None: not until woken)."""
        st = self.state
        decision: Decision | None = None
        with self.lock:
            if self._due is None:
                if not st.waiters and not self._above_floor():
                    # Idle at the floor: sleep until a caller has to wait.
                    st.wake_on_wait = True
                    return None, None
            elif now < self._due:
                return None, self._due  # woken for something else
            decision = self.policy.sample(st, now)
            io = st.retarget(decision.target) if decision is not None else None
            self._due = self.policy.next_at(st, now)
            st.wake_on_wait = self._due is None
        if decision is not None:
            self.observation.resized(
                decision.target, decision.previous, decision.reason, decision.detail
            )
        return io, self._due

    async def read_room(self, conn: Any) -> None:
        """Read what the server leaves on a new connection (one round trip).

        A failure is logged once and the cap stays as it was; a connection
        the failure left unusable is closed and `ConnectionFailed` raised,
        so the attempt counts as failed.
        """
        queries = self._queries
        if queries is None or self._room_failed:
            return
        try:
            row = await queries.fetchrow(conn, ROOM_QUERY.sql, None, self.connector.check_timeout)
            room = parse_room(row or ())
        except BaseException as exc:
            if not isinstance(exc, Exception) or (
                self.connector.driver.status(conn) is not ConnStatus.IDLE
            ):
                # Cancelled, or the connection is in no state to be lent.
                self.connector.terminate(conn)
                if not isinstance(exc, Exception):
                    raise
                raise ConnectionFailed(
                    f"pool {self.name!r}: reading the server's connection limits failed: "
                    f"{self.connector.safe(exc)}"
                ) from None
            self._room_failed = True
            logger.warning(
                "pool %r: cannot read the server's connection limits (%s); the autoscaled "
                "size is capped by max_size only",
                self.name,
                self.connector.safe(exc),
            )
            return
        with self.lock:
            # The pool's own: its open connections and those on their way (this
            # one among them). Siblings opened alongside may not have reached
            # the server yet: counting them errs towards room, which a refusal
            # as full corrects; leaving out those that have would count them
            # twice, and a pool growing in a burst would cap itself low.
            st = self.state
            self.policy.note_room(room.free, len(st.slots) + st.connecting)

    def status(self) -> AutoscaleStatus:
        """Where the pool stands: target, cap, demand, the last change and why."""
        with self.lock:
            return self.policy.status(self.state, monotonic())

    def stats(self) -> dict[str, int | float]:
        """The autoscaler's numbers for the pool's ``stats()``."""
        with self.lock:
            return self.policy.stats(self.state, monotonic())

    def _above_floor(self) -> bool:
        st = self.state
        target = st.target if st.target is not None else st.options.min_size
        return target > st.options.min_size or st.size > target
