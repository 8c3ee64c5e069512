"""A pool that sizes itself: the decision, with no I/O and no clock.

`AutoscalePolicy` looks at a pool's `PoolState` (``now`` passed in) and says
which size the pool should keep — its *target*, between ``min_size`` and
``max_size`` — and why. The shell (`pgharbor._async.autoscaler`) samples it
every `Autoscale.interval` seconds while there is load, applies the target
with `PoolState.retarget`, reports the change, and tells it how many
connections the server leaves (`note_room`).

**Demand is measured, not guessed.** Over the last ``window`` seconds, the
time connections were held plus the time callers waited for one, divided by
the window: by Little's law, the mean number of callers that wanted a
connection at once (in use + waiting). The pool already keeps both totals
(`PoolState.usage_time`, `PoolState.wait_time`); the time of connections
still held and callers still waiting is added at the sample, so nothing is
counted on the hot path.

**The rules** (``d``: demand; ``desired = ceil(d * (1 + headroom))``, kept
within ``[min_size, cap]``):

- *grow* when the demand has exceeded the target in every sample of the last
  ``grow_after`` seconds: straight to the lowest desired size of those
  samples (every missing connection is opened at once, in parallel);
- *shrink* when the desired size has stayed below the target in every
  sample of the last ``shrink_after`` seconds: to the highest desired size of
  those samples — a peak keeps its connections for ``shrink_after``;
- in between, nothing changes (hysteresis): with the default headroom, a
  target of 12 holds while the demand stays between 10 and 12.

**The cap** is ``max_size`` and what the server leaves: the pool's own
connections plus the free slots of the tightest of ``max_connections``
(less the reserved slots), the role's and the database's ``CONNECTION
LIMIT`` — read on each new connection (`pgharbor.facts.ROOM_QUERY`). A
connection attempt the server refuses as full (SQLSTATE 53300) caps the
target at the pool's current size for `FULL_HOLD` seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConfigError
from ..metrics import RESIZE_REASONS
from .pool import PoolState
from .validate import MIN_PERIOD, seconds

__all__ = [
    "FULL_HOLD",
    "RESIZE_REASONS",
    "Autoscale",
    "AutoscalePolicy",
    "AutoscaleStatus",
    "Decision",
    "Sample",
    "autoscale_option",
    "desired_size",
]

#: Seconds a "the server is full" refusal caps the target at the pool's size
#: before growing is tried again.
FULL_HOLD: Final = 10.0

# Sample times come from the shell's sleeps: a hair of tolerance on spans.
_EPSILON = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class Autoscale:
    """How an autoscaled pool follows demand (``autoscale=Autoscale(...)``;
    ``autoscale=True`` takes these defaults). Times are float seconds.

    Args:
        window: the demand is averaged over this many seconds (1.0).
        grow_after: the demand must exceed the target this long before the
            pool grows (0.5): one sample at the default ``interval``.
        shrink_after: the demand must stay below the target this long before
            the pool shrinks (30.0).
        headroom: spare capacity above the measured demand, as a fraction
            (0.2: a demand of 10 connections asks for 12).
        interval: seconds between two samples while there is load (0.5).
            An idle pool at ``min_size`` is not sampled at all: the first
            caller that has to wait wakes the sampler.
        server_room: cap the target by what the server's connection limits
            leave (True).

    Raises:
        ConfigError: a value out of its bounds, naming it.
    """

    window: float = 1.0
    grow_after: float = 0.5
    shrink_after: float = 30.0
    headroom: float = 0.2
    interval: float = 0.5
    server_room: bool = True

    def __post_init__(self) -> None:
        seconds("autoscale.interval", self.interval, positive=True, minimum=MIN_PERIOD)
        seconds("autoscale.window", self.window, positive=True, minimum=MIN_PERIOD)
        if self.window < self.interval:
            raise ConfigError(
                "autoscale.window",
                f"must be >= interval ({self.interval:g} s): a sample needs a window",
                self.window,
            )
        seconds("autoscale.grow_after", self.grow_after)
        seconds("autoscale.shrink_after", self.shrink_after)
        if self.shrink_after < self.grow_after:
            raise ConfigError(
                "autoscale.shrink_after",
                f"must be >= grow_after ({self.grow_after:g} s): a pool shrinks slower "
                "than it grows",
                self.shrink_after,
            )
        h = self.headroom
        if isinstance(h, bool) or not isinstance(h, int | float) or not 0 <= h <= 10:
            raise ConfigError("autoscale.headroom", "must be a number in [0, 10]", h)
        if not isinstance(self.server_room, bool):
            raise ConfigError("autoscale.server_room", "must be True or False", self.server_room)


def autoscale_option(value: Any, min_size: int, max_size: int) -> Autoscale | None:
    """The ``autoscale=`` argument of a pool: None/False (off), True (the
    defaults) or an `Autoscale`.

    Raises:
        ConfigError: anything else, or a range the pool cannot move in
            (``max_size`` not above ``min_size``).
    """
    if value is None or value is False:
        return None
    options = Autoscale() if value is True else value
    if not isinstance(options, Autoscale):
        raise ConfigError("autoscale", "must be True, False, None or a pgharbor.Autoscale", value)
    if max_size <= min_size:
        raise ConfigError(
            "autoscale",
            f"needs room to move: max_size ({max_size}) must be above min_size "
            f"({min_size}), e.g. min_size=1, max_size=20",
        )
    return options


def desired_size(demand: float, headroom: float, floor: int, cap: int) -> int:
    """``ceil(demand * (1 + headroom))`` within ``[floor, cap]`` (``cap``
    wins below ``floor``: it never is, see `AutoscalePolicy.cap`)."""
    # A demand of exactly 10.0 with no headroom asks for 10, not 11.
    wanted = math.ceil(demand * (1.0 + headroom) - 1e-9)
    return max(floor, min(cap, wanted))


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the pool: demand over the window ending at ``at``.

    Attributes:
        start: the previous sample's time (this one speaks for ``(start, at]``).
        at: when it was taken.
        window: the seconds the demand was measured over (``window``, or
            less in the first samples after a quiet spell).
        demand: mean callers wanting a connection over the window.
        desired: the size that demand asks for (headroom, floor and cap applied).
        wait_p99: the 99th percentile acquire wait over the window, seconds
            (acquisitions that did not wait count as 0).
        in_use: connections in use at ``at``.
        waiting: callers waiting at ``at``.
    """

    start: float
    at: float
    window: float
    demand: float
    desired: int
    wait_p99: float
    in_use: int
    waiting: int


