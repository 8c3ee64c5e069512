"""`PoolObservation`: what a pool shows of itself — health, alerts, hooks and
metrics — composed into `Pool`, `AsyncPool` and their housekeepers.

Nothing here awaits, so both flavours share this one copy (it is not
generated). The pool and its housekeeper feed outcomes in (`connected`,
`checked`, `query`...); hot-path calls go straight to `observer` (None when
there is no sink and no hook, so the hot path pays one attribute test),
always outside the pool's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from time import monotonic
from typing import Any

from ._policy.health import AlertMonitor, Alerts, HealthReport, HealthThresholds, HealthWindow
from ._policy.health import overall as _overall
from ._policy.pool import PoolState
from .errors import ConfigError, ConnectionFailed
from .metrics import Event as PoolEvent
from .metrics import Fanout, Hooks, MetricsSink, PoolInfo, PoolObserver, sinks_of

__all__ = ["PoolObservation"]

logger = logging.getLogger("pgharbor.pool")


class PoolObservation:
    """Health window, alerts, hooks and metric sinks of one pool.

    Args:
        name: the pool's name.
        state: the pool's state (replaced after a fork: assign `state`).
        lock: the lock that guards it.
        metrics: a `MetricsSink`, several, or None.
        health: health thresholds (None: the defaults).
        alerts: alert thresholds (None: no alerts).
        labels: extra metric labels.

    Raises:
        ConfigError: an argument of the wrong kind, naming it.
    """

    def __init__(
        self,
        name: str,
        state: PoolState,
        lock: Any,
        *,
        metrics: Any = None,
        health: HealthThresholds | None = None,
        alerts: Alerts | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.state = state
        self.lock = lock
        self._sinks: tuple[MetricsSink, ...] = sinks_of(metrics)
        if health is not None and not isinstance(health, HealthThresholds):
            raise ConfigError("health", "must be a HealthThresholds")
        if alerts is not None and not isinstance(alerts, Alerts):
            raise ConfigError("alerts", "must be an Alerts")
        if labels is not None and not (
            isinstance(labels, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            raise ConfigError("labels", "must be a mapping of strings to strings")
        self.labels = dict(labels or {})
        self._health = HealthWindow(health)
        #: The alert monitor, or None when no alert is configured.
        self.alerts = AlertMonitor(alerts) if alerts is not None and alerts.enabled else None
        self.role: str | None = None
        self._breaker_seen = "closed"
        self._hooks: Hooks | None = None
        self._observers: list[PoolObserver] = []
        #: Sinks and hooks together, or None: what the hot path calls.
        self.observer: PoolObserver | None = None

    # -- life cycle -------------------------------------------------------------

    def start(self, target: str, endpoint: str | None, stats: Callable[[], Any]) -> None:
        """Introduce the pool to its sinks (when it opens)."""
        labels = {"pool_name": self.name}
        if endpoint:
            labels["endpoint"] = endpoint
        labels.update(self.labels)
        info = PoolInfo(self.name, target, labels, stats)
        self._observers = [sink.observe(info) for sink in self._sinks]
        self.observer = self._combined()

    def stop(self) -> None:
        """The pool closed: tell the sinks, drop the hooks."""
        obs, self.observer, self._observers, self._hooks = self.observer, None, [], None
        if obs is not None:
            obs.closed()

    def on(self, event: str, fn: Callable[[PoolEvent], Any]) -> Callable[[], None]:
        """Register a hook (see `AsyncPool.on`); returns its remover."""
        hooks = self._hooks or Hooks(self.name)
        remove = hooks.add(event, fn)
        if self._hooks is None:
            self._hooks = hooks
            self.observer = self._combined()
        return remove

    # -- outcomes ----------------------------------------------------------------

    def connected(self, started: float, conn: Any, seconds: float) -> None:
        """A connection attempt succeeded."""
        self.record("connect", started, None)
        if self.observer is not None:
            self.observer.connected(conn, seconds)

    def connect_failed(self, started: float, error: BaseException) -> None:
        """A connection attempt failed (``error`` carries no secret)."""
        self.record("connect", started, str(error))
        if self.observer is not None:
            self.observer.connect_failed(error)

    def checked(self, started: float, error: str | None) -> None:
        """A ping finished (``error``: its masked text, or None)."""
        self.record("check", started, error)
        if error is not None and self.observer is not None:
            self.observer.check_failed(ConnectionFailed(error))

    def removed(self, conn: Any, reason: str) -> None:
        """A connection left the pool (see `pgharbor.metrics.REMOVE_REASONS`)."""
        if self.observer is not None:
            self.observer.removed(conn, reason)

    def record(self, kind: Any, started: float, error: str | None) -> None:
        """Feed one outcome (``error`` already masked) to the health window."""
        now = monotonic()
        with self.lock:
            self._health.record(now, kind, error is None, now - started, error)
        if self.alerts is not None:
            self.alert(self.alerts.response(now - started), "slow_response")

    def query(self, seconds: float, error: BaseException | None, fault: str | None) -> None:
        """A `Database` statement on one of the pool's connections finished;
        ``fault``: the masked error when it reflects on the endpoint (see
        `pgharbor._querylog.server_fault`), else None."""
        with self.lock:
            self._health.record(monotonic(), "query", fault is None, seconds, fault)
        if self.observer is not None:
            self.observer.query(seconds, error)
        if self.alerts is not None:
            self.alert(self.alerts.response(seconds), "slow_response")

    def resized(self, target: int, previous: int, reason: str, detail: str) -> None:
        """An autoscaled pool's target changed: log it, report it (``resize``)."""
        logger.info(
            "pool %r: target size %d -> %d (%s): %s", self.name, previous, target, reason, detail
        )
        if self.observer is not None:
            self.observer.resized(target, reason, detail)

    def set_role(self, role: str) -> None:
        """The topology learned the node's role."""
        if role != self.role:
            self.role = role
            if self.observer is not None:
                self.observer.role_changed(role)

    def note_breaker(self, state: PoolState) -> None:
        """Log and report a change of the breaker's state."""
        breaker = state.breaker
        if breaker is None:
            return
        current = breaker.state
        if current != self._breaker_seen:
            self._breaker_seen = current
            log = logger.warning if current == "open" else logger.info
            log("pool %r: circuit breaker %s", self.name, current)
            if self.observer is not None:
                self.observer.breaker_changed(current)

    def sample_alerts(self) -> None:
        """Sample the alert conditions (about once a second, and on enqueue)."""
        assert self.alerts is not None
        st = self.state
        with self.lock:
            changes = self.alerts.sample(
                len(st.waiters), len(st.idle), st.in_use, st.options.max_size
            )
        for name, change in changes:
            self.alert(change, name)

    def alert(self, change: str | None, name: str) -> None:
        """Log (and report) an alert that was raised or cleared."""
        if change is None:
            return
        st = self.state
        figures = (
            f"size={st.size}/{st.options.max_size}, idle={len(st.idle)}, "
            f"in_use={st.in_use}, waiting={len(st.waiters)}"
        )
        if change == "raised":
            logger.warning("pool %r: alert %s raised (%s)", self.name, name, figures)
        else:
            logger.info("pool %r: alert %s cleared (%s)", self.name, name, figures)
        if self.observer is not None:
            self.observer.alert(name, change)

    # -- the report ----------------------------------------------------------------

    def health(self, target: str, opened: bool) -> HealthReport:
        """The health report (see `AsyncPool.health`)."""
        now = monotonic()
        with self.lock:
            st = self.state
            kinds, errors = self._health.summary(now)
            stats = st.stats()
            last_check = st.last_check_at
            has_connections = bool(st.slots)
            failing = st.failures > 0
            closed = st.closed
        reasons = self._health.verdict(kinds)
        if closed:
            reasons.insert(0, "the pool is closed")
        elif not opened:
            reasons.insert(0, "the pool is not open")
        elif failing and not has_connections:
            reasons.insert(0, "no open connection and the last attempt failed")
        attempts, rate, mean, p95, worst = _overall(kinds)
        created = int(stats["connections_created"])
        return HealthReport(
            name=self.name,
            target=target,
            healthy=not reasons,
            reasons=tuple(reasons),
            attempts=attempts,
            success_rate=rate,
            mean_ms=mean,
            p95_ms=p95,
            max_ms=worst,
            kinds=kinds,
            recent_errors=tuple(errors),
            total=int(stats["size"]),
            in_use=int(stats["in_use"]),
            idle=int(stats["idle"]),
            waiting=int(stats["waiting"]),
            failed=int(stats["connections_failed"]),
            mean_connect_ms=stats["connect_ms"] / created if created else None,
            last_check_ago=None if last_check is None else now - last_check,
            role=self.role,
        )

    def _combined(self) -> PoolObserver | None:
        observers = [*self._observers, *([self._hooks] if self._hooks else [])]
        if not observers:
            return None
        return observers[0] if len(observers) == 1 else Fanout(observers)
