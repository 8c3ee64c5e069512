"""The autoscaler's pure decision and the core's autoscaled sizes, with a fake
clock, property tests and a Hypothesis state machine."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pgharbor import Autoscale, ConfigError, ConnectionFailed
from pgharbor._policy.autoscale import (
    FULL_HOLD,
    AutoscalePolicy,
    Decision,
    autoscale_option,
    desired_size,
)
from pgharbor._policy.options import PoolOptions
from pgharbor._policy.pool import CHECK, DISCARD, Io, PoolState, Slot
from pgharbor.facts import ServerRoom, parse_room
from pgharbor.metrics import RESIZE_REASONS


class Conn:
    """A stand-in for a driver connection: the core never looks inside."""


class Waiting:
    """A waiter: the core only reads when it started waiting."""

    def __init__(self, name: str = "w", since: float = 0.0) -> None:
        self.name = name
        self.since = since

    def __repr__(self) -> str:
        return self.name


def make(min_size: int = 2, max_size: int = 40, **kw: Any) -> PoolState:
    opts = PoolOptions(min_size=min_size, max_size=max_size, max_lifetime=None, **kw)
    return PoolState(opts, rng=random.Random(1), autoscale=True)


def open_all(state: PoolState, now: float) -> list[Io]:
    """Open every connection the core asks for; the I/O it returned."""
    n, _ = state.plan_connects(now)
    return [state.connected(Conn(), now) for _ in range(n)]


class Load:
    """Callers against a `PoolState`: ``hold`` connections held, the rest of
    ``callers`` waiting — as a closed loop of workers looks between samples."""

    def __init__(self, state: PoolState) -> None:
        self.state = state
        self.held: list[Slot] = []
        self.waiting: list[Waiting] = []

    def set(self, callers: int, now: float) -> None:
        """Make ``callers`` want a connection now (as many as can hold one)."""
        st = self.state
        while len(self.held) + len(self.waiting) > callers:
            if self.waiting:
                waiter = self.waiting.pop()
                assert st.dequeue(waiter, timed_out=False)
            else:
                self._apply(st.checkin(self.held.pop(), now, True))
        while len(self.held) + len(self.waiting) < callers:
            slot = st.checkout(now)
            if slot is not None:
                if slot.verdict == CHECK:
                    st.check_passed(slot, now)
                assert slot.verdict != DISCARD
                self.held.append(slot)
                continue
            waiter = Waiting(f"w{len(self.waiting)}", now)
            self.waiting.append(waiter)
            self._apply(st.enqueue(waiter, now))

    def settle(self, now: float) -> None:
        """Open what the core asks for: new connections serve the waiters."""
        for io in open_all(self.state, now):
            self._apply(io)

    def _apply(self, io: Io | None) -> None:
        if io is None:
            return
        for waiter, slot in io.handoff:
            self.waiting.remove(waiter)
            self.held.append(slot)


def run(
    policy: AutoscalePolicy, load: Load, callers: int, start: float, seconds: float
) -> tuple[float, list[Decision]]:
    """Hold ``callers`` for ``seconds``, sampling every interval; apply every
    decision (connections open at once). Returns the time and the decisions."""
    state, now, decisions = load.state, start, []
    step = policy.options.interval
    end = start + seconds
    while now < end - 1e-9:
        load.set(callers, now)
        now = round(now + step, 9)
        decision = policy.sample(state, now)
        if decision is not None:
            decisions.append(decision)
            state.retarget(decision.target)
            state.maintain(now)
        load.settle(now)
    return now, decisions


# -- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval": 0}, "autoscale.interval"),
        ({"interval": 0.001}, "autoscale.interval"),
        ({"window": 0.2, "interval": 0.5}, "autoscale.window"),
        ({"grow_after": -1}, "autoscale.grow_after"),
        ({"grow_after": math.nan}, "autoscale.grow_after"),
        ({"shrink_after": 0.1, "grow_after": 0.5}, "autoscale.shrink_after"),
        ({"headroom": -0.1}, "autoscale.headroom"),
        ({"headroom": True}, "autoscale.headroom"),
        ({"headroom": "0.2"}, "autoscale.headroom"),
        ({"server_room": 1}, "autoscale.server_room"),
    ],
)
def test_bad_options_name_their_field(kwargs: dict[str, Any], field: str) -> None:
    """Each out-of-bounds option fails at construction, naming it."""
    with pytest.raises(ConfigError) as info:
        Autoscale(**kwargs)
    assert info.value.field == field


def test_the_autoscale_argument_needs_a_range() -> None:
    """autoscale= is off (None/False), the defaults (True) or an Autoscale,
    and only on a pool that may move between min_size and max_size."""
    assert autoscale_option(None, 1, 5) is None
    assert autoscale_option(False, 1, 5) is None
    assert autoscale_option(True, 1, 5) == Autoscale()
    custom = Autoscale(shrink_after=3.0)
    assert autoscale_option(custom, 0, 1) is custom
    with pytest.raises(ConfigError, match=r"max_size \(5\) must be above min_size \(5\)"):
        autoscale_option(True, 5, 5)
    with pytest.raises(ConfigError, match=r"must be True, False, None or a pgharbor\.Autoscale"):
        autoscale_option("yes", 1, 5)


@given(
    demand=st.floats(0, 1000),
    more=st.floats(0, 100),
    headroom=st.floats(0, 10),
    floor=st.integers(0, 50),
    extra=st.integers(1, 100),
)
def test_desired_size_is_bounded_monotonic_and_covers_the_demand(
    demand: float, more: float, headroom: float, floor: int, extra: int
) -> None:
    """The desired size stays within [floor, cap], never falls as the demand
    rises, and covers the demand (with its headroom) whenever the cap allows."""
    cap = floor + extra
    size = desired_size(demand, headroom, floor, cap)
    assert floor <= size <= cap
    assert desired_size(demand + more, headroom, floor, cap) >= size
    if size < cap:
        assert size >= demand * (1 + headroom) - 1e-6


def test_an_exact_demand_asks_for_exactly_that() -> None:
    """A demand of exactly 10 with no headroom asks for 10, not 11."""
    assert desired_size(10.0, 0.0, 0, 40) == 10
    assert desired_size(10.0, 0.2, 0, 40) == 12


# -- the core ------------------------------------------------------------------------


def test_an_autoscaled_core_opens_its_whole_target_at_once() -> None:
    """Raising the target asks for every missing connection in one go, and
    waiters never grow an autoscaled pool past its target."""
    state = make(min_size=2, max_size=40)
    open_all(state, 0.0)
    assert state.size == 2 and state.stats()["target_size"] == 2
    for i in range(5):
        state.checkout(0.0) if i < 2 else state.enqueue(Waiting(f"w{i}"), 0.0)
    assert state.plan_connects(0.0) == (0, None)  # waiters alone do not grow it
    assert state.retarget(12).wake
    assert state.plan_connects(0.0) == (10, None)
    state.check_invariants()


def test_retarget_stays_in_bounds_and_closes_idle_surplus() -> None:
    """The target is kept in [min_size, max_size]; idle connections above a
    lower target close at once (oldest first, reason "resized"), in-use ones
    at the first maintenance after they come back."""
    state = make(min_size=2, max_size=10)
    state.retarget(99)
    assert state.target == 10
    open_all(state, 0.0)
    held = [state.checkout(1.0) for _ in range(4)]
    io = state.retarget(0)
    assert state.target == 2
    assert len(io.close) == 6 and {s.reason for s in io.close} == {"resized"}
    assert state.size == 4
    for slot in held:
        assert slot is not None
        state.checkin(slot, 2.0, True)
    io, _ = state.maintain(2.0)
    assert len(io.close) == 2 and state.size == 2
    state.check_invariants()


def test_resize_keeps_the_target_within_the_new_bounds() -> None:
    """resize() clamps an autoscaled target into the new range."""
    state = make(min_size=2, max_size=40)
    state.retarget(30)
    state.resize(PoolOptions(min_size=2, max_size=20, max_lifetime=None))
    assert state.target == 20
    state.resize(PoolOptions(min_size=25, max_size=40, max_lifetime=None))
    assert state.target == 25


def test_resize_below_connections_in_use_trims_them_once_idle() -> None:
    """A plain pool shrunk by resize() while its connections are in use gets
    back under its new max_size at the next maintenance after they return."""
    state = PoolState(PoolOptions(min_size=4, max_size=4, max_lifetime=None))
    open_all(state, 0.0)
    held = [state.checkout(0.0) for _ in range(4)]
    state.resize(PoolOptions(min_size=1, max_size=2, max_lifetime=None))
    for slot in held:
        assert slot is not None
        state.checkin(slot, 1.0, True)
    io, _ = state.maintain(1.0)
    assert state.size == 2 and [s.reason for s in io.close] == ["resized", "resized"]


def test_max_idle_counts_from_the_target_when_autoscaled() -> None:
    """Idle connections within an autoscaled target are not retired by
    max_idle (shrink_after is the autoscaler's job)."""
    state = make(min_size=1, max_size=10, max_idle=5.0)
    state.retarget(6)
    open_all(state, 0.0)
    io, _ = state.maintain(100.0)
    assert not io.close and state.size == 6


def test_the_first_waiter_wakes_a_sleeping_autoscaler_once() -> None:
    """wake_on_wait turns the next enqueue into a wake-up, once."""
    state = make(min_size=1, max_size=5)
    open_all(state, 0.0)
    state.checkout(0.0)
    state.wake_on_wait = True
    io = state.enqueue(Waiting("a"), 0.0)
    assert io is not None and io.wake and not state.wake_on_wait
    assert state.enqueue(Waiting("b"), 0.0) is None


def test_a_pool_scaled_to_nothing_opens_one_for_a_waiter() -> None:
    """With min_size=0 and no connection, the first waiter gets one opened
    at once rather than waiting for the next sample."""
    state = make(min_size=0, max_size=5)
    assert state.plan_connects(0.0) == (0, None)
    io = state.enqueue(Waiting("a"), 0.0)
    assert io is not None and io.wake and state.target == 1
    assert state.plan_connects(0.0) == (1, None)


# -- the policy ----------------------------------------------------------------------


def test_a_step_up_grows_at_once_to_the_demand_with_headroom() -> None:
    """From 2 callers to 40 on a pool of 2 (max 60): one sample after the
    baseline sees a demand of 40 and grows to 48 at once, saying why."""
    state = make(min_size=2, max_size=60)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale()), Load(state)
    load.set(40, 0.0)
    assert policy.sample(state, 0.0) is None  # the baseline
    decision = policy.sample(state, 0.5)
    assert decision is not None
    assert (decision.previous, decision.target, decision.reason) == (2, 48, "demand")
    assert "demand 40.0 connections" in decision.detail and "waiting 38" in decision.detail
    assert decision.reason in RESIZE_REASONS


