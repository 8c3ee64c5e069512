"""The pure pool core: decisions with a fake clock, and a Hypothesis state machine."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from pgharbor._policy.backoff import Backoff
from pgharbor._policy.breaker import Breaker, BreakerOptions
from pgharbor._policy.options import PoolOptions
from pgharbor._policy.pool import CHECK, DISCARD, OK, Io, PoolState, Slot
from pgharbor.errors import ConfigError, ConnectionFailed, PoolClosed, TooManyRequests


class Conn:
    """A stand-in for a driver connection: the core never looks inside."""

    def __repr__(self) -> str:
        return f"<Conn {id(self):x}>"


class Waiting:
    """A waiter: the core only reads when it started waiting."""

    def __init__(self, name: str = "w", since: float = 0.0) -> None:
        self.name = name
        self.since = since

    def __repr__(self) -> str:
        return self.name


def make(**kw: object) -> PoolState:
    opts = {"min_size": 2, "max_size": 4, "max_lifetime": None, **kw}
    return PoolState(PoolOptions(**opts), rng=random.Random(1))  # type: ignore[arg-type]


def fill(state: PoolState, now: float = 0.0) -> list[Slot]:
    """Open as many connections as the core asks for; return their slots."""
    n, _ = state.plan_connects(now)
    for _ in range(n):
        state.connected(Conn(), now)
    return list(state.idle)


def test_warm_up_asks_for_min_size_in_parallel() -> None:
    """A fresh pool asks for min_size connections at once."""
    state = make(min_size=3, max_size=5)
    assert state.plan_connects(0.0) == (3, None)
    assert state.connecting == 3
    assert state.plan_connects(0.0) == (0, None)  # already reserved


def test_checkout_is_lifo_and_skips_check_inside_window() -> None:
    """The most recently returned connection is lent first, unchecked when fresh."""
    state = make(check_window=0.5)
    _, b = fill(state)
    slot = state.checkout(0.1)
    assert slot is b and slot.verdict == OK
    state.checkin(slot, 0.2, healthy=True)
    assert state.checkout(0.3) is b


def test_checkout_checks_after_idle_window() -> None:
    """A connection idle longer than check_window must be pinged first."""
    state = make(check_window=0.5)
    fill(state)
    slot = state.checkout(1.0)
    assert slot is not None and slot.verdict == CHECK
    state.check_passed(slot, 1.0)
    assert slot.verdict == OK
    assert state.stats()["checks"] == 1


def test_failed_check_discards_every_older_idle_connection() -> None:
    """After one failed check the rest are dropped without another check."""
    state = make(min_size=4, max_size=4)
    fill(state)
    slot = state.checkout(5.0)
    assert slot is not None and slot.verdict == CHECK
    io = state.check_failed(slot, 5.0)
    assert len(io.close) == 4 and io.wake
    assert state.size == 0 and not state.idle
    assert state.stats()["checks_failed"] == 1
    assert state.checkout(5.0) is None
    assert state.plan_connects(5.0) == (4, None)
    state.check_invariants()


def test_broken_return_makes_older_idle_connections_suspect() -> None:
    """A broken connection returned makes its older siblings checked at checkout."""
    state = make(check_window=10.0)
    a, b = fill(state)
    lent = state.checkout(0.0)
    assert lent is b
    io = state.checkin(lent, 0.1, healthy=False)
    assert io is not None and io.close == [b]
    slot = state.checkout(0.2)
    assert slot is a and slot.verdict == CHECK  # suspect, despite the window
    fresh = state.connected(Conn(), 0.3)
    assert not fresh.handoff
    state.checkin(slot, 0.3, healthy=True)


def test_lifetime_enforced_at_checkout_and_return() -> None:
    """Expired connections are discarded at checkout and at return, never in use."""
    state = make(max_lifetime=10.0, lifetime_jitter=0.0)
    fill(state, 0.0)
    slot = state.checkout(11.0)
    assert slot is not None and slot.verdict == DISCARD
    state.discard(slot, 11.0)
    state2 = make(max_lifetime=10.0, lifetime_jitter=0.0, check_window=60.0)
    fill(state2, 0.0)
    lent = state2.checkout(5.0)
    assert lent is not None and lent.verdict == OK
    io = state2.checkin(lent, 10.5, healthy=True)  # expired while in use
    assert io is not None and io.close == [lent]
    assert state2.stats()["connections_expired"] == 1


def test_lifetime_jitter_is_negative_and_bounded() -> None:
    """Connections opened together expire within 5 % before max_lifetime."""
    state = make(min_size=4, max_size=4, max_lifetime=100.0)
    slots = fill(state, 0.0)
    expiries = [s.expires_at for s in slots]
    assert all(95.0 <= e <= 100.0 for e in expiries)
    assert len(set(expiries)) > 1


def test_max_uses_retires_connection() -> None:
    """A connection is closed after max_uses checkouts."""
    state = make(max_uses=2)
    fill(state)
    for i in range(2):
        slot = state.checkout(float(i) * 0.1)
        assert slot is not None and slot.verdict == OK
        io = state.checkin(slot, float(i) * 0.1, healthy=True)
    assert io is not None and len(io.close) == 1


def test_waiters_get_returned_connections_fifo() -> None:
    """Returned connections go to the oldest waiter first."""
    state = make(min_size=1, max_size=1)
    fill(state)
    lent = state.checkout(0.0)
    assert lent is not None
    w1, w2 = Waiting("w1"), Waiting("w2")
    state.enqueue(w1, 0.0)
    state.enqueue(w2, 0.0)
    io = state.checkin(lent, 0.1, healthy=True)
    assert io is not None and io.handoff == [(w1, lent)]
    assert list(state.waiters) == [w2]
    state.check_invariants()


def test_max_waiting_rejects_at_once() -> None:
    """Beyond max_waiting, enqueue raises TooManyRequests naming the limit."""
    state = make(max_waiting=1)
    state.enqueue(Waiting(), 0.0)
    with pytest.raises(TooManyRequests, match="max_waiting=1"):
        state.enqueue(Waiting(), 0.0)
    assert state.stats()["rejected"] == 1


def test_dequeue_after_handoff_reports_it() -> None:
    """A waiter that gave up after being served learns it must give back."""
    state = make(min_size=1, max_size=1)
    fill(state)
    lent = state.checkout(0.0)
    assert lent is not None
    w1 = Waiting()
    state.enqueue(w1, 0.0)
    state.checkin(lent, 0.1, healthy=True)
    assert state.dequeue(w1, timed_out=True) is False
    assert state.stats()["timeouts"] == 0


def test_growth_beyond_min_is_one_at_a_time() -> None:
    """A spike of waiters grows the pool one connection at a time."""
    state = make(min_size=1, max_size=10)
    fill(state)
    assert state.checkout(0.0) is not None
    for i in range(20):
        state.enqueue(Waiting(f"w{i}"), 0.0)
    assert state.plan_connects(0.0) == (1, None)
    assert state.plan_connects(0.0) == (0, None)
    io = state.connected(Conn(), 0.15)
    assert io.handoff and io.wake
    assert state.plan_connects(0.15) == (1, None)


def test_connect_failures_back_off_one_attempt_at_a_time() -> None:
    """While failing, one attempt runs at a time, spaced by the backoff."""
    state = make(min_size=3, max_size=3, backoff=Backoff(initial=1.0, jitter=0.0))
    assert state.plan_connects(0.0) == (3, None)
    for _ in range(3):
        state.connect_failed(OSError("refused"), 0.0)
    assert state.plan_connects(0.5) == (0, 1.0)
    assert state.plan_connects(1.0) == (1, None)
    assert state.plan_connects(1.0) == (0, None)  # one at a time
    state.connect_failed(OSError("refused"), 1.0)
    # The three warm-up failures count as one round: delays 1 s, then 2 s, 4 s.
    assert state.plan_connects(1.5) == (0, 3.0)
    assert state.plan_connects(3.0) == (1, None)
    state.connect_failed(OSError("refused"), 3.0)
    assert state.plan_connects(3.5) == (0, 7.0)
    state.plan_connects(7.0)
    state.connected(Conn(), 7.0)
    assert state.failures == 0
    assert state.plan_connects(7.0) == (2, None)  # healthy again: the rest at once


def test_reconnect_failed_fires_once_per_outage() -> None:
    """reconnect_failed is signalled once after reconnect_timeout, then again
    only after a recovery and a new outage."""
    state = make(min_size=1, max_size=1, reconnect_timeout=10.0)
    fired = []
    now = 0.0
    for _ in range(8):
        n, retry_at = state.plan_connects(now)
        if n == 0:
            assert retry_at is not None
            now = retry_at
            continue
        fired.append(state.connect_failed(OSError("x"), now).reconnect_failed)
        now += 5.0
    assert fired.count(True) == 1


def test_fifo_lends_the_least_recently_returned_first() -> None:
    """With ``fifo`` (psycopg_pool's drop-in) connections are lent in turn."""
    state = make(check_window=0.5)
    state.fifo = True
    a, b = fill(state)
    assert state.checkout(0.1) is a
    state.checkin(a, 0.2, healthy=True)
    assert state.checkout(0.3) is b


def test_max_connecting_bounds_parallel_attempts() -> None:
    """``max_connecting`` (psycopg_pool's num_workers) caps attempts at once,
    warm-up and autoscaled targets included."""
    state = make(min_size=4, max_size=4)
    state.max_connecting = 1
    assert state.plan_connects(0.0) == (1, None)
    assert state.plan_connects(0.0) == (0, None)
    state.connected(Conn(), 0.1)
    assert state.plan_connects(0.1) == (1, None)


def test_reconnect_failed_rearmed_by_a_caller_after_it() -> None:
    """psycopg_pool's rule: after reconnect_failed fired, a caller re-arms it
    (a new reconnect_timeout from then); nothing to re-arm otherwise."""
    state = make(min_size=1, max_size=1, reconnect_timeout=10.0)
    assert not state.rearm_reconnect_failed(0.0)
    state.plan_connects(0.0)
    assert not state.connect_failed(OSError("x"), 0.0).reconnect_failed
    assert not state.rearm_reconnect_failed(1.0)  # not fired yet
    state.plan_connects(11.0)
    assert state.connect_failed(OSError("x"), 11.0).reconnect_failed
    assert state.rearm_reconnect_failed(12.0)
    assert state.failing_since == 12.0
    state.plan_connects(20.0)
    assert not state.connect_failed(OSError("x"), 20.0).reconnect_failed
    state.plan_connects(23.0)
    assert state.connect_failed(OSError("x"), 23.0).reconnect_failed


def test_lost_alone_keeps_the_idle_siblings() -> None:
    """With ``lost_alone`` (psycopg_pool's drop-in) a connection found dead is
    discarded alone; by default its idle siblings go with it."""
    for alone, left in ((False, 0), (True, 2)):
        state = make(min_size=3, max_size=3)
        state.lost_alone = alone
        fill(state)
        slot = state.checkout(0.0)
        assert slot is not None
        state.lost(slot, 0.0)
        assert len(state.idle) == left


def test_maintain_trims_surplus_idle_and_schedules() -> None:
    """Idle connections above min_size close after max_idle; others are kept."""
    state = make(min_size=1, max_size=3, max_idle=60.0, keepalive=None)
    fill(state)
    state.connected(Conn(), 0.0)
    assert state.size == 2
    io, due = state.maintain(30.0)
    assert not io.close and due == 60.0
    io, due = state.maintain(61.0)
    assert len(io.close) == 1 and state.size == 1


def test_checkin_without_keep_hands_over_or_closes() -> None:
    """``keep=False``: a returned connection goes to the oldest waiter if one
    waits, else it is closed (counted as expired, reason "idle"), whatever
    min_size says; an unhealthy one is discarded as always."""
    state = make(min_size=0, max_size=2)
    state.enqueue(Waiting("w0"), 0.0)
    n, _ = state.plan_connects(0.0)
    assert n == 1
    (_, lent) = state.connected(Conn(), 0.0).handoff[0]
    waiter = Waiting("w1", 0.1)
    queued = state.enqueue(waiter, 0.1)
    assert queued is None or not queued.handoff
    handed = state.checkin(lent, 0.2, healthy=True, keep=False)
    assert handed is not None and handed.handoff == [(waiter, lent)] and not handed.close
    closed = state.checkin(lent, 0.3, healthy=True, keep=False)
    assert closed is not None and closed.close == [lent] and lent.reason == "idle"
    assert state.size == 0 and not state.idle
    assert state.stats()["connections_expired"] == 1
    assert state.stats()["connections_lost"] == 0
    kept = make(min_size=1, max_size=1)
    (slot,) = fill(kept)
    assert kept.checkout(0.0) is slot
    refill = kept.checkin(slot, 0.1, healthy=True, keep=False)
    assert refill is not None and refill.close == [slot]
    assert kept.plan_connects(0.2) == (1, None)  # min_size is refilled as usual


def test_maintain_picks_keepalive_pings_and_leaks() -> None:
    """Idle connections past keepalive are pinged; long-held ones are leaks."""
    state = make(min_size=2, max_size=2, keepalive=100.0, max_idle=None, leak_threshold=5.0)
    fill(state)
    held = state.checkout(0.0)
    assert held is not None
    io, _ = state.maintain(101.0)
    assert len(io.ping) == 1 and io.leaks == [held]
    assert state.pinging == 1
    state.check_invariants()
    assert state.ping_done(io.ping[0], 101.5, ok=True) is None
    io, _ = state.maintain(102.0)
    assert not io.leaks  # reported once
    state.check_invariants()


def test_close_fails_waiters_and_closes_idle() -> None:
    """Closing fails every waiter with PoolClosed; in-use ones close on return."""
    state = make()
    fill(state)
    lent = state.checkout(0.0)
    assert lent is not None
    waiter = Waiting()
    state.waiters.append(waiter)  # pretend one is queued
    io = state.close()
    assert [w for w, _ in io.fail] == [waiter]
    assert isinstance(io.fail[0][1], PoolClosed)
    assert len(io.close) == 1
    after = state.checkin(lent, 1.0, healthy=True)
    assert after is not None and after.close == [lent]
    with pytest.raises(PoolClosed):
        state.enqueue(Waiting(), 0.0)
    assert state.plan_connects(1.0) == (0, None)


def test_drain_replaces_everything() -> None:
    """drain closes idle connections now and in-use ones at return."""
    state = make(min_size=2, max_size=2)
    fill(state)
    lent = state.checkout(0.0)
    assert lent is not None
    io = state.drain()
    assert len(io.close) == 1 and io.wake
    after = state.checkin(lent, 0.1, healthy=True)
    assert after is not None and after.close == [lent]


def test_resize_validates_and_shrinks() -> None:
    """resize applies new sizes and closes idle connections above the maximum."""
    state = make(min_size=4, max_size=4)
    fill(state)
    io = state.resize(state.options.with_sizes(1, 2))
    assert len(io.close) == 2 and state.size == 2
    with pytest.raises(ConfigError, match="min_size"):
        state.options.with_sizes(5, 2)


def test_stats_counts_waits_and_usage() -> None:
    """stats reports sizes and counters in milliseconds; a served waiter's wait
    is counted when it is served."""
    state = make(min_size=1, max_size=1)
    fill(state)
    slot = state.checkout(0.0)
    assert slot is not None
    waiter = Waiting(since=0.25)
    state.enqueue(waiter, 0.0)
    io = state.checkin(slot, 0.75, healthy=True)
    assert io is not None and io.handoff == [(waiter, slot)]
    state.checkin(slot, 1.0, healthy=True)
    stats = state.stats()
    assert stats["usage_ms"] == 1000.0 and stats["wait_ms"] == 500.0
    assert stats["waited"] == 1 and stats["acquired"] == 2
    assert stats["size"] == 1 and stats["idle"] == 1 and stats["in_use"] == 0


def test_io_defaults_are_independent() -> None:
    """Each Io carries its own lists."""
    a, b = Io(), Io()
    a.to_close(object())  # type: ignore[arg-type]
    a.to_close(object())  # type: ignore[arg-type]
    assert len(a.close) == 2 and not b.close and not Io().close


class PoolMachine(RuleBasedStateMachine):
    """Random sequences of pool events never break the bookkeeping."""

    lent = Bundle("lent")

    def __init__(self) -> None:
        super().__init__()
        self.state = PoolState(
            PoolOptions(
                min_size=1,
                max_size=4,
                max_lifetime=50.0,
                max_idle=20.0,
                keepalive=15.0,
                max_uses=5,
                leak_threshold=30.0,
                max_waiting=6,
            ),
            rng=random.Random(0),
        )
        self.now = 0.0
        self.waiting: list[Waiting] = []
        self.pings: list[Slot] = []
        self.served: dict[Waiting, Slot] = {}
        self.n = 0

    def apply(self, io: Io | None) -> None:
        if io is None:
            return
        for waiter, slot in io.handoff:
            self.served[waiter] = slot
            self.waiting.remove(waiter)
        for waiter, _ in io.fail:
            self.waiting.remove(waiter)
        self.pings.extend(io.ping)

    @rule(dt=st.floats(0, 10))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(target=lent)
    def acquire(self) -> object:
        while True:
            slot = self.state.checkout(self.now)
            if slot is None:
                break
            if slot.verdict == DISCARD:
                self.apply(self.state.discard(slot, self.now))
                continue
            if slot.verdict == CHECK:
                self.state.check_passed(slot, self.now)
            return slot
        if self.state.closed:
            return None
        self.n += 1
        waiter = Waiting(f"w{self.n}", self.now)
        try:
            self.apply(self.state.enqueue(waiter, self.now))
        except TooManyRequests:
            return None
        self.waiting.append(waiter)
        return None

    @rule(target=lent)
    def take_served(self) -> object:
        if not self.served:
            return None
        _, slot = self.served.popitem()
        return slot

    @rule(slot=consumes(lent), healthy=st.booleans(), keep=st.booleans())
    def release(self, slot: Slot | None, healthy: bool, keep: bool) -> None:
        if slot is None:
            return
        self.apply(self.state.checkin(slot, self.now, healthy, keep))

    @rule(ok=st.booleans())
    def connect(self, ok: bool) -> None:
        n, _ = self.state.plan_connects(self.now)
        for _ in range(n):
            if ok:
                self.apply(self.state.connected(Conn(), self.now))
            else:
                self.apply(self.state.connect_failed(OSError("down"), self.now))

    @rule()
    def maintain(self) -> None:
        io, due = self.state.maintain(self.now)
        assert due is None or math.isfinite(due)
        self.apply(io)

    @precondition(lambda self: bool(self.pings))
    @rule(ok=st.booleans())
    def finish_ping(self, ok: bool) -> None:
        self.apply(self.state.ping_done(self.pings.pop(), self.now, ok))

    @precondition(lambda self: bool(self.waiting))
    @rule(data=st.data())
    def give_up(self, data: st.DataObject) -> None:
        waiter = data.draw(st.sampled_from(self.waiting))
        if self.state.dequeue(waiter, timed_out=True):
            self.waiting.remove(waiter)

    @rule()
    def fail_a_check(self) -> None:
        slot = self.state.checkout(self.now)
        if slot is not None:
            self.apply(self.state.check_failed(slot, self.now))

    @rule()
    def drain(self) -> None:
        self.apply(self.state.drain())

    @invariant()
    def consistent(self) -> None:
        self.state.check_invariants()
        assert list(self.state.waiters) == self.waiting
        stats = self.state.stats()
        assert stats["size"] == stats["idle"] + stats["in_use"] + self.state.pinging
        assert stats["size"] + stats["connecting"] <= 4


PoolMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestPoolMachine = PoolMachine.TestCase


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_size": -1}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"min_size": 6, "max_size": 5}, "min_size"),
        ({"max_size": True}, "max_size"),
        ({"max_size": "5"}, "max_size"),
        ({"max_size": 10**7}, "max_size"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"max_lifetime": 0}, "max_lifetime"),
        ({"max_idle": -5}, "max_idle"),
        ({"check_window": -0.1}, "check_window"),
        ({"max_uses": 0}, "max_uses"),
        ({"max_waiting": -1}, "max_waiting"),
        ({"leak_threshold": float("nan")}, "leak_threshold"),
        ({"lifetime_jitter": 1.5}, "lifetime_jitter"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """Every invalid option fails at construction with a ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        PoolOptions(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(field)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": 0}, "backoff.initial"),
        ({"multiplier": 0.5}, "backoff.multiplier"),
        ({"initial": 2.0, "max_delay": 1.0}, "backoff.max_delay"),
        ({"jitter": 1.0}, "backoff.jitter"),
        ({"initial": float("nan")}, "backoff.initial"),
    ],
)
def test_bad_backoff_names_the_field(kwargs: dict[str, object], field: str) -> None:
    """Backoff nonsense fails with the field named."""
    with pytest.raises(ConfigError) as info:
        Backoff(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_backoff_doubles_within_jitter_and_caps() -> None:
    """Delays double, stay within ±jitter, and never exceed the cap (+jitter)."""
    backoff = Backoff(initial=0.1, multiplier=2.0, max_delay=5.0, jitter=0.1)
    assert backoff.delay(0, 0.5) == pytest.approx(0.1)
    assert backoff.delay(3, 0.5) == pytest.approx(0.8)
    assert 0.09 <= backoff.delay(0, 0.0) <= 0.11
    assert backoff.delay(1000, 0.999) <= 5.5


def test_maintain_never_asks_to_wake_itself_while_backing_off() -> None:
    """During a backoff, maintenance schedules the retry instead of waking at once."""
    state = make(min_size=1, max_size=1, backoff=Backoff(initial=1.0, jitter=0.0))
    state.plan_connects(0.0)
    state.connect_failed(OSError("refused"), 0.0)
    io, due = state.maintain(0.1)
    assert not io.wake and due == 1.0


def test_first_idle_connection_schedules_maintenance() -> None:
    """Maintenance that had nothing to watch is woken when a connection goes idle."""
    state = make(min_size=1, max_size=1, keepalive=30.0)
    state.plan_connects(0.0)
    assert state.connected(Conn(), 0.0).wake
    slot = state.checkout(0.0)
    assert slot is not None
    _, due = state.maintain(0.0)  # all in use: nothing due
    assert due is None
    woke = state.checkin(slot, 1.0, healthy=True)
    assert woke is not None and woke.wake
    _, due = state.maintain(1.0)
    assert due == 31.0
    again = state.checkout(2.0)
    assert again is not None
    assert state.checkin(again, 2.0, healthy=True) is None  # already scheduled


def test_nudge_ends_the_backoff_delay_but_not_the_breaker() -> None:
    """A probe that reached the server makes the next attempt due now."""
    st = PoolState(PoolOptions(min_size=1, max_size=1, backoff=Backoff(initial=5.0)))
    n, _ = st.plan_connects(0.0)
    assert n == 1
    st.connect_failed(ConnectionFailed("refused"), 0.0)
    assert st.plan_connects(1.0) == (0, st.next_attempt_at)
    io = st.nudge(1.0)
    assert io is not None and io.wake
    assert st.plan_connects(1.0)[0] == 1
    assert st.nudge(1.0) is None  # nothing to end: an attempt is on its way

    br = PoolState(
        PoolOptions(min_size=1, max_size=1, backoff=Backoff(initial=0.01)),
        breaker=Breaker(BreakerOptions(failure_threshold=1, reset_timeout=10.0)),
    )
    br.plan_connects(0.0)
    br.connect_failed(ConnectionFailed("refused"), 0.0)
    br.nudge(1.0)
    assert br.plan_connects(1.0)[0] == 0  # the breaker is still open


def test_wait_percentiles_cover_recent_acquisitions() -> None:
    """Immediate acquisitions count as zero waits; the p99 sees the slow ones."""
    st = PoolState(PoolOptions(min_size=1, max_size=1, check_window=100.0))
    assert st.stats()["wait_p99_ms"] == 0.0
    st.plan_connects(0.0)
    st.connected(Conn(), 0.0)
    now = 0.0
    for i in range(100):
        now += 1.0
        slot = st.checkout(now)
        assert slot is not None and slot.verdict == OK
        if i % 10 == 0:  # every tenth caller waits 0.2 s for the holder
            waiter = Waiting(since=now)
            st.enqueue(waiter, now)
            io = st.checkin(slot, now + 0.2, healthy=True)
            assert io is not None and io.handoff == [(waiter, slot)]
            st.checkin(slot, now + 0.3, healthy=True)
        else:
            st.checkin(slot, now + 0.001, healthy=True)
    stats = st.stats()
    assert stats["waited"] == 10 and stats["acquired"] == 110
    assert stats["wait_p50_ms"] == 0.0
    assert stats["wait_p99_ms"] == pytest.approx(200.0)


def test_enqueue_hands_over_a_connection_that_came_back_meanwhile() -> None:
    """Threads: a connection returned between a caller's checkout and its
    enqueue is handed to it, instead of the caller queueing beside it."""
    st = PoolState(PoolOptions(min_size=1, max_size=1))
    st.plan_connects(0.0)
    st.connected(Conn(), 0.0)
    slot = st.checkout(0.1)
    assert slot is not None
    assert st.checkout(0.1) is None  # caller B finds nothing...
    st.checkin(slot, 0.2, healthy=True)  # ...A returns it before B queues
    waiter = Waiting(since=0.1)
    io = st.enqueue(waiter, 0.2)
    assert io is not None and io.handoff == [(waiter, slot)]
    assert not st.waiters and st.in_use == 1
    st.check_invariants()
