"""Observability shared by `Pool` and `AsyncPool`: hooks, health, alerts, metrics.

Nothing here awaits, so both flavours inherit this one copy (it is not
generated). The pool feeds outcomes in (`_record`, `_record_query`), and
calls its observer (``_obs``: None when there is no sink and no hook, so the
hot path pays one attribute test) outside its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from time import monotonic
from typing import Any

from ._policy.health import AlertMonitor, Alerts, HealthReport, HealthThresholds, HealthWindow
from ._policy.health import overall as _overall
from ._policy.options import PoolOptions
from ._policy.pool import PoolState
from .errors import ConfigError
from .metrics import Event as PoolEvent
from .metrics import Fanout, Hooks, MetricsSink, PoolInfo, PoolObserver, sinks_of

__all__ = ["PoolObservability"]

logger = logging.getLogger("pgharbor.pool")


class PoolObservability:
    """The observability half of a pool (a mixin: the pool provides the state)."""

    # Provided by the pool.
    name: str
    options: PoolOptions
    _state: PoolState
    _lock: Any
    _params: dict[str, str] | None

    @property
    def target(self) -> str:
        raise NotImplementedError

    def stats(self) -> dict[str, int | float]:
        raise NotImplementedError

    def _safe(self, exc: BaseException) -> str:
        raise NotImplementedError

    def _init_observability(
        self,
        metrics: Any,
        health: HealthThresholds | None,
        alerts: Alerts | None,
        labels: Mapping[str, str] | None,
    ) -> None:
        """Validate the observability arguments (before anything is built)."""
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
        self._labels = dict(labels or {})
        self._health = HealthWindow(health)
        self._alerts = AlertMonitor(alerts) if alerts is not None and alerts.enabled else None
        self._role: str | None = None
        self._breaker_seen = "closed"
        self._hooks: Hooks | None = None
        self._observers: list[PoolObserver] = []
        self._obs: PoolObserver | None = None

    def _start_observers(self) -> None:
        """Introduce the pool to its sinks (when it opens)."""
        info = PoolInfo(self.name, self.target, self._metric_labels(self._labels), self.stats)
        self._observers = [sink.observe(info) for sink in self._sinks]
        self._obs = self._combined()

    def _stop_observers(self) -> None:
        """The pool closed: tell the sinks, drop the hooks."""
        obs, self._obs, self._observers, self._hooks = self._obs, None, [], None
        if obs is not None:
            obs.closed()

    def on(self, event: str, fn: Callable[[PoolEvent], Any]) -> Callable[[], None]:
        """Call ``fn(event)`` on every ``event`` (see `pgharbor.metrics.EVENTS`):
        ``connect``, ``acquire``, ``release``, ``remove`` (with a reason),
        ``error``, ``timeout``, ``role_change``, ``breaker_change``, ``alert``.
        Hooks run inline, outside the pool's lock: keep them quick; one that
        raises is logged and ignored. Returns a function that unregisters it.

        Raises:
            ConfigError: unknown event, or ``fn`` is not a plain callable.
        """
        hooks = self._hooks or Hooks(self.name)
        remove = hooks.add(event, fn)
        if self._hooks is None:
            self._hooks = hooks
            self._obs = self._combined()
        return remove

    def health(self) -> HealthReport:
        """A health report: the verdict and figures over the recent window of
        connect, check and query outcomes (see `pgharbor.HealthThresholds`),
        and the pool's numbers."""
        now = monotonic()
        with self._lock:
            kinds, errors = self._health.summary(now)
            stats = self._state.stats()
            last_check = self._state.last_check_at
            has_connections = bool(self._state.slots)
            failing = self._state.failures > 0
            closed = self._state.closed
        reasons = self._health.verdict(kinds)
        if closed:
            reasons.insert(0, "the pool is closed")
        elif failing and not has_connections:
            reasons.insert(0, "no open connection and the last attempt failed")
        attempts, rate, mean, p95, worst = _overall(kinds)
        created = int(stats["connections_created"])
        return HealthReport(
            name=self.name,
            target=self.target,
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
            role=self._role,
        )

    def _record(self, kind: Any, started: float, error: str | None) -> None:
        """Feed one outcome (``error`` already masked) to the health window."""
        now = monotonic()
        with self._lock:
            self._health.record(now, kind, error is None, now - started, error)
        if self._alerts is not None:
            self._alert(self._alerts.response(now - started), "slow_response")

    def _record_query(self, seconds: float, error: BaseException | None, fault: bool) -> None:
        """A `Database` statement on this pool's connection finished; ``fault``:
        its error reflects on the endpoint (see `pgharbor._querylog.server_fault`)."""
        text = self._safe(error) if fault and error is not None else None
        with self._lock:
            self._health.record(monotonic(), "query", not fault, seconds, text)
        if self._obs is not None:
            self._obs.query(seconds, error)
        if self._alerts is not None:
            self._alert(self._alerts.response(seconds), "slow_response")

    def _set_role(self, role: str) -> None:
        """The topology learned this node's role."""
        if role != self._role:
            self._role = role
            if self._obs is not None:
                self._obs.role_changed(role)

    def _note_breaker(self) -> None:
        breaker = self._state.breaker
        state = "closed" if breaker is None else breaker.state
        if state != self._breaker_seen:
            self._breaker_seen = state
            log = logger.warning if state == "open" else logger.info
            log("pool %r: circuit breaker %s", self.name, state)
            if self._obs is not None:
                self._obs.breaker_changed(state)

    def _sample_alerts(self) -> None:
        assert self._alerts is not None
        st = self._state
        with self._lock:
            changes = self._alerts.sample(
                len(st.waiters), len(st.idle), st.in_use, self.options.max_size
            )
        for name, change in changes:
            self._alert(change, name)

    def _alert(self, change: str | None, name: str) -> None:
        if change is None:
            return
        st = self._state
        figures = (
            f"size={st.size}/{self.options.max_size}, idle={len(st.idle)}, "
            f"in_use={st.in_use}, waiting={len(st.waiters)}"
        )
        if change == "raised":
            logger.warning("pool %r: alert %s raised (%s)", self.name, name, figures)
        else:
            logger.info("pool %r: alert %s cleared (%s)", self.name, name, figures)
        if self._obs is not None:
            self._obs.alert(name, change)

    def _metric_labels(self, labels: Mapping[str, str] | None) -> dict[str, str]:
        out = {"pool_name": self.name}
        if self._params is not None:
            host, port = self._params.get("host"), self._params.get("port", "5432")
            if host:
                out["endpoint"] = f"{host}:{port}"
        out.update(labels or {})
        return out

    def _combined(self) -> PoolObserver | None:
        observers = [*self._observers, *([self._hooks] if self._hooks else [])]
        if not observers:
            return None
        return observers[0] if len(observers) == 1 else Fanout(observers)