@dataclass(frozen=True, slots=True)
class Decision:
    """A new target and why.

    Attributes:
        target: the size to keep now.
        previous: the size kept until now.
        reason: one of `RESIZE_REASONS`.
        detail: the figures behind it, for people.
    """

    target: int
    previous: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class AutoscaleStatus:
    """Where an autoscaled pool stands (``pool.autoscale``).

    Attributes:
        target: the size the pool keeps now.
        cap: the most it may grow to now: ``max_size``, or less if the
            server leaves less.
        demand: mean callers wanting a connection over the last window
            (0.0 before the first sample).
        wait_p99_ms: the 99th percentile acquire wait over that window.
        reason: why the target last changed (`RESIZE_REASONS`), "" if never.
        detail: the figures behind that change.
        changed_at: when (``time.monotonic()``), or None.
        resizes: how many times the target changed.
        samples: how many samples were taken (it stands still while the
            pool is idle at its floor).
        room: connections the server leaves this pool (its own included),
            as last read; None when not read (yet).
        sampling: whether the sampler runs (False: idle at ``min_size``).
    """

    target: int
    cap: int
    demand: float
    wait_p99_ms: float
    reason: str
    detail: str
    changed_at: float | None
    resizes: int
    samples: int
    room: int | None
    sampling: bool


@dataclass(frozen=True, slots=True)
class _Reading:
    """Running totals at ``at``: connection-seconds held plus caller-seconds
    waited, and acquisitions so far."""

    at: float
    busy: float
    acquired: int