def test_grow_after_asks_for_sustained_demand() -> None:
    """With grow_after=1.0 (two samples), one busy sample is not enough."""
    state = make(min_size=2, max_size=40)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale(grow_after=1.0)), Load(state)
    policy.sample(state, 0.0)
    load.set(10, 0.0)
    assert policy.sample(state, 0.5) is None
    decision = policy.sample(state, 1.0)
    assert decision is not None and decision.target == 12


def test_a_blip_does_not_grow_a_pool_that_asks_for_sustained_demand() -> None:
    """Demand above the target in one sample, gone in the next, changes nothing."""
    state = make(min_size=2, max_size=40)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale(grow_after=1.0, window=0.5)), Load(state)
    policy.sample(state, 0.0)
    load.set(20, 0.0)
    assert policy.sample(state, 0.5) is None
    load.set(1, 0.5)
    assert policy.sample(state, 1.0) is None
    assert state.target == 2


def test_shrinking_waits_for_shrink_after_and_keeps_the_recent_peak() -> None:
    """After the load falls from 40 to 2, the target holds for shrink_after,
    then falls to what the last shrink_after seconds asked for — never below
    min_size — and the pool idles at its floor once there."""
    state = make(min_size=2, max_size=40)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale(shrink_after=3.0)), Load(state)
    policy.sample(state, 0.0)
    now, grown = run(policy, load, 40, 0.0, 2.0)
    assert [d.reason for d in grown] == ["demand"] and state.target == 40
    quiet_from = now
    now, shrunk = run(policy, load, 2, now, 6.0)
    assert shrunk and {d.reason for d in shrunk} == {"quiet"}
    first = shrunk[0]
    # Not before shrink_after of quiet (the window's own second of decay included).
    assert policy.changed_at is not None and policy.changed_at > quiet_from
    assert all(d.target < d.previous for d in shrunk)
    assert first.previous == 40
    assert state.target == 3  # ceil(2 * 1.2)
    assert "for 3 s" in first.detail
    load.set(0, now)
    now, _ = run(policy, load, 0, now, 4.0)
    assert state.target == 2
    assert policy.next_at(state, now) is None and not policy.sampling


