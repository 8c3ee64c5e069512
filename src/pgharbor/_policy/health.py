"""Health of one endpoint: a bounded window of recent outcomes, a verdict, alerts.

Pure: ``now`` is passed in. Every connection attempt, check (ping) and query
outcome is recorded in a `HealthWindow`; `HealthWindow.summary` turns the
window into success rate and latencies per kind, and `verdict` applies
`HealthThresholds` (the original design's defaults: healthy when at least
90 % of recent attempts succeed, connecting takes under 5 s on average and
never over 30 s). `AlertMonitor` turns conditions into *crossings*, so that an
alert logs once when it starts and once when it clears, not on every sample.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from ..errors import ConfigError
from .validate import seconds as _valid_seconds

if TYPE_CHECKING:
    from .._typing import QueryStats

__all__ = [
    "KINDS",
    "AlertMonitor",
    "Alerts",
    "DatabaseHealth",
    "HealthReport",
    "HealthThresholds",
    "HealthWindow",
    "KindSummary",
]

Kind = Literal["connect", "check", "query"]
KINDS: Final[tuple[Kind, ...]] = ("connect", "check", "query")
#: How many recent error messages a report carries.
RECENT_ERRORS: Final = 10


def _seconds(field_name: str, value: Any, *, optional: bool = False) -> None:
    _valid_seconds(field_name, value, optional=optional, positive=True)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When an endpoint counts as healthy, and how much history is kept.

    Args:
        min_success_rate: fraction of recent outcomes that must succeed (0 to 1).
        max_mean_connect: mean seconds to open a connection, at most.
        max_connect: seconds any recent connection attempt may take, at most.
        window: seconds of history to consider.
        max_samples: outcomes kept at most (the window is also bounded in size).
    """

    min_success_rate: float = 0.9
    max_mean_connect: float = 5.0
    max_connect: float = 30.0
    window: float = 300.0
    max_samples: int = 1000

    def __post_init__(self) -> None:
        rate = self.min_success_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ConfigError("health.min_success_rate", f"must be between 0 and 1, got {rate!r}")
        _seconds("health.max_mean_connect", self.max_mean_connect)
        _seconds("health.max_connect", self.max_connect)
        _seconds("health.window", self.window)
        n = self.max_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("health.max_samples", f"must be an integer >= 1, got {n!r}")


@dataclass(frozen=True, slots=True)
class Alerts:
    """Conditions that log a warning once when they start (and a note when
    they clear). Each is off when None/False.

    Args:
        waiting: warn when at least this many callers queue for a connection.
        no_idle: warn when every connection is in use at the maximum size.
        slow_response: warn when a connect, check or query takes longer than
            this many seconds.
    """

    waiting: int | None = None
    no_idle: bool = False
    slow_response: float | None = None

    def __post_init__(self) -> None:
        n = self.waiting
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError("alerts.waiting", f"must be an integer >= 1, got {n!r}")
        if not isinstance(self.no_idle, bool):
            raise ConfigError("alerts.no_idle", "must be True or False")
        _seconds("alerts.slow_response", self.slow_response, optional=True)

    @property
    def enabled(self) -> bool:
        """Whether any condition is watched."""
        return self.waiting is not None or self.no_idle or self.slow_response is not None


@dataclass(frozen=True, slots=True)
class KindSummary:
    """Outcomes of one kind (``connect``, ``check`` or ``query``) in the window."""

    attempts: int
    failures: int
    mean_ms: float
    p95_ms: float
    max_ms: float

    @property
    def success_rate(self) -> float:
        """Fraction that succeeded (1.0 with no attempts)."""
        return 1.0 if not self.attempts else (self.attempts - self.failures) / self.attempts


