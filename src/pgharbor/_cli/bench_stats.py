"""``pgharbor bench`` bookkeeping: latency histograms, per-worker recorders, results.

Pure code: nothing here reads the clock or does I/O. Workers pass in the
`time.perf_counter` readings they took; the runner merges the recorders at the
end of a step and `summarize` turns them into a `StepResult`.

Latencies go into log-bucketed histograms (2 % wide buckets, like HdrHistogram
with two significant digits), so memory stays bounded however long the run,
percentiles are within 2 % of the exact ones, and recorders merge by adding
counts. One histogram per timeline interval per worker: no lock on the hot
path, even with threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .._conninfo import redact

__all__ = ["BenchReport", "Histogram", "Point", "Recorder", "StepResult", "summarize"]

_FLOOR = 1e-6  # seconds: anything faster is counted as 1 µs
_GROWTH = 1.02  # each bucket is 2 % wider than the one before
_LOG_GROWTH = math.log(_GROWTH)


class Histogram:
    """Counts of latencies (seconds) in logarithmic buckets, with the exact
    minimum and maximum."""

    __slots__ = ("buckets", "count", "max", "min")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.min = math.inf
        self.max = 0.0

    def add(self, latency: float) -> None:
        """Count one latency, in seconds."""
        key = int(math.log(max(latency, _FLOOR) / _FLOOR) / _LOG_GROWTH)
        self.buckets[key] = self.buckets.get(key, 0) + 1
        self.count += 1
        if latency > self.max:
            self.max = latency
        if latency < self.min:
            self.min = latency

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this histogram."""
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def percentile(self, q: float) -> float:
        """The ``q``-quantile (0 < q <= 1) in seconds, nearest rank; 0.0 when empty.

        Monotonic in ``q`` and never above `max`, so p50 <= p99 <= max holds.
        """
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                # The bucket's geometric middle, kept inside what was seen.
                middle = _FLOOR * math.exp((key + 0.5) * _LOG_GROWTH)
                return min(max(middle, self.min), self.max)
        return self.max  # pragma: no cover - rank <= count always lands above


class Recorder:
    """One worker's measurements for one step: a histogram per timeline
    interval, and the errors.

    Args:
        start: ``perf_counter`` reading at which the measured phase starts.
        interval: width of a timeline point, in seconds.
    """

    __slots__ = ("errors", "first_error", "interval", "intervals", "start")

    def __init__(self, start: float, interval: float) -> None:
        self.start = start
        self.interval = interval
        self.intervals: dict[int, Histogram] = {}
        self.errors = 0
        self.first_error: BaseException | None = None

    def add(self, began: float, latency: float) -> None:
        """Record an operation that started at ``began`` and took ``latency`` s."""
        index = int((began - self.start) / self.interval)
        hist = self.intervals.get(index)
        if hist is None:
            hist = self.intervals[index] = Histogram()
        hist.add(latency)

    def error(self, exc: BaseException) -> None:
        """Count a failed operation; the first error is kept for the report
        (formatted once, by `summarize`, not once per failure)."""
        self.errors += 1
        if self.first_error is None:
            self.first_error = exc.with_traceback(None)  # no frames kept alive

    @property
    def ops(self) -> int:
        """Operations that succeeded so far (read by the progress bar)."""
        return sum(h.count for h in self.intervals.values())


@dataclass(frozen=True)
class Point:
    """One timeline interval of a step: ``t`` is its start, in seconds from
    the start of the measured phase."""

    t: float
    ops: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class StepResult:
    """What one worker count achieved."""

    workers: int
    seconds: float
    ops: int
    ops_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    first_error: str | None
    waited: int
    wait_ms: float
    timeline: list[Point] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the timeline as a list of dicts)."""
        return asdict(self)


@dataclass
class BenchReport:
    """A whole run: where, how, and one `StepResult` per worker count."""

    target: str
    driver: str
    mode: str
    server_version: str | None
    pool_size: int
    query: str
    duration: float
    steps: list[StepResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _error_text(exc: BaseException, secrets: Iterable[str]) -> str:
    return " ".join(redact(f"{type(exc).__name__}: {exc}", secrets).split())


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def summarize(
    workers: int,
    recorders: list[Recorder],
    seconds: float,
    stats_before: Mapping[str, Any],
    stats_after: Mapping[str, Any],
    secrets: Iterable[str] = (),
) -> StepResult:
    """Merge the workers' recorders into one `StepResult`.

    ``seconds`` is the measured phase's wall time; the pool statistics before
    and after it give the acquisitions that had to wait and their total wait.
    The first error's text has ``secrets`` (and any password) removed.
    """
    total = Histogram()
    by_interval: dict[int, Histogram] = {}
    errors = 0
    first_error: BaseException | None = None
    interval = recorders[0].interval if recorders else 1.0
    for rec in recorders:
        errors += rec.errors
        first_error = first_error or rec.first_error
        for index, hist in rec.intervals.items():
            by_interval.setdefault(index, Histogram()).merge(hist)
            total.merge(hist)
    timeline = [
        Point(
            t=round(index * interval, 3),
            ops=hist.count,
            p50_ms=_ms(hist.percentile(0.50)),
            p99_ms=_ms(hist.percentile(0.99)),
        )
        for index, hist in sorted(by_interval.items())
    ]
    return StepResult(
        workers=workers,
        seconds=round(seconds, 3),
        ops=total.count,
        ops_per_s=round(total.count / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=_ms(total.percentile(0.50)),
        p95_ms=_ms(total.percentile(0.95)),
        p99_ms=_ms(total.percentile(0.99)),
        max_ms=_ms(total.max),
        errors=errors,
        first_error=_error_text(first_error, secrets) if first_error else None,
        waited=int(stats_after.get("waited", 0) - stats_before.get("waited", 0)),
        wait_ms=round(float(stats_after.get("wait_ms", 0) - stats_before.get("wait_ms", 0)), 3),
        timeline=timeline,
    )
