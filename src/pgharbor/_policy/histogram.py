"""A fixed-bucket histogram: constant memory, O(log buckets) per sample.

Used by the Prometheus sink for its histograms.
Percentiles are estimated from bucket bounds (the upper bound of the bucket
holding the rank, capped at the largest sample seen), which is what a
Prometheus ``histogram_quantile`` would say too. Not thread-safe: callers
hold their own lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise
from typing import Final

__all__ = ["DEFAULT_BOUNDS", "Histogram"]

#: Seconds, about 2.5 times apart: 50 µs to 60 s. Waits and connects both fit.
DEFAULT_BOUNDS: Final[tuple[float, ...]] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Histogram:
    """Counts of samples per bucket; ``counts[i]`` holds samples ≤ ``bounds[i]``
    (and > ``bounds[i-1]``); the last count holds those above every bound."""

    __slots__ = ("bounds", "count", "counts", "max", "sum")

    def __init__(self, bounds: Sequence[float] = DEFAULT_BOUNDS) -> None:
        if not bounds or any(b <= a for a, b in pairwise(bounds)):
            raise ValueError("bounds must be a non-empty increasing sequence")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        """Record one sample."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        if value > self.max:
            self.max = value

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 ≤ q ≤ 1) estimate, 0.0 when empty."""
        total = self.count
        if total == 0:
            return 0.0
        rank = q * total
        seen = 0.0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                bound = self.bounds[i] if i < len(self.bounds) else self.max
                return min(bound, self.max)
        return self.max

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, samples ≤ bound)`` pairs, ending with ``(inf, count)``."""
        out = []
        seen = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            seen += n
            out.append((bound, seen))
        return out
