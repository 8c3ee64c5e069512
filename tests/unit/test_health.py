"""The pure observability core: histogram, health window and verdict, alerts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgharbor import Alerts, AsyncPool, ConfigError, Event, HealthThresholds
from pgharbor._policy.health import AlertMonitor, HealthWindow, overall
from pgharbor._policy.histogram import Histogram


def test_histogram_quantiles_come_from_bucket_bounds() -> None:
    """Quantiles are the upper bound of the bucket holding the rank, capped at the max."""
    h = Histogram((0.001, 0.01, 0.1, 1.0))
    for v in [0.0005] * 90 + [0.05] * 9 + [0.7]:
        h.add(v)
    assert h.quantile(0.5) == 0.001
    assert h.quantile(0.95) == 0.1
    assert h.quantile(1.0) == 0.7  # capped at the largest sample, not the bound 1.0
    assert h.count == 100 and math.isclose(h.sum, 0.045 + 0.45 + 0.7)
    assert h.cumulative()[-1] == (float("inf"), 100)


def test_histogram_rejects_bad_bounds() -> None:
    """Bounds must increase."""
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=200))
def test_histogram_quantile_bounds_the_true_quantile(values: list[float]) -> None:
    """The estimate is never below the true quantile nor above the maximum."""
    h = Histogram()
    for v in values:
        h.add(v)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99):
        true = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        estimate = h.quantile(q)
        assert true <= estimate + 1e-12
        assert estimate <= max(values) + 1e-12


def test_window_summarises_by_kind_and_forgets_old_samples() -> None:
    """Outcomes older than the window drop out; each kind gets its own figures."""
    w = HealthWindow(HealthThresholds(window=60.0))
    w.record(0.0, "connect", False, 1.0, "old failure")
    for i in range(10):
        w.record(100.0 + i, "connect", True, 0.010)
    w.record(110.0, "query", False, 0.5, "boom")
    kinds, errors = w.summary(now=120.0)
    assert kinds["connect"].attempts == 10 and kinds["connect"].failures == 0
    assert kinds["connect"].mean_ms == pytest.approx(10.0)
    assert kinds["query"].success_rate == 0.0
    assert errors == ["query: boom (10 s ago)"]
    attempts, rate, _mean, _p95, worst = overall(kinds)
    assert attempts == 11 and rate == pytest.approx(10 / 11) and worst == pytest.approx(500.0)


def test_window_is_bounded_in_size() -> None:
    """No more than max_samples outcomes are kept, whatever the rate."""
    w = HealthWindow(HealthThresholds(max_samples=5))
    for i in range(100):
        w.record(float(i), "query", True, 0.001)
    kinds, _ = w.summary(now=100.0)
    assert kinds["query"].attempts == 5


def test_verdict_applies_the_original_thresholds() -> None:
    """Healthy at >= 90 % success, mean connect < 5 s, slowest < 30 s."""
    w = HealthWindow()
    for _ in range(9):
        w.record(1.0, "query", True, 0.001)
    w.record(1.0, "query", False, 0.001, "x")
    assert w.verdict(w.summary(2.0)[0]) == []  # exactly 90 %
    w.record(1.0, "query", False, 0.001, "y")
    reasons = w.verdict(w.summary(2.0)[0])
    assert len(reasons) == 1 and "below 90%" in reasons[0]

    slow = HealthWindow()
    slow.record(1.0, "connect", True, 6.0)
    slow.record(1.0, "connect", True, 31.0)
    reasons = slow.verdict(slow.summary(2.0)[0])
    assert any("mean connect" in r for r in reasons)
    assert any("slowest connect" in r for r in reasons)


def test_alerts_fire_once_per_crossing() -> None:
    """A condition logs when it starts and when it clears, not on every sample."""
    m = AlertMonitor(Alerts(waiting=3, no_idle=True, slow_response=0.5))
    assert m.sample(waiting=1, idle=2, in_use=3, max_size=5) == []
    assert m.sample(waiting=3, idle=0, in_use=5, max_size=5) == [
        ("waiting", "raised"),
        ("no_idle", "raised"),
    ]
    assert m.sample(waiting=9, idle=0, in_use=5, max_size=5) == []
    assert m.sample(waiting=0, idle=1, in_use=4, max_size=5) == [
        ("waiting", "cleared"),
        ("no_idle", "cleared"),
    ]
    assert m.response(0.6) == "raised"
    assert m.response(0.9) is None
    assert m.response(0.1) == "cleared"
    assert m.raised == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_success_rate": 1.5}, "health.min_success_rate"),
        ({"max_mean_connect": 0}, "health.max_mean_connect"),
        ({"max_connect": float("inf")}, "health.max_connect"),
        ({"window": -1}, "health.window"),
        ({"max_samples": 0}, "health.max_samples"),
    ],
)
def test_bad_health_thresholds_name_the_field(kwargs: dict[str, float], field: str) -> None:
    """Bad thresholds fail at construction, naming the field."""
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        HealthThresholds(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"waiting": 0}, "alerts.waiting"),
        ({"waiting": True}, "alerts.waiting"),
        ({"no_idle": "yes"}, "alerts.no_idle"),
        ({"slow_response": 0}, "alerts.slow_response"),
    ],
)
def test_bad_alerts_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """Bad alert thresholds fail at construction, naming the field."""
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        Alerts(**kwargs)  # type: ignore[arg-type]


def test_hooks_must_be_plain_functions() -> None:
    """An async callback cannot run inline on the hot path: refused at once."""

    async def coro(event: Event) -> None:
        pass

    pool = AsyncPool("host=127.0.0.1 port=1", min_size=0)
    with pytest.raises(ConfigError, match="plain function"):
        pool.on("acquire", coro)
    with pytest.raises(ConfigError, match="callable"):
        pool.on("acquire", 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="metrics"):
        AsyncPool("host=127.0.0.1 port=1", metrics=object())
    with pytest.raises(ConfigError, match="health"):
        AsyncPool("host=127.0.0.1 port=1", health=0.9)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="alerts"):
        AsyncPool("host=127.0.0.1 port=1", alerts={"waiting": 3})  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="labels"):
        AsyncPool("host=127.0.0.1 port=1", labels={"a": 1})  # type: ignore[dict-item]
