"""`OpenTelemetrySink`: the ``db.client.connection.*`` instruments.

Implements the OpenTelemetry semantic conventions for database client
connection pools (the instruments users keep asking pools for:
psycopg#1265, opentelemetry-python-contrib#1158). Counts are observable
instruments read from each pool's ``stats()`` at collection time; the
create / wait / use times and statement durations are histograms recorded as
they happen. Needs ``pip install 'pgharbor[otel]'`` (the API; bring your own
SDK and exporter).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from . import PoolInfo, PoolObserver

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "OpenTelemetrySink needs opentelemetry-api: pip install 'pgharbor[otel]'"
    ) from exc

__all__ = ["INSTRUMENTS", "OpenTelemetrySink"]

POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"

#: Every instrument this sink creates: (kind, unit, description).
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "db.client.connection.count": (
        "updowncounter",
        "{connection}",
        "Connections open now, by state (idle or used).",
    ),
    "db.client.connection.idle.max": (
        "updowncounter",
        "{connection}",
        "Idle connections kept at most.",
    ),
    "db.client.connection.idle.min": (
        "updowncounter",
        "{connection}",
        "Idle connections kept at least.",
    ),
    "db.client.connection.max": ("updowncounter", "{connection}", "The most connections allowed."),
    "db.client.connection.pending_requests": (
        "updowncounter",
        "{request}",
        "Callers waiting for a connection.",
    ),
    "db.client.connection.timeouts": ("counter", "{timeout}", "Acquires that timed out."),
    "db.client.connection.create_time": ("histogram", "s", "Time to open a connection."),
    "db.client.connection.wait_time": ("histogram", "s", "Time waited for a connection."),
    "db.client.connection.use_time": ("histogram", "s", "Time a connection was held."),
    "db.client.operation.duration": ("histogram", "s", "Duration of Database statements."),
}


class _Observer(PoolObserver):
    def __init__(self, sink: OpenTelemetrySink, info: PoolInfo) -> None:
        self.sink = sink
        self.info = info
        self.attrs: dict[str, str] = {POOL_NAME: info.name}
        endpoint = info.labels.get("endpoint")
        if endpoint:
            host, _, port = endpoint.rpartition(":")
            self.attrs["server.address"] = host
            if port.isdigit():
                self.attrs["server.port"] = port
        if "database" in info.labels:
            self.attrs["db.namespace"] = info.labels["database"]
        self.query_attrs = {**self.attrs, "db.system.name": "postgresql"}

    def connected(self, conn: Any, seconds: float) -> None:
        self.sink._create.record(seconds, self.attrs)

    def acquired(self, conn: Any, wait: float) -> None:
        self.sink._wait.record(wait, self.attrs)

    def released(self, conn: Any, used: float) -> None:
        self.sink._use.record(used, self.attrs)

    def query(self, seconds: float, error: BaseException | None) -> None:
        if error is None:
            self.sink._duration.record(seconds, self.query_attrs)
        else:
            attrs = {**self.query_attrs, "error.type": type(error).__qualname__}
            self.sink._duration.record(seconds, attrs)

    def closed(self) -> None:
        self.sink._forget(self)


class OpenTelemetrySink:
    """Record pools' metrics with an OpenTelemetry ``meter``.

    Args:
        meter: the meter to create instruments with; None takes
            ``opentelemetry.metrics.get_meter("pgharbor")`` from the global
            meter provider.
    """

    def __init__(self, meter: Meter | None = None) -> None:
        self.meter = meter or otel_metrics.get_meter("pgharbor")
        self._observers: list[_Observer] = []
        self._lock = threading.Lock()
        m = self.meter
        m.create_observable_up_down_counter(
            "db.client.connection.count",
            [self._counts],
            unit="{connection}",
            description=INSTRUMENTS["db.client.connection.count"][2],
        )
        for name, key in (
            ("db.client.connection.idle.max", "max_size"),
            ("db.client.connection.idle.min", "min_size"),
            ("db.client.connection.max", "max_size"),
            ("db.client.connection.pending_requests", "waiting"),
        ):
            m.create_observable_up_down_counter(
                name,
                [self._reader(key)],
                unit=INSTRUMENTS[name][1],
                description=INSTRUMENTS[name][2],
            )
        m.create_observable_counter(
            "db.client.connection.timeouts",
            [self._reader("timeouts")],
            unit="{timeout}",
            description=INSTRUMENTS["db.client.connection.timeouts"][2],
        )
        self._create, self._wait, self._use, self._duration = (
            m.create_histogram(name, unit="s", description=INSTRUMENTS[name][2])
            for name in (
                "db.client.connection.create_time",
                "db.client.connection.wait_time",
                "db.client.connection.use_time",
                "db.client.operation.duration",
            )
        )

    def __repr__(self) -> str:
        return f"<OpenTelemetrySink pools={len(self._observers)}>"

    def observe(self, pool: PoolInfo) -> PoolObserver:
        """Start recording ``pool`` (called by the pool itself)."""
        observer = _Observer(self, pool)
        with self._lock:
            self._observers.append(observer)
        return observer

    def _forget(self, observer: _Observer) -> None:
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def _snapshot(self) -> list[_Observer]:
        with self._lock:
            return list(self._observers)

    def _counts(self, options: CallbackOptions) -> Iterable[Observation]:
        for o in self._snapshot():
            stats = o.info.stats()
            idle = stats.get("idle", 0)
            yield Observation(idle, {**o.attrs, STATE: "idle"})
            yield Observation(stats.get("size", 0) - idle, {**o.attrs, STATE: "used"})

    def _reader(self, key: str) -> Any:
        def read(options: CallbackOptions) -> Iterable[Observation]:
            for o in self._snapshot():
                yield Observation(o.info.stats().get(key, 0), o.attrs)

        return read