class AutoscalePolicy:
    """Decides an autoscaled pool's target from samples of its `PoolState`.

    Not thread-safe: the shell calls it under the pool's lock. Every method
    takes ``now``; none reads the clock.
    """

    def __init__(self, options: Autoscale) -> None:
        self.options = options
        #: Connections the server leaves this pool, its own included (None: unknown).
        self.room: int | None = None
        self._full_until = -math.inf  # a "too many connections" refusal caps until then
        self._full_size = 0
        self._readings: deque[_Reading] = deque()
        self._samples: deque[Sample] = deque()
        #: The latest sample, or None.
        self.last: Sample | None = None
        self.reason = ""
        self.detail = ""
        self.changed_at: float | None = None
        self.resizes = 0
        self.samples = 0
        #: Whether the sampler runs; False until the first sample, and when
        #: idle at the floor (the next sample then starts a fresh window).
        self.sampling = False

    # -- what the server leaves -------------------------------------------------

    def note_room(self, free: int, own: int) -> None:
        """The server leaves ``free`` more sessions to this role and database,
        while the pool holds ``own`` connections (counted among the server's)."""
        self.room = max(0, own + free)

    def cap(self, state: PoolState, now: float) -> int:
        """The most the target may be now: ``max_size``, the server's room,
        a recent "full" refusal; never below ``min_size``."""
        opts = state.options
        cap = opts.max_size
        if self.options.server_room and self.room is not None:
            cap = min(cap, self.room)
        if now < self._full_until:
            cap = min(cap, self._full_size)
        return max(opts.min_size, cap)

    # -- sampling ---------------------------------------------------------------

    def sample(self, state: PoolState, now: float) -> Decision | None:
        """Take one sample of ``state`` and decide; a `Decision` when the
        target should change (the caller applies it with
        `PoolState.retarget`), else None."""
        opts = self.options
        target = state.target if state.target is not None else state.options.min_size
        floor = state.options.min_size
        self.samples += 1
        self._note_refusal(state, now)
        cap = self.cap(state, now)
        reading = _read(state, now)
        if not self.sampling or not self._readings:
            # The first look after a quiet spell: a fresh window starts here.
            self._readings.clear()
            self._samples.clear()
            self._readings.append(reading)
            self.sampling = True
            return self._lower_to(cap, target, now) if target > cap else None
        readings = self._readings
        # Keep the newest reading at or before the window's start: the base.
        while len(readings) >= 2 and readings[1].at <= now - opts.window + _EPSILON:
            readings.popleft()
        base = readings[0]
        span = now - base.at
        if span <= 0:
            return None
        demand = max(0.0, reading.busy - base.busy) / span
        p99 = _wait_p99(state, base.acquired, reading.acquired)
        desired = desired_size(demand, opts.headroom, floor, cap)
        sample = Sample(
            readings[-1].at, now, span, demand, desired, p99, state.in_use, len(state.waiters)
        )
        readings.append(reading)
        samples = self._samples
        samples.append(sample)
        horizon = max(opts.grow_after, opts.shrink_after) + opts.interval
        while samples and samples[0].at <= now - horizon:
            samples.popleft()
        self.last = sample
        if target > cap:
            return self._lower_to(cap, target, now)
        grow = self._span(opts.grow_after, now)
        if grow is not None and all(s.demand > target for s in grow):
            new = min(s.desired for s in grow)
            if new > target:
                return self._decide(new, target, "demand", self._why_grow(grow, new, cap), now)
        shrink = self._span(opts.shrink_after, now)
        if shrink is not None and all(s.desired < target for s in shrink):
            new = max(s.desired for s in shrink)
            detail = (
                f"demand at most {max(s.demand for s in shrink):.1f} connections "
                f"for {opts.shrink_after:g} s"
            )
            return self._decide(new, target, "quiet", detail, now)
        return None

    def next_at(self, state: PoolState, now: float) -> float | None:
        """When to sample next; None when the pool is idle at its floor (the
        target is ``min_size``, the pool no larger, and no caller waits): the
        shell then asks `PoolState` to be woken by the next caller that
        waits, and the next sample starts a fresh window."""
        if state.closed:
            self.sampling = False
            return None
        target = state.target if state.target is not None else state.options.min_size
        if target <= state.options.min_size and not state.waiters and state.size <= target:
            self.sampling = False
            return None
        return now + self.options.interval

    def status(self, state: PoolState, now: float) -> AutoscaleStatus:
        """Where the pool stands (see `AutoscaleStatus`)."""
        last = self.last
        return AutoscaleStatus(
            target=state.target if state.target is not None else state.options.min_size,
            cap=self.cap(state, now),
            demand=round(last.demand, 3) if last is not None else 0.0,
            wait_p99_ms=round(last.wait_p99 * 1000.0, 3) if last is not None else 0.0,
            reason=self.reason,
            detail=self.detail,
            changed_at=self.changed_at,
            resizes=self.resizes,
            samples=self.samples,
            room=self.room,
            sampling=self.sampling,
        )

    def stats(self, state: PoolState, now: float) -> dict[str, int | float]:
        """Numbers for the pool's ``stats()``: ``autoscale_demand``,
        ``autoscale_wait_p99_ms``, ``autoscale_cap``, ``autoscale_resizes``."""
        last = self.last
        return {
            "autoscale_demand": round(last.demand, 3) if last is not None else 0.0,
            "autoscale_wait_p99_ms": round(last.wait_p99 * 1000.0, 3) if last is not None else 0.0,
            "autoscale_cap": self.cap(state, now),
            "autoscale_resizes": self.resizes,
        }

    # -- internals ----------------------------------------------------------------

    def _note_refusal(self, state: PoolState, now: float) -> None:
        """A connection attempt refused because the server is full caps the
        target at the size the pool has, for `FULL_HOLD` seconds."""
        error = state.last_error
        if (
            state.failures
            and getattr(error, "reason", None) == "too-many-connections"
            and now >= self._full_until
        ):
            self._full_until = now + FULL_HOLD
            self._full_size = len(state.slots)

    def _span(self, seconds: float, now: float) -> list[Sample] | None:
        """The samples of the last ``seconds`` (the latest one at least), or
        None if they do not reach back that far."""
        samples = self._samples
        if not samples:
            return None
        chosen = [s for s in samples if s.at > now - seconds + _EPSILON] or [samples[-1]]
        if chosen[0].start > now - seconds + _EPSILON:
            return None  # not sampled long enough yet
        return chosen

    def _why_grow(self, grow: list[Sample], new: int, cap: int) -> str:
        last = grow[-1]
        text = (
            f"demand {last.demand:.1f} connections over {last.window:.2g} s "
            f"(in use {last.in_use}, waiting {last.waiting}; wait p99 "
            f"{last.wait_p99 * 1000.0:.1f} ms)"
        )
        if new == cap and math.ceil(last.demand * (1.0 + self.options.headroom) - 1e-9) > cap:
            text += f"; capped at {cap}" + (
                f" (the server leaves {self.room})"
                if self.room is not None and self.room == cap
                else ""
            )
        return text

    def _lower_to(self, cap: int, target: int, now: float) -> Decision:
        if now < self._full_until and self._full_size <= cap:
            detail = f"the server refused a connection as full at size {self._full_size}"
        else:
            detail = f"the server leaves {self.room} connections to this pool"
        return self._decide(cap, target, "server_room", detail, now)

    def _decide(self, new: int, target: int, reason: str, detail: str, now: float) -> Decision:
        self.reason, self.detail, self.changed_at = reason, detail, now
        self.resizes += 1
        return Decision(new, target, reason, detail)


def _read(state: PoolState, now: float) -> _Reading:
    """Running totals of ``state`` at ``now``, including connections still
    held and callers still waiting (O(size + waiters), under the lock)."""
    held = state.usage_time
    for slot in state.slots.values():
        if slot.in_use:
            held += now - slot.acquired_at
    waited = state.wait_time
    for waiter in state.waiters:
        waited += now - waiter.since
    return _Reading(now, held + waited, state.n_acquired)


def _wait_p99(state: PoolState, since: int, until: int) -> float:
    """The 99th percentile wait of acquisitions ``since < n <= until``, those
    that did not wait counting as 0 (from `PoolState.recent_waits`; only
    the ring's last entries are known when more waited)."""
    total = until - since
    if total <= 0:
        return 0.0
    waits = sorted(w for w, n in state.recent_waits if n > since)
    rank = max(1, math.ceil(0.99 * total))
    zeros = total - len(waits)
    if rank <= zeros:
        return 0.0
    return waits[min(rank - zeros, len(waits)) - 1]
