"""The circuit breaker: alone, and driving the pool core."""

from __future__ import annotations

import random

import pytest

from pgharbor._policy.backoff import Backoff
from pgharbor._policy.breaker import Breaker, BreakerOptions
from pgharbor._policy.options import PoolOptions
from pgharbor._policy.pool import PoolState
from pgharbor.errors import CircuitOpen, ConfigError


class Waiting:
    def __init__(self, since: float = 0.0) -> None:
        self.since = since


def state_of(breaker: Breaker) -> str:
    return breaker.state


def test_opens_after_threshold_and_probes_once() -> None:
    """closed → open after N failures → half-open with exactly one probe."""
    breaker = Breaker(BreakerOptions(failure_threshold=3, reset_timeout=10.0))
    for i in range(2):
        assert breaker.allow(float(i))
        assert not breaker.failed(float(i))
    assert breaker.failed(2.0) and state_of(breaker) == "open"
    assert breaker.rejects(5.0) and breaker.retry_after(5.0) == pytest.approx(7.0)
    assert not breaker.allow(11.9)
    assert breaker.allow(12.0) and state_of(breaker) == "half-open"
    assert not breaker.allow(12.0)  # one probe at a time
    assert breaker.failed(12.5) and state_of(breaker) == "open"  # probe failed: open again
    assert breaker.allow(22.5)
    breaker.succeeded(23.0)
    assert state_of(breaker) == "closed" and breaker.failures == 0 and not breaker.rejects(23.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"reset_timeout": -1},
        {"half_open_max": 0},
        {"reset_timeout": float("nan")},
    ],
)
def test_bad_breaker_options(kwargs: dict[str, float]) -> None:
    """Breaker nonsense fails with the field named (B30)."""
    with pytest.raises(ConfigError, match="breaker"):
        BreakerOptions(**kwargs)  # type: ignore[arg-type]


def make(**breaker: float) -> PoolState:
    options = PoolOptions(min_size=1, max_size=2, backoff=Backoff(initial=0.1, jitter=0.0))
    return PoolState(
        options,
        rng=random.Random(0),
        breaker=Breaker(BreakerOptions(**breaker)),  # type: ignore[arg-type]
        name="p",
    )


def test_pool_makes_no_attempt_while_open_and_fails_waiters_fast() -> None:
    """An open breaker stops connection attempts and fails callers at once;
    while callers ask, its probe runs DEMAND_RETRY after the last attempt (or
    when the backoff allows, if later)."""
    state = make(failure_threshold=2, reset_timeout=5.0)
    now = 0.0
    waiter = Waiting()
    state.enqueue(waiter, now)
    failures = 0
    io = None
    while failures < 2:
        n, retry_at = state.plan_connects(now)
        if n:
            io = state.connect_failed(OSError("refused"), now)
            failures += 1
        else:
            assert retry_at is not None
            now = retry_at
    assert io is not None and [w for w, _ in io.fail] == [waiter]
    assert isinstance(io.fail[0][1], CircuitOpen)
    # Nobody asks: no attempt while open, until reset_timeout (the backoff's
    # own delay, cut to 0.1 s while the first caller waited, ends first).
    assert state.plan_connects(now + 0.25) == (0, now + 5.0)
    # A caller asks: turned away at once, but the probe now comes
    # DEMAND_RETRY (0.1 s) after the last attempt, not after reset_timeout.
    with pytest.raises(CircuitOpen, match="circuit open") as info:
        state.enqueue(Waiting(), now + 0.05)
    assert info.value.retry_after == pytest.approx(0.05)
    assert state.demand_wake  # the shell wakes its maintenance loop
    assert state.stats()["breaker_open"] == 1
    assert state.plan_connects(now + 0.09) == (0, now + 0.1)
    assert state.plan_connects(now + 0.1) == (1, None)  # the half-open probe
    assert state.plan_connects(now + 0.1) == (0, None)
    state.connected(object(), now + 0.3)
    assert state.stats()["breaker_open"] == 0
    # Accepted again (no CircuitOpen), and served at once by the new connection.
    io = state.enqueue(Waiting(), now + 0.4)
    assert io is not None and len(io.handoff) == 1