def test_hysteresis_holds_the_target_in_its_band() -> None:
    """A demand between target / (1 + headroom) and the target changes nothing."""
    state = make(min_size=2, max_size=40)
    state.retarget(12)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale(shrink_after=1.0)), Load(state)
    policy.sample(state, 0.0)
    for callers in (10, 11, 12, 10):
        _, decisions = run(policy, load, callers, policy.last.at if policy.last else 0.0, 3.0)
        assert decisions == [], callers
    assert state.target == 12


def test_the_sampler_sleeps_only_idle_at_the_floor() -> None:
    """next_at is None at the floor with nobody waiting; a waiter, a target
    above the floor or a pool larger than its target keep it sampling."""
    state = make(min_size=2, max_size=10)
    open_all(state, 0.0)
    policy = AutoscalePolicy(Autoscale())
    assert policy.next_at(state, 0.0) is None
    state.checkout(0.0), state.checkout(0.0)
    state.enqueue(Waiting("w"), 0.0)
    assert policy.next_at(state, 0.0) == 0.5
    state.dequeue(state.waiters[0], timed_out=False)
    state.retarget(5)
    assert policy.next_at(state, 1.0) == 1.5
    state.close()
    assert policy.next_at(state, 2.0) is None


def test_a_fresh_window_after_a_quiet_spell() -> None:
    """The first sample after sleeping is a baseline: a long quiet spell does
    not dilute the demand measured once callers wait again."""
    state = make(min_size=2, max_size=40)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale()), Load(state)
    policy.sample(state, 0.0)
    assert policy.next_at(state, 0.0) is None
    load.set(20, 100.0)
    assert policy.sample(state, 100.0) is None  # baseline
    decision = policy.sample(state, 100.5)
    assert decision is not None and decision.target == 24


