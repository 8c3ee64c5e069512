"""Metrics and lifecycle events: the `MetricsSink` protocol and event hooks.

A pool reports what happens to it to one `PoolObserver` per sink: the sink's
`MetricsSink.observe` is called once when the pool opens, with a
`PoolInfo` (names, labels and a ``stats`` callable for gauges to read at
scrape time), and returns the observer. With no sink and no hook the pool
calls nothing at all: metrics cost nothing when off (HikariCP's no-op
tracker, without even the call).

Sinks shipped here, each behind its extra:

- `pgharbor.metrics.prometheus.PrometheusSink` (``pgharbor[prometheus]``);
- `pgharbor.metrics.otel.OpenTelemetrySink` (``pgharbor[otel]``).

Both are importable from this package too (lazily). Hooks (``pool.on("acquire",
fn)``) are delivered as `Event` objects by the same mechanism.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ..errors import ConfigError

if TYPE_CHECKING:
    from .otel import OpenTelemetrySink
    from .prometheus import PrometheusSink

__all__ = [
    "EVENTS",
    "REMOVE_REASONS",
    "RESIZE_REASONS",
    "Event",
    "MetricsSink",
    "OpenTelemetrySink",
    "PoolInfo",
    "PoolObserver",
    "PrometheusSink",
]

logger = logging.getLogger("pgharbor.pool")

#: Event names `on` accepts, and what each carries besides ``pool``:
EVENTS: Final[Mapping[str, str]] = {
    "connect": "a connection opened: conn, seconds (time to open it)",
    "acquire": "a connection was lent: conn, seconds (time waited)",
    "release": "a connection came back: conn, seconds (time held)",
    "remove": "a connection left the pool: conn, reason",
    "error": "a connection attempt or check failed: error (secrets masked)",
    "timeout": "an acquire timed out: seconds (the timeout)",
    "query": "a Database statement finished: seconds, error (None when it worked)",
    "role_change": "a node's role changed: state (primary, replica or unknown)",
    "breaker_change": "the circuit breaker changed: state (closed, open, half-open)",
    "alert": "an alert condition started or cleared: reason (its name), state",
    "resize": (
        "an autoscaled pool changed its target size: size (the new target), "
        "reason (see RESIZE_REASONS), detail (the figures behind it)"
    ),
}

#: Why connections leave a pool (the ``reason`` of "remove" events).
REMOVE_REASONS: Final[tuple[str, ...]] = (
    "broken",  # returned broken, or could not be cleaned
    "lost",  # failed a check or keepalive, or was suspected after one did
    "expired",  # max_lifetime or max_uses reached
    "idle",  # idle longer than max_idle above min_size
    "drained",  # drain() replaced it
    "resized",  # resize() or the autoscaler shrank the pool
    "closed",  # the pool closed
)

#: Why an autoscaled pool changed its target size (the ``reason`` of "resize" events).
RESIZE_REASONS: Final[tuple[str, ...]] = (
    "demand",  # callers wanted more connections than the target: grown
    "quiet",  # the demand stayed below the target for shrink_after: shrunk
    "server_room",  # the server leaves fewer connections than the target: lowered
)


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle event, as delivered to hooks registered with ``on``."""

    name: str
    pool: str
    conn: Any = None
    seconds: float | None = None
    reason: str | None = None
    error: BaseException | None = None
    state: str | None = None
    size: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """What a sink knows about a pool it observes.

    Attributes:
        name: the pool's name.
        target: ``host:port/dbname as user`` — never a secret.
        labels: ``pool_name`` plus, where known, ``database`` and ``endpoint``
            (``host:port``) — the labels metrics should carry.
        stats: the pool's ``stats()``, for gauges read at scrape time.
    """

    name: str
    target: str
    labels: Mapping[str, str]
    stats: Callable[[], Mapping[str, float]]
    extra: Mapping[str, Any] = field(default_factory=dict)


class PoolObserver:
    """Receives one pool's events; every method here does nothing.

    Methods are called outside the pool's lock, on the hot path for
    `acquired` and `released`: keep them quick and never raise.
    """

    def connected(self, conn: Any, seconds: float) -> None:
        """A connection opened in ``seconds``."""

    def connect_failed(self, error: BaseException) -> None:
        """A connection attempt failed (``error`` has no secrets)."""

    def acquired(self, conn: Any, wait: float) -> None:
        """A connection was lent after waiting ``wait`` seconds."""

    def released(self, conn: Any, used: float) -> None:
        """A connection came back after ``used`` seconds."""

    def removed(self, conn: Any, reason: str) -> None:
        """A connection left the pool (see `REMOVE_REASONS`)."""

    def check_failed(self, error: BaseException | None) -> None:
        """A check or keepalive ping found a connection dead."""

    def timed_out(self, timeout: float) -> None:
        """An acquire gave up after ``timeout`` seconds."""

    def query(self, seconds: float, error: BaseException | None) -> None:
        """A statement run through a `Database` finished."""

    def role_changed(self, role: str) -> None:
        """The node this pool serves became ``role``."""

    def breaker_changed(self, state: str) -> None:
        """The pool's circuit breaker became ``state``."""

    def alert(self, name: str, change: str) -> None:
        """Alert ``name`` was ``"raised"`` or ``"cleared"``."""

    def resized(self, size: int, reason: str, detail: str) -> None:
        """An autoscaled pool's target became ``size`` (``reason``: one of
        `RESIZE_REASONS`; ``detail``: the figures, for people)."""

    def closed(self) -> None:
        """The pool closed: forget it."""


