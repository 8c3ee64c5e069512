"""Exponential backoff with jitter: the one schedule every retry in pgharbor uses."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from .validate import MIN_PERIOD, seconds

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n) = min(max_delay, initial * multiplier**n) * (1 ± jitter)``.

    The schedule of the gRPC connection-backoff spec and psycopg's
    ``AttemptWithBackoff``, with a smaller first step: a server restart takes
    about 0.2 s, and a first retry after a full second would keep every client
    waiting long after the server is back. After a few failures the delays are
    about a second and doubling, capped at ``max_delay``; it never gives up.

    Args:
        initial: first delay, seconds (> 0).
        multiplier: growth factor (≥ 1).
        max_delay: cap, seconds (≥ initial).
        jitter: relative spread, 0 ≤ jitter < 1 (0.1 = ±10 %), so clients that
            failed together do not retry together.
    """

    initial: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        seconds("backoff.initial", self.initial, positive=True, minimum=MIN_PERIOD)
        seconds("backoff.max_delay", self.max_delay, positive=True)
        for name in ("multiplier", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"backoff.{name}", "must be a number", value)
            if not math.isfinite(value):
                raise ConfigError(f"backoff.{name}", "must be finite", value)
        if self.multiplier < 1:
            raise ConfigError("backoff.multiplier", "must be >= 1", self.multiplier)
        if self.max_delay < self.initial:
            raise ConfigError("backoff.max_delay", "must be >= initial", self.max_delay)
        if not 0 <= self.jitter < 1:
            raise ConfigError("backoff.jitter", "must be in [0, 1)", self.jitter)

    def delay(self, attempt: int, rand: float) -> float:
        """Delay before retry number ``attempt`` (0-based); ``rand`` in [0, 1)."""
        # Cap the exponent first: multiplier**1000 would overflow a float.
        base = self.initial * self.multiplier ** min(attempt, 64)
        base = min(self.max_delay, base)
        return base * (1.0 + self.jitter * (2.0 * rand - 1.0))
