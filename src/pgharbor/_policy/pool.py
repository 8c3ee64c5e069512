"""The pool's brain: bookkeeping and decisions, with no I/O and no clock.

`PoolState` owns every fact about a pool — idle connections, how many are in
use or being opened, who is waiting, which connections are suspect, when the
next connect attempt may run — and makes every decision from them. It never
sleeps, never touches a socket and never reads the clock: callers pass ``now``.
A method that changes state *returns* the I/O the caller must perform after
releasing its lock (an `Io`): connections to close, waiters to hand a
connection to or to fail, whether to start opening connections.

The async and sync shells (`pgharbor._async.pool`, generated `_sync`) are thin
drivers of this object, so both flavours share one tested brain.

Connection life cycle::

    connecting ──ok──> idle <──checkin── in use
        │                │ ──checkout──>   │
        └─fail─> backoff │                 └─broken/expired──> closed
                         └─expired/stale/trimmed──> closed

Staleness uses epochs. Every slot remembers the epoch it was born (or last
validated) in. Seeing one broken connection makes every older idle slot
*suspect* (validated at its next checkout whatever its idle time); a failed
validation makes every older slot *stale* (discarded without another check), so
after a server restart one acquire pays for at most one failed check.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from ..errors import CircuitOpen, PoolClosed, TooManyRequests
from .breaker import Breaker
from .options import PoolOptions

if TYPE_CHECKING:
    from .._typing import PoolStats

__all__ = ["CHECK", "DISCARD", "OK", "Io", "PoolState", "Slot"]

_UNLIMITED = 1 << 62

#: Checkout verdicts.
OK: Final = 0
CHECK: Final = 1
DISCARD: Final = 2


def _starting(error: BaseException) -> bool:
    """A failed attempt the server answered with "starting up" (or "shutting
    down": a restart's first half)."""
    return getattr(error, "reason", None) == "server-starting"


class Slot:
    """One pooled connection and what the pool knows about it."""

    __slots__ = (
        "acquired_at",
        "conn",
        "created_at",
        "epoch",
        "expires_at",
        "fresh_until",
        "holder",
        "id",
        "in_use",
        "last_used",
        "leak_reported",
        "owner",
        "raw",
        "reason",
        "released_by",
        "uses",
        "verdict",
        "watch",
    )

    def __init__(self, conn: Any, id: int, epoch: int, now: float, expires_at: float) -> None:
        self.conn = conn
        self.id = id
        self.epoch = epoch
        self.created_at = now
        self.expires_at = expires_at
        # Until when a checkout may skip every check: the earlier of expiry and
        # the end of the validation window (kept by PoolState).
        self.fresh_until = now
        self.last_used = now
        self.acquired_at = 0.0
        self.uses = 0
        self.in_use = False
        self.verdict = OK
        # Leak detection (shell-owned): where the holder acquired it, or None.
        self.holder: Any = None
        self.leak_reported = False
        # Shell-owned: the checkout check (no round trip); who holds the
        # current lease through acquire() and who held the previous one (a
        # stale second release is told apart by them); lent raw, so a reset
        # is due at return.
        self.watch: Any = None
        self.owner: Any = None
        self.released_by: Any = None
        self.raw = False
        # Why it left the pool (see pgharbor.metrics.REMOVE_REASONS), once it has.
        self.reason = ""

    def __repr__(self) -> str:
        state = "in use" if self.in_use else "idle"
        return f"<Slot #{self.id} {state} uses={self.uses}>"


# Shared, never mutated: an Io only allocates the lists it uses (most carry
# one handoff or nothing), which matters on the release path.
_EMPTY: Final[list[Any]] = []
#: How many recent waits the wait percentiles look at.
RECENT_WAITS: Final = 1024
#: Seconds between two connection attempts brought forward by `reached`.
MIN_ATTEMPT_GAP: Final = 0.1
#: The longest wait before trying again a server that said it is starting up
#: (or shutting down): it answers, and will be ready in moments, so neither
#: the backoff nor the breaker makes callers wait longer than this.
STARTING_RETRY: Final = 0.25
#: While callers want a connection and the pool fails to connect, the next
#: attempt runs at most this long after the last one, whatever the backoff
#: or the breaker says: a server that came back behind something that
#: accepts connections for it (a proxy, a load balancer), where a TCP probe
#: tells nothing, serves them within this. Ten attempts a second at most,
#: and only while someone waits or asks.
DEMAND_RETRY: Final = 0.1


class Io:
    """I/O a state change asks for; performed by the caller outside its lock.

    The fields default to class attributes (empty, shared, never mutated: the
    ``to_*`` methods give an instance its own list), so making one costs no
    more than the fields a state change actually sets (hot: every hand-off).
    """

    #: connections to close (already removed from the pool's accounting)
    close: list[Slot] = _EMPTY
    #: (waiter, slot): hand the slot to the waiter
    handoff: list[tuple[Any, Slot]] = _EMPTY
    #: (waiter, error): fail the waiter
    fail: list[tuple[Any, BaseException]] = _EMPTY
    #: idle connections taken out for a background keepalive ping
    ping: list[Slot] = _EMPTY
    #: in-use connections held past the leak threshold (report once each)
    leaks: list[Slot] = _EMPTY
    #: wake the maintenance loop (connections to open, or a new deadline)
    wake: bool = False
    #: the pool has been failing to connect for reconnect_timeout
    reconnect_failed: bool = False

    def to_close(self, slot: Slot) -> None:
        if self.close:
            self.close.append(slot)
        else:
            self.close = [slot]

    def to_hand(self, waiter: Any, slot: Slot) -> None:
        if self.handoff:
            self.handoff.append((waiter, slot))
        else:
            self.handoff = [(waiter, slot)]

    def to_fail(self, waiter: Any, error: BaseException) -> None:
        if self.fail:
            self.fail.append((waiter, error))
        else:
            self.fail = [(waiter, error)]

    def to_ping(self, slot: Slot) -> None:
        if self.ping:
            self.ping.append(slot)
        else:
            self.ping = [slot]

    def to_report(self, slot: Slot) -> None:
        if self.leaks:
            self.leaks.append(slot)
        else:
            self.leaks = [slot]


class PoolState:
    """Bookkeeping and decisions for one pool. Not thread-safe: the shell locks.

    Waiters are opaque to the core, except for their ``since`` attribute (when
    they started waiting), which the stats count when they are served.

    Invariants (checked by `check_invariants`, and by the Hypothesis state
    machine in the tests): ``size == idle + in_use + pinging``, ``size +
    connecting <= max_size``, every waiter is waiting only while no idle
    connection is available.
    """

    def __init__(
        self,
        options: PoolOptions,
        rng: random.Random | None = None,
        *,
        breaker: Breaker | None = None,
        name: str = "pool",
        autoscale: bool = False,
    ) -> None:
        self.options = options
        self.name = name
        self.breaker = breaker
        # Autoscaled (see pgharbor._policy.autoscale): the size the pool keeps,
        # in [min_size, max_size], set by `retarget`; waiters do not grow the
        # pool beyond it. None: min_size kept, grown on demand to max_size.
        self.target: int | None = options.min_size if autoscale else None
        # The next caller that has to wait wakes the maintenance loop (the
        # autoscaler asks for it when it stops sampling an idle pool).
        self.wake_on_wait = False
        self._max_uses = options.max_uses or _UNLIMITED
        self._rng = rng or random.Random()
        self.idle: deque[Slot] = deque()  # right end = most recently returned (LIFO)
        # Lend the least recently returned first (psycopg_pool's FIFO order,
        # for the drop-in): every connection gets used in turn.
        self.fifo = False
        # At most this many connection attempts at once (0: no limit beyond
        # the size; psycopg_pool's ``num_workers``, for the drop-in).
        self.max_connecting = 0
        # Beyond min_size, open one connection per waiting caller (asyncpg's
        # pool, for its drop-in) instead of one at a time.
        self.grow_per_waiter = False
        # A connection found dead says nothing of its idle siblings (each
        # has its own checkout check): psycopg_pool's rule, for its drop-in.
        self.lost_alone = False
        self.slots: dict[int, Slot] = {}  # id(conn) -> slot, for every open connection
        self.waiters: deque[Any] = deque()
        self.in_use = 0
        self.pinging = 0
        self.connecting = 0
        self.closed = False
        self._next_id = 0
        # Epochs: a slot older than validate_below is suspect; older than
        # discard_below, stale. validate_below >= discard_below always, so the
        # hot path needs one comparison.
        self.epoch = 0
        self.validate_below = 0
        self.discard_below = 0
        # Reconnect state.
        self.last_attempt_at = -math.inf  # when the last attempts started
        # A caller turned away by the open breaker brought the next attempt
        # forward: the shell must wake the maintenance loop (see `enqueue`).
        self.demand_wake = False
        self.failures = 0  # consecutive failed connect attempts
        self.failing_since: float | None = None
        self.next_attempt_at = 0.0
        self.last_error: BaseException | None = None
        self.reconnect_failed_fired = False
        # When maintenance runs next (None: nothing scheduled; it must be woken
        # when something starts to need it, e.g. the first idle connection).
        self.next_due: float | None = None
        # Counters (see `stats`).
        self.n_acquired = 0
        self.n_waited = 0
        self.wait_time = 0.0
        self.n_timeouts = 0
        self.n_rejected = 0
        self.n_created = 0
        self.n_connect_failed = 0
        self.n_lost = 0
        self.n_expired = 0
        self.n_checks = 0
        self.n_checks_failed = 0
        self.n_returned_dirty = 0
        self.n_leaks = 0
        self.usage_time = 0.0
        self.connect_time = 0.0  # total seconds spent opening connections
        # Waits of served waiters (acquisitions that did not wait count as 0).
        # (seconds waited, n_acquired after it) for the last waiters served:
        # wait percentiles over recent acquisitions, those that did not wait
        # counted as zeros (a ring: cheaper on the hand-off than a histogram).
        self.recent_waits: deque[tuple[float, int]] = deque(maxlen=RECENT_WAITS)
        self.last_check_at: float | None = None

    # -- derived facts -------------------------------------------------------

    @property
    def size(self) -> int:
        """Open connections: idle, in use or being pinged."""
        return len(self.slots)

    def _wanted(self) -> int:
        """How many connections to start opening now (reserving nothing)."""
        if self.closed:
            return 0
        opts = self.options
        total = len(self.slots) + self.connecting
        room = self._bound() - total
        if room <= 0:
            return 0
        if self.failures:
            # While failing, a single attempt at a time: the next one waits for
            # the backoff, and a dead server is not hammered by the whole pool.
            return 0 if self.connecting else 1
        if self.max_connecting:
            room = min(room, self.max_connecting - self.connecting)
        if self.target is not None:
            # Autoscaled: the target is the size; all of it is opened at once.
            return max(0, room)
        want = opts.min_size - total
        # Beyond min_size, grow one connection at a time for waiters that
        # outnumber connections already on their way, so a spike of short
        # requests does not open max_size connections that then sit idle.
        if self.grow_per_waiter:
            want = max(want, len(self.waiters) - self.connecting)
        elif len(self.waiters) > self.connecting and self.connecting == 0:
            want = max(want, 1)
        return max(0, min(want, room))

    # -- the hot path --------------------------------------------------------

    def checkout(self, now: float) -> Slot | None:
        """Pop the most recently used idle connection (the least recently
        used with `fifo`), or None.

        The returned slot is marked in use and carries a ``verdict``: `OK`
        (hand it out), `CHECK` (ping it first, then `check_passed` /
        `check_failed`) or `DISCARD` (call `discard` and try again).
        """
        if not self.idle:
            return None
        slot = self.idle.popleft() if self.fifo else self.idle.pop()
        slot.in_use = True
        slot.uses += 1
        slot.acquired_at = now
        self.in_use += 1
        if now < slot.fresh_until and slot.epoch >= self.validate_below:
            slot.verdict = OK
            self.n_acquired += 1
        elif slot.epoch < self.discard_below or now >= slot.expires_at:
            slot.verdict = DISCARD
        else:
            slot.verdict = CHECK
        return slot

    def checkin(self, slot: Slot, now: float, healthy: bool, keep: bool = True) -> Io | None:
        """Take a connection back. ``healthy`` is False when the caller saw it
        broken (or could not clean it); it is then discarded and older idle
        connections become suspect. ``keep`` False: it goes to the oldest
        waiter if any, else it is closed rather than kept idle (a pool that
        keeps no idle connection: psycopg_pool's ``NullConnectionPool``)."""
        self.in_use -= 1
        slot.in_use = False
        slot.holder = None
        self.usage_time += now - slot.acquired_at
        if not (
            healthy
            and slot.epoch >= self.discard_below
            and now < slot.expires_at
            and slot.uses < self._max_uses
        ):
            return self._retire(slot, healthy)
        slot.last_used = now
        window_end = now + self.options.check_window  # _refresh, inlined: hot
        slot.fresh_until = window_end if window_end < slot.expires_at else slot.expires_at
        # Hand it straight to the oldest waiter (FIFO fairness), if any.
        if self.waiters:
            waiter = self.waiters.popleft()
            self._lend(slot, now, waiter)
            io = Io()
            io.handoff = [(waiter, slot)]
            return io
        if not keep:
            self.n_expired += 1
            return self._remove(slot, Io(), "idle")
        self.idle.append(slot)
        if self.next_due is None:
            return self._schedule(now)
        return None

    def _retire(self, slot: Slot, healthy: bool) -> Io:
        """A returned connection that must not be reused."""
        if not healthy:
            self.n_lost += 1
            self._suspect_older()
            reason = "broken"
        elif self.closed:
            reason = "closed"
        else:
            self.n_expired += 1
            reason = self._expiry_reason(slot)
        return self._remove(slot, Io(), reason)

    def _refresh(self, slot: Slot, now: float) -> None:
        window_end = now + self.options.check_window
        slot.fresh_until = window_end if window_end < slot.expires_at else slot.expires_at

    # -- waiting -------------------------------------------------------------

    def enqueue(self, waiter: Any, now: float) -> Io | None:
        """Queue a caller that found no idle connection. If one is idle by now
        (returned meanwhile by another thread), it is handed over at once (its
        checkout verdict still applies: the caller checks or discards it).

        Raises:
            PoolClosed: the pool is closed.
            TooManyRequests: ``max_waiting`` callers are already queued.
            CircuitOpen: the breaker is open and the pool has no connection
                that could come back.
        """
        if self.closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        if self.breaker is not None and not self.slots and self.breaker.rejects(now):
            # Turned away at once (failing fast is the breaker's job, even if
            # its probe would hang), but someone wants a connection: the probe
            # comes sooner; the shell wakes the maintenance loop for it.
            if self._bring_forward():
                self.demand_wake = True
            raise self._circuit_open(now)
        max_waiting = self.options.max_waiting
        if max_waiting and len(self.waiters) >= max_waiting:
            self.n_rejected += 1
            raise TooManyRequests(
                f"pool {self.name!r}: {len(self.waiters)} requests already waiting "
                f"(max_waiting={max_waiting})"
            )
        if self.idle:
            # A connection came back between the caller's checkout and now
            # (threads): hand it over rather than queue beside it, which
            # would leave the caller waiting for the *next* return.
            slot = self.checkout(now)
            assert slot is not None
            io = Io()
            io.to_hand(waiter, slot)
            return io
        self.waiters.append(waiter)
        if self.wake_on_wait or self.target == 0:
            # The autoscaler sleeps (the pool was idle at its floor) and
            # wants to hear of the first caller that waits; a pool scaled
            # down to nothing opens one connection for it at once.
            self.wake_on_wait = False
            if self.target == 0:
                self.target = 1
            io = Io()
            io.wake = True
            return io
        # (_wanted() is 0 when the pool is full: the usual case under load.)
        if len(self.slots) + self.connecting < self.options.max_size and self._wanted():
            if self.failures:
                self._bring_forward()
            io = Io()
            io.wake = True
            return io
        return None

    def _bring_forward(self) -> bool:
        """Callers want a connection while the pool fails to connect: the
        next attempt runs at most `DEMAND_RETRY` after the last one, whatever
        the backoff or the breaker says. Whether that moved it earlier."""
        if not self.failures or self.connecting:
            return False
        at = self.last_attempt_at + DEMAND_RETRY
        moved = False
        if at < self.next_attempt_at:
            self.next_attempt_at = at
            moved = True
        breaker = self.breaker
        if breaker is not None and breaker.state == "open" and at < breaker.open_until:
            breaker.probe_from(at)
            moved = True
        return moved

    def dequeue(self, waiter: Any, timed_out: bool) -> bool:
        """Forget a waiter that gave up (timed out or was cancelled).

        Returns False when the waiter is no longer queued: a connection was
        already handed to it, which the caller must give back with `checkin`.
        """
        try:
            self.waiters.remove(waiter)
        except ValueError:
            return False
        if timed_out:
            self.n_timeouts += 1
        return True

    # -- validation ----------------------------------------------------------

    def check_passed(self, slot: Slot, now: float) -> None:
        """The checkout ping succeeded: the slot is fresh again."""
        self.n_checks += 1
        self.last_check_at = now
        slot.epoch = self.epoch
        slot.verdict = OK
        self._refresh(slot, now)
        self.n_acquired += 1

    def check_failed(self, slot: Slot, now: float) -> Io:
        """The checkout ping failed: discard it and every connection as old.

        One dead connection found by a check is taken as a sign that its
        siblings died too (a restart, a network cut): they are all discarded
        at once rather than each costing the next caller a failed check.
        """
        self.n_checks += 1
        self.n_checks_failed += 1
        self.last_check_at = now
        return self.lost(slot, now)

    def lost(self, slot: Slot, now: float) -> Io:
        """A checked-out connection turned out dead without a round trip (the
        driver knows it is closed, or the server sent its FATAL while it sat
        idle): discard it and, as for a failed check, every idle sibling."""
        self.n_lost += 1
        slot.in_use = False
        self.in_use -= 1
        io = self._remove(slot, Io(), "lost")
        if self.lost_alone:
            return io
        self._invalidate()
        while self.idle:
            stale = self.idle.popleft()
            self.n_lost += 1
            self._remove(stale, io, "lost")
        return io

    def discard(self, slot: Slot, now: float) -> Io:
        """Drop a slot whose checkout verdict was `DISCARD`."""
        slot.in_use = False
        self.in_use -= 1
        self.n_expired += 1
        return self._remove(slot, Io(), self._expiry_reason(slot))

    # -- opening connections -------------------------------------------------

    def plan_connects(self, now: float) -> tuple[int, float | None]:
        """How many connection attempts to start now, reserving them; and when
        to ask again if more will be wanted later (backoff), else None."""
        want = self._wanted()
        if not want:
            return 0, None
        if self.failures and now < self.next_attempt_at:
            return 0, self.next_attempt_at
        breaker = self.breaker
        if breaker is not None:
            if breaker.rejects(now):
                return 0, breaker.open_until  # no TCP attempt while open
            allowed = 0
            while allowed < want and breaker.allow(now):
                allowed += 1
            want = allowed  # half-open: the probe; its outcome wakes us
            if not want:
                return 0, None
        self.connecting += want
        self.last_attempt_at = now
        return want, None

    def next_connect_at(self) -> float | None:
        """When the next connection attempt may start: after the backoff
        delay, and not before the breaker allows a probe; None when no
        connection is wanted or one is on its way (its outcome decides)."""
        if self.connecting or not self._wanted():
            return None
        at = self.next_attempt_at if self.failures else 0.0
        breaker = self.breaker
        if breaker is not None and breaker.state == "open":
            at = max(at, breaker.open_until)
        return at

    def wants_probe(self) -> bool:
        """Whether a cheap reachability probe of the server is worth running
        now: the pool is failing to connect, no attempt is on its way, and
        someone needs a connection (callers wait) or the breaker is open
        (callers are turned away until it lets an attempt through)."""
        if self.closed or not self.failures or self.connecting or not self._wanted():
            return False
        breaker_open = self.breaker is not None and self.breaker.state == "open"
        return bool(self.waiters) or breaker_open

    def reached(self, now: float) -> Io | None:
        """The server accepts connections again (a probe got through): the
        next attempt runs now rather than after the backoff delay, and an
        open breaker lets its probe attempt through; never more than one
        attempt per `MIN_ATTEMPT_GAP` seconds."""
        if not self.wants_probe():
            return None
        at = max(now, self.last_attempt_at + MIN_ATTEMPT_GAP)
        self.next_attempt_at = min(self.next_attempt_at, at)
        if self.breaker is not None:
            self.breaker.probe_from(at)
        io = Io()
        io.wake = True
        return io

    def connected(self, conn: Any, now: float, seconds: float = 0.0, watch: Any = None) -> Io:
        """A reserved attempt succeeded (in ``seconds``): the connection joins
        the pool (``watch``: the shell's checkout check for it, kept on the slot)."""
        self.connecting -= 1
        self.connect_time += seconds
        self.failures = 0
        self.failing_since = None
        self.reconnect_failed_fired = False
        if self.breaker is not None:
            self.breaker.succeeded(now)
        self.n_created += 1
        self._next_id += 1
        opts = self.options
        expires_at = float("inf")
        if opts.max_lifetime is not None:
            # Negative jitter: connections opened together do not all expire
            # together ("mass extinction").
            expires_at = now + opts.max_lifetime * (1 - opts.lifetime_jitter * self._rng.random())
        slot = Slot(conn, self._next_id, self.epoch, now, expires_at)
        slot.watch = watch
        self._refresh(slot, now)
        self.slots[id(conn)] = slot
        io = Io()
        if self.closed:
            self._remove(slot, io, "closed")
            return io
        if self.waiters:
            waiter = self.waiters.popleft()
            slot.uses += 1
            slot.acquired_at = now
            self._lend(slot, now, waiter)
            io.to_hand(waiter, slot)
        else:
            self.idle.append(slot)
        # A new connection brings new deadlines (lifetime, keepalive): let the
        # maintenance loop plan for them, and for any further connects.
        io.wake = True
        return io

    def connect_failed(self, error: BaseException, now: float, fatal: bool = False) -> Io:
        """A reserved attempt failed: back off, and remember why.

        ``fatal`` means retrying cannot help until someone changes something
        (wrong password, missing database, server too old): while the pool has
        no connection at all, its waiters are failed with ``error`` at once
        instead of waiting out their timeout. Attempts continue, with backoff.
        """
        io, escalated = self._connect_failed(error, now)
        breaker = self.breaker
        if breaker is not None:
            if _starting(error):
                # The server answers; it is not ready yet. No reason to fail
                # callers fast: a half-open probe is simply tried again soon.
                if breaker.state != "closed":
                    breaker.failed(now, hold=STARTING_RETRY)
            elif escalated or breaker.state != "closed":
                # Attempts started together fail together: like the backoff,
                # the breaker counts the burst once (a restart's min_size
                # failures are one failure, not min_size consecutive ones).
                breaker.failed(now)
        if not self.slots:
            # Nothing can come back to the waiters: tell them now.
            if fatal:
                reason: BaseException | None = error
            elif self.breaker is not None and self.breaker.rejects(now):
                reason = self._circuit_open(now)
            else:
                reason = None
            if reason is not None:
                while self.waiters:
                    io.to_fail(self.waiters.popleft(), reason)
        return io

    def nudge(self, now: float) -> Io | None:
        """The server was just reached by other means (the topology's role
        probe): end the current backoff delay, so the next attempt runs now
        instead of up to ``max_delay`` later. The breaker keeps its own
        schedule."""
        if not self.failures or now >= self.next_attempt_at or not self._wanted():
            return None
        self.next_attempt_at = now
        io = Io()
        io.wake = True
        return io

    def _circuit_open(self, now: float) -> CircuitOpen:
        assert self.breaker is not None
        retry_after = self.breaker.retry_after(now)
        error = CircuitOpen(
            f"pool {self.name!r}: circuit open after {self.breaker.failures} failed "
            f"connection attempts; next attempt in {retry_after:.1f} s"
            + (f"; last error: {self.last_error}" if self.last_error else ""),
            retry_after,
        )
        error.__cause__ = self.last_error
        return error

    def _connect_failed(self, error: BaseException, now: float) -> tuple[Io, bool]:
        """Back off; whether this failure escalated the backoff."""
        self.connecting -= 1
        self.n_connect_failed += 1
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = now
        # Attempts started together (warm-up) fail together: only the first of
        # them escalates the backoff, the others are already waiting it out.
        escalated = not self.failures or now >= self.next_attempt_at
        if escalated:
            delay = self.options.backoff.delay(self.failures, self._rng.random())
            if _starting(error):
                delay = min(delay, STARTING_RETRY)
            if self.waiters:
                delay = min(delay, DEMAND_RETRY)  # someone is waiting: try again soon
            self.failures += 1
            self.next_attempt_at = now + delay
        io = Io()
        io.wake = True
        self._check_reconnect_failed(now, io)
        return io, escalated

    def rearm_reconnect_failed(self, now: float) -> bool:
        """psycopg_pool's rule, for the drop-in: after ``reconnect_failed``
        was called, a caller who needs a connection while the pool still
        fails to connect starts a new ``reconnect_timeout`` (the callback is
        called again if connecting still fails by its end). Whether it did
        (the maintenance loop must then be woken to keep the new time)."""
        if not (self.reconnect_failed_fired and self.failures):
            return False
        self.failing_since = now
        self.reconnect_failed_fired = False
        return True

    def _check_reconnect_failed(self, now: float, io: Io) -> float | None:
        """Ask for ``reconnect_failed`` once the pool has failed to connect for
        ``reconnect_timeout``; else when that will be (None: not failing)."""
        if self.failing_since is None or self.reconnect_failed_fired:
            return None
        at = self.failing_since + self.options.reconnect_timeout
        if now >= at:
            self.reconnect_failed_fired = True
            io.reconnect_failed = True
            return None
        return at

    # -- background ----------------------------------------------------------

    def maintain(self, now: float) -> tuple[Io, float | None]:
        """Housekeeping: close expired and surplus idle connections, pick idle
        ones due for a keepalive ping, report leaks. Returns the I/O and the
        time this should run again (None: nothing scheduled)."""
        opts = self.options
        io = Io()
        due: list[float] = []
        keep: deque[Slot] = deque()
        # Idle connections above the floor (min_size, or an autoscaled pool's
        # target) close after max_idle.
        surplus = len(self.slots) - (opts.min_size if self.target is None else self.target)
        # Above the bound (the target, or a max_size lowered by resize while
        # connections were in use): idle ones close now, oldest first.
        over = len(self.slots) - self._bound()
        # Oldest first (left): those are the ones to trim.
        while self.idle:
            slot = self.idle.popleft()
            idle_for = now - slot.last_used
            stale = slot.epoch < self.discard_below or now >= slot.expires_at
            surplus_idle = opts.max_idle is not None and surplus > 0 and idle_for >= opts.max_idle
            if over > 0 and not stale:
                self._remove(slot, io, "resized")
                over -= 1
                surplus -= 1
            elif stale or surplus_idle:
                self.n_expired += 1
                self._remove(slot, io, self._expiry_reason(slot) if stale else "idle")
                surplus -= 1
                over -= 1
            elif opts.keepalive is not None and idle_for >= opts.keepalive:
                slot.in_use = False
                self.pinging += 1
                io.to_ping(slot)
            else:
                keep.append(slot)
                if slot.expires_at != float("inf"):
                    due.append(slot.expires_at)
                if opts.max_idle is not None and surplus > 0:
                    due.append(slot.last_used + opts.max_idle)
                if opts.keepalive is not None:
                    due.append(slot.last_used + opts.keepalive)
        self.idle = keep
        if opts.leak_threshold is not None and self.in_use:
            for slot in self.slots.values():
                if slot.in_use and not slot.leak_reported:
                    deadline = slot.acquired_at + opts.leak_threshold
                    if now >= deadline:
                        slot.leak_reported = True
                        self.n_leaks += 1
                        io.to_report(slot)
                    else:
                        due.append(deadline)
        if opts.leak_threshold is not None:
            # Connections lent after this run must be looked at in time too.
            due.append(now + opts.leak_threshold / 2)
        connect_at = self.next_connect_at()
        if connect_at is not None and connect_at > now:
            # Not earlier than the attempt can run: while the breaker rejects,
            # the backoff's time is past, and waking for it would spin.
            due.append(connect_at)
        fire_at = self._check_reconnect_failed(now, io)
        if fire_at is not None:
            due.append(fire_at)
        # Maintenance plans its own connects next: asking to be woken for them
        # here would make it spin through a backoff delay.
        io.wake = False
        self.next_due = min(due) if due else None
        return io, self.next_due

    def ping_done(self, slot: Slot, now: float, ok: bool) -> Io | None:
        """A background keepalive ping finished."""
        self.pinging -= 1
        self.last_check_at = now
        if not ok:
            self.n_lost += 1
            self._suspect_older()
            io = self._remove(slot, Io(), "lost")
            io.wake = True
            return io
        slot.last_used = now
        slot.epoch = self.epoch
        self._refresh(slot, now)
        if self.waiters:
            waiter = self.waiters.popleft()
            slot.uses += 1
            slot.acquired_at = now
            self._lend(slot, now, waiter)
            io = Io()
            io.to_hand(waiter, slot)
            return io
        if self.closed:
            return self._remove(slot, Io(), "closed")
        # Keep LIFO order honest: a pinged connection is as fresh as any.
        self.idle.append(slot)
        if self.next_due is None:
            return self._schedule(now)
        return None

    # -- administration --------------------------------------------------------

    def resize(self, options: PoolOptions) -> Io:
        """Apply new sizes; close idle connections above the new maximum (an
        autoscaled pool's target is kept within the new bounds)."""
        self.options = options
        self._max_uses = options.max_uses or _UNLIMITED
        if self.target is not None:
            self.target = max(options.min_size, min(self.target, options.max_size))
        return self._trim(Io())

    def retarget(self, target: int) -> Io:
        """An autoscaled pool's new size (kept within ``[min_size,
        max_size]``): connections missing are opened at once (``wake``); idle
        ones above it close now, oldest first, in-use ones when `maintain`
        finds them idle."""
        opts = self.options
        self.target = max(opts.min_size, min(target, opts.max_size))
        return self._trim(Io())

    def _bound(self) -> int:
        """The most connections the pool keeps now."""
        target = self.target
        return self.options.max_size if target is None else min(target, self.options.max_size)

    def _trim(self, io: Io) -> Io:
        bound = self._bound()
        while self.idle and len(self.slots) > bound:
            self._remove(self.idle.popleft(), io, "resized")
        io.wake = True
        return io

    def drain(self) -> Io:
        """Replace every connection: idle ones now, in-use ones when returned."""
        self._invalidate()
        io = Io()
        while self.idle:
            self.n_expired += 1
            self._remove(self.idle.popleft(), io, "drained")
        io.wake = True
        return io

    def close(self) -> Io:
        """Stop: fail every waiter, close idle connections; in-use ones are
        closed when returned."""
        self.closed = True
        self._invalidate()  # in-use connections are closed when returned
        io = Io()
        while self.waiters:
            io.to_fail(self.waiters.popleft(), PoolClosed("the pool was closed"))
        while self.idle:
            self._remove(self.idle.popleft(), io, "closed")
        return io

    def owns(self, conn: Any) -> Slot | None:
        """The slot of a connection this pool lent out, or None."""
        return self.slots.get(id(conn))

    def stats(self) -> PoolStats:
        """A snapshot of sizes and counters (times in milliseconds)."""
        p50, p99 = self.wait_quantiles(0.5, 0.99)
        return {
            "size": len(self.slots),
            "idle": len(self.idle),
            "in_use": self.in_use,
            "connecting": self.connecting,
            "waiting": len(self.waiters),
            "min_size": self.options.min_size,
            "max_size": self.options.max_size,
            "target_size": self.options.min_size if self.target is None else self.target,
            "acquired": self.n_acquired,
            "waited": self.n_waited,
            "wait_ms": round(self.wait_time * 1000.0, 3),
            "wait_p50_ms": round(p50 * 1000.0, 3),
            "wait_p99_ms": round(p99 * 1000.0, 3),
            "usage_ms": round(self.usage_time * 1000.0, 3),
            "timeouts": self.n_timeouts,
            "rejected": self.n_rejected,
            "connections_created": self.n_created,
            "connect_ms": round(self.connect_time * 1000.0, 3),
            "connections_failed": self.n_connect_failed,
            "connections_lost": self.n_lost,
            "connections_expired": self.n_expired,
            "checks": self.n_checks,
            "checks_failed": self.n_checks_failed,
            "leaks": self.n_leaks,
            "breaker_open": int(self.breaker is not None and self.breaker.state != "closed"),
            "breaker_opened": self.breaker.times_opened if self.breaker is not None else 0,
        }

    def wait_quantiles(self, *qs: float) -> list[float]:
        """Quantiles of the acquire wait (seconds) over recent acquisitions:
        those since the oldest of the last `RECENT_WAITS` that had to wait,
        the others counting as 0."""
        waits = self.recent_waits
        if not waits:
            return [0.0 for _ in qs]
        values = sorted(w for w, _ in waits)
        total = self.n_acquired - waits[0][1] + 1
        zeros = max(0, total - len(values))
        out = []
        for q in qs:
            rank = max(1, math.ceil(q * (zeros + len(values))))
            out.append(0.0 if rank <= zeros else values[min(rank - zeros, len(values)) - 1])
        return out

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (for tests)."""
        idle_ids = {id(s) for s in self.idle}
        assert len(idle_ids) == len(self.idle), "a slot is idle twice"
        in_use = sum(1 for s in self.slots.values() if s.in_use)
        assert in_use == self.in_use, f"in_use {self.in_use} != {in_use}"
        assert len(self.slots) == len(self.idle) + self.in_use + self.pinging, (
            f"size {len(self.slots)} != idle {len(self.idle)} + in_use {self.in_use}"
            f" + pinging {self.pinging}"
        )
        assert self.connecting >= 0
        assert len(self.slots) + self.connecting <= max(self.options.max_size, len(self.slots))
        assert not (self.waiters and self.idle), "a waiter waits while a connection idles"
        for slot in self.idle:
            assert not slot.in_use and id(slot.conn) in self.slots

    # -- internals -------------------------------------------------------------

    def _schedule(self, now: float) -> Io:
        """Ask for a maintenance run (once: next_due marks it pending)."""
        self.next_due = now
        io = Io()
        io.wake = True
        return io

    def _lend(self, slot: Slot, now: float, waiter: Any) -> None:
        slot.in_use = True
        slot.acquired_at = now
        slot.leak_reported = False
        slot.verdict = OK
        self.in_use += 1
        self.n_acquired += 1
        self.n_waited += 1
        self.wait_time += now - waiter.since
        self.recent_waits.append((now - waiter.since, self.n_acquired))

    def _suspect_older(self) -> None:
        self.epoch += 1
        self.validate_below = self.epoch

    def _invalidate(self) -> None:
        self.epoch += 1
        self.discard_below = self.validate_below = self.epoch

    def _expiry_reason(self, slot: Slot) -> str:
        """Why a healthy connection is retired: drained, or worn out."""
        return "drained" if slot.epoch < self.discard_below else "expired"

    def _remove(self, slot: Slot, io: Io, reason: str) -> Io:
        slot.reason = reason
        del self.slots[id(slot.conn)]
        io.to_close(slot)
        io.wake = io.wake or bool(self._wanted())
        return io