def test_the_server_room_caps_growth_and_lowers_a_target_above_it() -> None:
    """With room for 10 (6 free beside the pool's 4), a demand of 40 grows to
    10 only; room shrinking below the target lowers it ("server_room")."""
    state = make(min_size=2, max_size=40)
    state.retarget(4)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale()), Load(state)
    policy.note_room(free=6, own=4)
    assert policy.cap(state, 0.0) == 10
    policy.sample(state, 0.0)
    load.set(40, 0.0)
    decision = policy.sample(state, 0.5)
    assert decision is not None and decision.target == 10
    assert "capped at 10 (the server leaves 10)" in decision.detail
    state.retarget(10)
    policy.note_room(free=-2, own=10)
    decision = policy.sample(state, 1.0)
    assert decision is not None and (decision.target, decision.reason) == (8, "server_room")
    assert policy.cap(state, 1.0) == 8


def test_the_cap_never_falls_below_min_size_and_can_be_off() -> None:
    """No room at all still allows min_size; server_room=False ignores it."""
    state = make(min_size=3, max_size=40)
    policy = AutoscalePolicy(Autoscale())
    policy.note_room(free=-50, own=0)
    assert policy.room == 0 and policy.cap(state, 0.0) == 3
    assert AutoscalePolicy(Autoscale(server_room=False)).cap(state, 0.0) == 40


def test_a_full_server_caps_at_the_current_size_for_a_while() -> None:
    """A connection attempt refused with too_many_connections caps the target
    at the size the pool has for FULL_HOLD seconds, then growth is tried again."""
    state = make(min_size=2, max_size=40)
    state.retarget(10)
    open_all(state, 0.0)
    state.retarget(20)
    n, _ = state.plan_connects(0.0)
    state.connect_failed(ConnectionFailed("full", reason="too-many-connections"), 0.0)
    policy = AutoscalePolicy(Autoscale())
    decision = policy.sample(state, 0.1)
    assert decision is not None and (decision.target, decision.reason) == (10, "server_room")
    assert "refused a connection as full at size 10" in decision.detail
    assert policy.cap(state, 0.1 + FULL_HOLD - 0.01) == 10
    assert policy.cap(state, 0.1 + FULL_HOLD) == 40
    assert n == 10  # all at once; the other nine are still on their way


def test_wait_p99_counts_immediate_acquisitions_as_zero() -> None:
    """The window's wait p99 is 0 when at most 1 % of acquisitions waited."""
    state = make(min_size=1, max_size=5)
    open_all(state, 0.0)
    policy = AutoscalePolicy(Autoscale())
    policy.sample(state, 0.0)
    for _ in range(200):
        slot = state.checkout(0.1)
        assert slot is not None
        state.checkin(slot, 0.1, True)
    slot = state.checkout(0.2)
    assert slot is not None
    waiter = Waiting("late", 0.2)
    state.enqueue(waiter, 0.2)
    state.checkin(slot, 0.3, True)  # handed to the waiter after 0.1 s
    policy.sample(state, 0.5)
    assert policy.last is not None and policy.last.wait_p99 == 0.0
    status = policy.status(state, 0.5)
    assert status.samples == 2 and status.target == 1 and status.resizes == 0