@runtime_checkable
class MetricsSink(Protocol):
    """Anything that can observe pools: `observe` is called once per pool."""

    def observe(self, pool: PoolInfo) -> PoolObserver:
        """Start observing ``pool``; return the observer it will call."""
        ...


class Hooks(PoolObserver):
    """Callbacks registered with ``on``, delivered as `Event` objects.

    A failing callback is logged and otherwise ignored: hooks never break
    the pool.
    """

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.callbacks: dict[str, list[Callable[[Event], Any]]] = {}

    def add(self, event: str, fn: Callable[[Event], Any]) -> Callable[[], None]:
        """Register ``fn`` for ``event``; returns a function that removes it."""
        if event not in EVENTS:
            raise ConfigError("event", f"must be one of {', '.join(EVENTS)}, got {event!r}")
        if not callable(fn):
            raise ConfigError("callback", "must be callable")
        if inspect.iscoroutinefunction(fn):
            raise ConfigError(
                "callback", "must be a plain function (hooks run inline; start a task to await)"
            )
        self.callbacks.setdefault(event, []).append(fn)

        def remove() -> None:
            fns = self.callbacks.get(event, [])
            if fn in fns:
                fns.remove(fn)
            if not fns:
                self.callbacks.pop(event, None)

        return remove

    def _emit(self, name: str, **values: Any) -> None:
        fns = self.callbacks.get(name)
        if not fns:
            return
        event = Event(name, self.pool, **values)
        for fn in list(fns):
            try:
                fn(event)
            except Exception:
                logger.exception("pool %r: %r hook %r raised", self.pool, name, fn)

    def connected(self, conn: Any, seconds: float) -> None:
        self._emit("connect", conn=conn, seconds=seconds)

    def connect_failed(self, error: BaseException) -> None:
        self._emit("error", error=error, reason="connect")

    def acquired(self, conn: Any, wait: float) -> None:
        self._emit("acquire", conn=conn, seconds=wait)

    def released(self, conn: Any, used: float) -> None:
        self._emit("release", conn=conn, seconds=used)

    def removed(self, conn: Any, reason: str) -> None:
        self._emit("remove", conn=conn, reason=reason)

    def check_failed(self, error: BaseException | None) -> None:
        self._emit("error", error=error, reason="check")

    def timed_out(self, timeout: float) -> None:
        self._emit("timeout", seconds=timeout)

    def query(self, seconds: float, error: BaseException | None) -> None:
        self._emit("query", seconds=seconds, error=error)

    def role_changed(self, role: str) -> None:
        self._emit("role_change", state=role)

    def breaker_changed(self, state: str) -> None:
        self._emit("breaker_change", state=state)

    def alert(self, name: str, change: str) -> None:
        self._emit("alert", reason=name, state=change)

    def resized(self, size: int, reason: str, detail: str) -> None:
        self._emit("resize", size=size, reason=reason, detail=detail)


class Fanout(PoolObserver):
    """Several observers behind one."""

    def __init__(self, observers: Iterable[PoolObserver]) -> None:
        self.observers = tuple(observers)

    def connected(self, conn: Any, seconds: float) -> None:
        for o in self.observers:
            o.connected(conn, seconds)

    def connect_failed(self, error: BaseException) -> None:
        for o in self.observers:
            o.connect_failed(error)

    def acquired(self, conn: Any, wait: float) -> None:
        for o in self.observers:
            o.acquired(conn, wait)

    def released(self, conn: Any, used: float) -> None:
        for o in self.observers:
            o.released(conn, used)

    def removed(self, conn: Any, reason: str) -> None:
        for o in self.observers:
            o.removed(conn, reason)

    def check_failed(self, error: BaseException | None) -> None:
        for o in self.observers:
            o.check_failed(error)

    def timed_out(self, timeout: float) -> None:
        for o in self.observers:
            o.timed_out(timeout)

    def query(self, seconds: float, error: BaseException | None) -> None:
        for o in self.observers:
            o.query(seconds, error)

    def role_changed(self, role: str) -> None:
        for o in self.observers:
            o.role_changed(role)

    def breaker_changed(self, state: str) -> None:
        for o in self.observers:
            o.breaker_changed(state)

    def alert(self, name: str, change: str) -> None:
        for o in self.observers:
            o.alert(name, change)

    def resized(self, size: int, reason: str, detail: str) -> None:
        for o in self.observers:
            o.resized(size, reason, detail)

    def closed(self) -> None:
        for o in self.observers:
            o.closed()


def sinks_of(metrics: Any) -> tuple[MetricsSink, ...]:
    """Validate the ``metrics=`` argument: None, a sink, or several."""
    if metrics is None:
        return ()
    items = metrics if isinstance(metrics, list | tuple) else (metrics,)
    for item in items:
        if not callable(getattr(item, "observe", None)):
            raise ConfigError(
                "metrics", f"must be a MetricsSink (with an observe() method), got {item!r}"
            )
    return tuple(items)


def __getattr__(name: str) -> Any:
    # The sinks import their extra only when asked for.
    if name == "PrometheusSink":
        from .prometheus import PrometheusSink

        return PrometheusSink
    if name == "OpenTelemetrySink":
        from .otel import OpenTelemetrySink

        return OpenTelemetrySink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
