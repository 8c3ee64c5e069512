"""`PrometheusSink`: pool metrics for Prometheus, in OpenTelemetry's names.

Gauges and counters are read from each pool's ``stats()`` when Prometheus
scrapes, so they cost nothing between scrapes; only the three connection
histograms (create, wait, use time) and the query histogram are recorded as
things happen, into pgharbor's own lock-guarded buckets (a fraction of a
microsecond per sample). Needs ``pip install 'pgharbor[prometheus]'``.

Every series carries ``pool_name`` and, where known, ``database`` and
``endpoint`` (``host:port``). Names follow the OpenTelemetry semantic
conventions for database client connection pools (``db.client.connection.*``)
in Prometheus form, plus ``pgharbor_*`` series for what they do not cover.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from .._policy.histogram import DEFAULT_BOUNDS, Histogram
from . import PoolInfo, PoolObserver

try:
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "PrometheusSink needs prometheus-client: pip install 'pgharbor[prometheus]'"
    ) from exc

__all__ = ["METRICS", "MetricsServer", "PrometheusSink"]

#: Every series this sink exports, with its type and meaning.
METRICS: dict[str, tuple[str, str]] = {
    "db_client_connection_count": (
        "gauge",
        "Connections open now, by state (idle or used).",
    ),
    "db_client_connection_max": ("gauge", "The most connections the pool may open."),
    "db_client_connection_idle_min": ("gauge", "Idle connections kept at least (min_size)."),
    "db_client_connection_idle_max": ("gauge", "Idle connections kept at most (max_size)."),
    "db_client_connection_pending_requests": (
        "gauge",
        "Callers waiting for a connection.",
    ),
    "db_client_connection_timeouts_total": (
        "counter",
        "Acquires that timed out.",
    ),
    "db_client_connection_create_time_seconds": (
        "histogram",
        "Time to open a connection.",
    ),
    "db_client_connection_wait_time_seconds": (
        "histogram",
        "Time callers waited for a connection.",
    ),
    "db_client_connection_use_time_seconds": (
        "histogram",
        "Time connections were held before being returned.",
    ),
    "pgharbor_connections_created_total": ("counter", "Connections opened."),
    "pgharbor_connections_failed_total": ("counter", "Connection attempts that failed."),
    "pgharbor_connections_removed_total": (
        "counter",
        "Connections that left the pool, by reason.",
    ),
    "pgharbor_acquires_total": ("counter", "Connections lent."),
    "pgharbor_breaker_open": ("gauge", "1 while the circuit breaker is open or half-open."),
    "pgharbor_breaker_opened_total": ("counter", "Times the circuit breaker opened."),
    "pgharbor_node_role": ("gauge", "1 for the node's current role (primary, replica...)."),
    "pgharbor_queries_total": ("counter", "Database statements run, by outcome (ok, error)."),
    "pgharbor_query_duration_seconds": ("histogram", "Database statement durations."),
    "pgharbor_alerts_total": ("counter", "Alerts raised, by name."),
    "pgharbor_target_size": (
        "gauge",
        "The size the pool keeps: an autoscaled pool's target, else min_size.",
    ),
    "pgharbor_resizes_total": ("counter", "Autoscaled target changes, by reason."),
}

_HISTOGRAMS = ("create", "wait", "use", "query")


class _Observer(PoolObserver):
    """One pool's recorded series (histograms and event counters)."""

    def __init__(self, sink: PrometheusSink, info: PoolInfo, bounds: Sequence[float]) -> None:
        self.sink = sink
        self.info = info
        self.lock = threading.Lock()
        self.hist = {name: Histogram(bounds) for name in _HISTOGRAMS}
        self.removed_by: dict[str, int] = {}
        self.alerts_by: dict[str, int] = {}
        self.resizes_by: dict[str, int] = {}
        self.query_errors = 0
        self.role: str | None = None

    def connected(self, conn: Any, seconds: float) -> None:
        with self.lock:
            self.hist["create"].add(seconds)

    def acquired(self, conn: Any, wait: float) -> None:
        with self.lock:
            self.hist["wait"].add(wait)

    def released(self, conn: Any, used: float) -> None:
        with self.lock:
            self.hist["use"].add(used)

    def removed(self, conn: Any, reason: str) -> None:
        with self.lock:
            self.removed_by[reason] = self.removed_by.get(reason, 0) + 1

    def query(self, seconds: float, error: BaseException | None) -> None:
        with self.lock:
            self.hist["query"].add(seconds)
            if error is not None:
                self.query_errors += 1

    def role_changed(self, role: str) -> None:
        self.role = role

    def alert(self, name: str, change: str) -> None:
        if change == "raised":
            with self.lock:
                self.alerts_by[name] = self.alerts_by.get(name, 0) + 1

    def resized(self, size: int, reason: str, detail: str) -> None:
        with self.lock:
            self.resizes_by[reason] = self.resizes_by.get(reason, 0) + 1

    def closed(self) -> None:
        self.sink._forget(self)