class HealthWindow:
    """Recent outcomes of one endpoint, bounded in time and in count."""

    __slots__ = ("_samples", "thresholds")

    def __init__(self, thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        # (time, kind, ok, seconds, error text or None)
        self._samples: deque[tuple[float, str, bool, float, str | None]] = deque(
            maxlen=self.thresholds.max_samples
        )

    def record(
        self, now: float, kind: Kind, ok: bool, seconds: float, error: str | None = None
    ) -> None:
        """Add one outcome. ``error`` must already be free of secrets."""
        self._samples.append((now, kind, ok, seconds, error))

    def summary(self, now: float) -> tuple[dict[str, KindSummary], list[str]]:
        """Per-kind summaries of the window, and the recent errors (oldest first)."""
        horizon = now - self.thresholds.window
        samples = self._samples
        while samples and samples[0][0] < horizon:
            samples.popleft()
        by_kind: dict[str, list[float]] = {}
        failures: dict[str, int] = {}
        errors: deque[str] = deque(maxlen=RECENT_ERRORS)
        for t, kind, ok, seconds, error in samples:
            by_kind.setdefault(kind, []).append(seconds)
            if not ok:
                failures[kind] = failures.get(kind, 0) + 1
                if error:
                    errors.append(f"{kind}: {error} ({now - t:.0f} s ago)")
        out = {}
        for kind, values in by_kind.items():
            values.sort()
            p95 = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
            out[kind] = KindSummary(
                attempts=len(values),
                failures=failures.get(kind, 0),
                mean_ms=1000.0 * sum(values) / len(values),
                p95_ms=1000.0 * p95,
                max_ms=1000.0 * values[-1],
            )
        return out, list(errors)

    def verdict(self, kinds: dict[str, KindSummary]) -> list[str]:
        """Why the endpoint is unhealthy (empty: healthy)."""
        th = self.thresholds
        reasons = []
        attempts = sum(k.attempts for k in kinds.values())
        failures = sum(k.failures for k in kinds.values())
        if attempts and (attempts - failures) / attempts < th.min_success_rate:
            rate = (attempts - failures) / attempts
            reasons.append(
                f"success rate {rate:.0%} is below {th.min_success_rate:.0%}"
                f" ({failures} of {attempts} failed)"
            )
        connect = kinds.get("connect")
        if connect is not None and connect.attempts:
            if connect.mean_ms >= th.max_mean_connect * 1000.0:
                reasons.append(
                    f"mean connect time {connect.mean_ms:.0f} ms is not under"
                    f" {th.max_mean_connect * 1000.0:.0f} ms"
                )
            if connect.max_ms >= th.max_connect * 1000.0:
                reasons.append(
                    f"slowest connect {connect.max_ms:.0f} ms is not under"
                    f" {th.max_connect * 1000.0:.0f} ms"
                )
        return reasons


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The health of one endpoint (one pool): the verdict, the window's
    figures, and the pool's numbers. Times are in milliseconds; every text is
    free of secrets."""

    name: str
    target: str
    healthy: bool
    reasons: tuple[str, ...]
    attempts: int
    success_rate: float
    mean_ms: float
    p95_ms: float
    max_ms: float
    kinds: dict[str, KindSummary]
    recent_errors: tuple[str, ...]
    total: int
    in_use: int
    idle: int
    waiting: int
    failed: int
    mean_connect_ms: float | None
    last_check_ago: float | None
    role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``kinds`` flattened to dicts)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["kinds"] = {
            kind: {
                "attempts": k.attempts,
                "failures": k.failures,
                "success_rate": k.success_rate,
                "mean_ms": k.mean_ms,
                "p95_ms": k.p95_ms,
                "max_ms": k.max_ms,
            }
            for kind, k in self.kinds.items()
        }
        out["reasons"] = list(self.reasons)
        out["recent_errors"] = list(self.recent_errors)
        return out


def overall(kinds: dict[str, KindSummary]) -> tuple[int, float, float, float, float]:
    """Attempts, success rate, mean, p95 (worst kind's) and max ms over every kind."""
    attempts = sum(k.attempts for k in kinds.values())
    if not attempts:
        return 0, 1.0, 0.0, 0.0, 0.0
    failures = sum(k.failures for k in kinds.values())
    mean = sum(k.mean_ms * k.attempts for k in kinds.values()) / attempts
    p95 = max(k.p95_ms for k in kinds.values())
    worst = max(k.max_ms for k in kinds.values())
    return attempts, (attempts - failures) / attempts, mean, p95, worst


class AlertMonitor:
    """Which alert conditions hold; reports only the changes."""

    __slots__ = ("active", "alerts", "raised")

    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts
        self.active: set[str] = set()
        self.raised = 0

    def update(self, name: str, holds: bool) -> Literal["raised", "cleared"] | None:
        """Note whether condition ``name`` holds now; "raised" or "cleared" on a
        crossing, else None."""
        if holds:
            if name in self.active:
                return None
            self.active.add(name)
            self.raised += 1
            return "raised"
        if name in self.active:
            self.active.discard(name)
            return "cleared"
        return None

    def sample(
        self, waiting: int, idle: int, in_use: int, max_size: int
    ) -> list[tuple[str, Literal["raised", "cleared"]]]:
        """Crossings of the pool-size conditions for these numbers."""
        out = []
        a = self.alerts
        if a.waiting is not None:
            change = self.update("waiting", waiting >= a.waiting)
            if change:
                out.append(("waiting", change))
        if a.no_idle:
            change = self.update("no_idle", idle == 0 and in_use >= max_size)
            if change:
                out.append(("no_idle", change))
        return out

    def response(self, seconds: float) -> Literal["raised", "cleared"] | None:
        """A crossing of the slow-response condition for one outcome's duration."""
        limit = self.alerts.slow_response
        if limit is None:
            return None
        return self.update("slow_response", seconds > limit)


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    """The health of one database: a verdict over its endpoints (one pool, or
    one per node), each endpoint's report, and the statement counters."""

    name: str
    healthy: bool
    reasons: tuple[str, ...]
    endpoints: tuple[HealthReport, ...]
    queries: QueryStats

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "healthy": self.healthy,
            "reasons": list(self.reasons),
            "endpoints": [e.to_dict() for e in self.endpoints],
            "queries": dict(self.queries),
        }