def test_stats_and_status_say_where_the_pool_stands() -> None:
    """stats() numbers and the status agree after a change."""
    state = make(min_size=2, max_size=40)
    open_all(state, 0.0)
    policy, load = AutoscalePolicy(Autoscale()), Load(state)
    policy.sample(state, 0.0)
    load.set(10, 0.0)
    decision = policy.sample(state, 0.5)
    assert decision is not None
    state.retarget(decision.target)
    status = policy.status(state, 0.5)
    assert (status.target, status.reason, status.resizes, status.cap) == (12, "demand", 1, 40)
    assert status.detail == decision.detail and status.changed_at == 0.5
    assert policy.stats(state, 0.5) == {
        "autoscale_demand": 10.0,
        "autoscale_wait_p99_ms": pytest.approx(0.0),
        "autoscale_cap": 40,
        "autoscale_resizes": 1,
    }
    assert state.stats()["target_size"] == 12


def test_room_from_the_server_row() -> None:
    """ServerRoom's free slots: the tightest limit that binds the role."""
    row = (100, 3, 0, False, 10, None, 40, 7, 20)
    room = parse_room(row)
    assert room.free == 3  # the role's CONNECTION LIMIT 10, 7 used
    assert parse_room((100, 3, 2, False, None, 30, 40, 7, 20)).free == 10  # the database's
    assert parse_room((100, 3, 2, False, None, None, 40, 7, 20)).free == 55
    superuser = ServerRoom(100, 3, 2, True, 1, 1, 40, 7, 20)
    assert superuser.free == 58  # CONNECTION LIMIT does not bind superusers
    with pytest.raises(ValueError, match="9 columns"):
        parse_room((1, 2))


# -- the state machine ---------------------------------------------------------------


class AutoscaledMachine(RuleBasedStateMachine):
    """Random callers, returns, connects, room readings and samples on an
    autoscaled pool: the bookkeeping holds, the target stays within its
    bounds, and it changes only for a stated reason that the sample shows."""

    def __init__(self) -> None:
        super().__init__()
        self.state = make(min_size=1, max_size=12, max_waiting=30)
        self.policy = AutoscalePolicy(
            Autoscale(window=0.2, interval=0.1, grow_after=0.2, shrink_after=0.6)
        )
        self.load = Load(self.state)
        self.now = 0.0

    @rule(callers=st.integers(0, 30))
    def callers(self, callers: int) -> None:
        self.load.set(callers, self.now)

    @rule(ok=st.booleans())
    def connect(self, ok: bool) -> None:
        n, _ = self.state.plan_connects(self.now)
        for _ in range(n):
            if ok:
                self.load._apply(self.state.connected(Conn(), self.now))
            else:
                error = ConnectionFailed("full", reason="too-many-connections")
                self.load._apply(self.state.connect_failed(error, self.now))

    @rule(dt=st.floats(0.01, 1.0))
    def sample(self, dt: float) -> None:
        self.now += dt
        before = self.state.target
        decision = self.policy.sample(self.state, self.now)
        if decision is None:
            return
        assert decision.previous == before
        assert decision.reason in RESIZE_REASONS
        last = self.policy.last
        if decision.reason == "demand":
            assert before is not None and decision.target > before
            assert last is not None and last.demand > before
        else:
            assert before is not None and decision.target < before
        self.load._apply(self.state.retarget(decision.target))

    @precondition(lambda self: self.state.size > 0)
    @rule()
    def maintain(self) -> None:
        self.state.maintain(self.now)

    @rule(free=st.integers(-3, 6))
    def room(self, free: int) -> None:
        self.policy.note_room(free, self.state.size)

    @invariant()
    def consistent(self) -> None:
        self.state.check_invariants()
        target = self.state.target
        opts = self.state.options
        assert target is not None and opts.min_size <= target <= opts.max_size
        assert self.state.size + self.state.connecting <= opts.max_size
        assert self.policy.cap(self.state, self.now) >= opts.min_size


AutoscaledMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestAutoscaledMachine = AutoscaledMachine.TestCase