class PrometheusSink(Collector):
    """Export pools' metrics to a Prometheus registry.

    Pass the same sink to every pool or database (``metrics=sink``); it is one
    collector in ``registry`` (default: prometheus_client's global one), so
    make one sink per registry. Closed pools disappear from the output.

    Args:
        registry: where to register; None for the global registry, False to
            register nowhere (call ``collect`` yourself).
        buckets: histogram bucket upper bounds, in seconds.
        labels: constant labels added to every series (e.g. ``{"service": "api"}``).
    """

    def __init__(
        self,
        registry: CollectorRegistry | bool | None = None,
        *,
        buckets: Sequence[float] = DEFAULT_BOUNDS,
        labels: dict[str, str] | None = None,
    ) -> None:
        Histogram(buckets)  # validates the bounds
        self.buckets = tuple(buckets)
        self.labels = dict(labels or {})
        self._observers: list[_Observer] = []
        self._lock = threading.Lock()
        self.registry: CollectorRegistry | None
        if registry is False:
            self.registry = None
        else:
            self.registry = REGISTRY if registry is None or registry is True else registry
            self.registry.register(self)

    def __repr__(self) -> str:
        return f"<PrometheusSink pools={len(self._observers)}>"

    def observe(self, pool: PoolInfo) -> PoolObserver:
        """Start exporting ``pool`` (called by the pool itself)."""
        observer = _Observer(self, pool, self.buckets)
        with self._lock:
            self._observers.append(observer)
        return observer

    def unregister(self) -> None:
        """Remove this sink from its registry."""
        if self.registry is not None:
            self.registry.unregister(self)
            self.registry = None

    def serve(self, port: int = 0, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` over HTTP from a daemon thread (port 0: any free
        port; see `MetricsServer.port`). Close it when done."""
        if self.registry is None:
            raise ValueError("this sink is not registered in a registry")
        return MetricsServer(self.registry, port, addr)

    def _forget(self, observer: _Observer) -> None:
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def describe(self) -> Iterator[Metric]:
        """No fixed description: series come and go with pools."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Build every series from the pools' stats and recorded histograms."""
        with self._lock:
            observers = list(self._observers)
        keys = sorted({k for o in observers for k in o.info.labels} | set(self.labels))
        fams: dict[str, Any] = {}

        def fam(name: str, extra: tuple[str, ...] = ()) -> Any:
            if name not in fams:
                kind, doc = METRICS[name]
                label_names = [*keys, *extra]
                if kind == "gauge":
                    fams[name] = GaugeMetricFamily(name, doc, labels=label_names)
                elif kind == "counter":
                    base = name.removesuffix("_total")
                    fams[name] = CounterMetricFamily(base, doc, labels=label_names)
                else:
                    fams[name] = HistogramMetricFamily(
                        name, doc, labels=label_names, unit="seconds"
                    )
            return fams[name]

        for o in observers:
            values = [{**self.labels, **o.info.labels}.get(k, "") for k in keys]
            stats = o.info.stats()
            size, idle = stats.get("size", 0), stats.get("idle", 0)
            fam("db_client_connection_count", ("state",)).add_metric([*values, "idle"], idle)
            fam("db_client_connection_count", ("state",)).add_metric([*values, "used"], size - idle)
            for name, key in (
                ("db_client_connection_max", "max_size"),
                ("db_client_connection_idle_min", "min_size"),
                ("db_client_connection_idle_max", "max_size"),
                ("db_client_connection_pending_requests", "waiting"),
                ("db_client_connection_timeouts_total", "timeouts"),
                ("pgharbor_connections_created_total", "connections_created"),
                ("pgharbor_connections_failed_total", "connections_failed"),
                ("pgharbor_acquires_total", "acquired"),
                ("pgharbor_breaker_open", "breaker_open"),
                ("pgharbor_breaker_opened_total", "breaker_opened"),
                ("pgharbor_target_size", "target_size"),
            ):
                fam(name).add_metric(values, stats.get(key, 0))
            with o.lock:
                hists = {k: (h.cumulative(), h.sum) for k, h in o.hist.items()}
                removed = dict(o.removed_by)
                alerts = dict(o.alerts_by)
                resizes = dict(o.resizes_by)
                query_errors = o.query_errors
            for reason, n in sorted(removed.items()):
                fam("pgharbor_connections_removed_total", ("reason",)).add_metric(
                    [*values, reason], n
                )
            for alert, n in sorted(alerts.items()):
                fam("pgharbor_alerts_total", ("alert",)).add_metric([*values, alert], n)
            for reason, n in sorted(resizes.items()):
                fam("pgharbor_resizes_total", ("reason",)).add_metric([*values, reason], n)
            for short, name in (
                ("create", "db_client_connection_create_time_seconds"),
                ("wait", "db_client_connection_wait_time_seconds"),
                ("use", "db_client_connection_use_time_seconds"),
                ("query", "pgharbor_query_duration_seconds"),
            ):
                cumulative, total = hists[short]
                if short == "query" and not cumulative[-1][1]:
                    continue  # a bare pool runs no Database statements
                buckets = [(_bound(b), n) for b, n in cumulative]
                fam(name).add_metric(values, buckets, total)
            queries = hists["query"][0][-1][1]
            if queries:
                fam("pgharbor_queries_total", ("outcome",)).add_metric(
                    [*values, "ok"], queries - query_errors
                )
                fam("pgharbor_queries_total", ("outcome",)).add_metric(
                    [*values, "error"], query_errors
                )
            if o.role is not None:
                fam("pgharbor_node_role", ("role",)).add_metric([*values, o.role], 1)
        yield from fams.values()


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


class MetricsServer:
    """An HTTP server for ``/metrics`` on a daemon thread (see `PrometheusSink.serve`)."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str) -> None:
        self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        self.address: str = addr
        self.port: int = int(self._server.server_address[1])

    def __repr__(self) -> str:
        return f"<MetricsServer http://{self.address}:{self.port}/metrics>"

    def close(self) -> None:
        """Stop serving and wait for the thread (bounded)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
