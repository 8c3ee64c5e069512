"""A circuit breaker per endpoint: closed → open → half-open with one probe.

Pure: no clock reads, ``now`` is passed in. The pool asks it before each
connection attempt and tells it how attempts went:

- **closed**: attempts run as usual (with the pool's own backoff);
- **open** after ``failure_threshold`` consecutive failed attempts: no attempt
  runs — no TCP connection is even tried — and callers that find no open
  connection fail at once with `CircuitOpen` instead of waiting out their
  timeout;
- **half-open** once ``reset_timeout`` has passed: up to ``half_open_max``
  probe attempts run; a success closes the breaker, a failure opens it again
  for another ``reset_timeout``.

HikariCP declined a breaker ("not the pool's responsibility"); PgBouncer's
``server_login_retry`` and postgres-nio's fail-fast state do the same job.
Here it is per endpoint, so separate databases and nodes never share one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from .validate import MIN_PERIOD, count, seconds

__all__ = ["Breaker", "BreakerOptions"]

State = Literal["closed", "open", "half-open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half-open"


@dataclass(frozen=True, slots=True)
class BreakerOptions:
    """Breaker thresholds.

    Args:
        failure_threshold: consecutive failed attempts that open it (≥ 1).
        reset_timeout: seconds it stays open before a probe (> 0).
        half_open_max: probe attempts allowed at once while half-open (≥ 1).
    """

    failure_threshold: int = 5
    reset_timeout: float = 5.0
    half_open_max: int = 1

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "half_open_max"):
            count(f"breaker.{name}", getattr(self, name), 1)
        seconds("breaker.reset_timeout", self.reset_timeout, positive=True, minimum=MIN_PERIOD)


class Breaker:
    """The breaker's state machine (not thread-safe: the pool's lock guards it)."""

    __slots__ = ("failures", "open_until", "options", "probes", "state", "times_opened")

    def __init__(self, options: BreakerOptions | None = None) -> None:
        self.options = options or BreakerOptions()
        self.state: State = CLOSED
        self.failures = 0  # consecutive failed attempts
        self.open_until = 0.0
        self.probes = 0  # attempts in flight while half-open
        self.times_opened = 0

    def __repr__(self) -> str:
        return f"<Breaker {self.state} failures={self.failures}>"

    def allow(self, now: float) -> bool:
        """May a connection attempt start now? (Reserves a probe when half-open.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now < self.open_until:
                return False
            self.state = HALF_OPEN
            self.probes = 0
        if self.probes >= self.options.half_open_max:
            return False
        self.probes += 1
        return True

    def rejects(self, now: float) -> bool:
        """Whether callers should fail fast now (open, not yet time to probe)."""
        return self.state == OPEN and now < self.open_until

    def retry_after(self, now: float) -> float:
        """Seconds until a probe may run (0 when not open)."""
        return max(0.0, self.open_until - now) if self.state == OPEN else 0.0

    def probe_from(self, at: float) -> None:
        """The endpoint answers again (a reachability probe got through): an
        open breaker lets its probe attempt run from ``at`` rather than
        after the rest of ``reset_timeout``."""
        if self.state == OPEN and at < self.open_until:
            self.open_until = at

    def succeeded(self, now: float) -> None:
        """An attempt succeeded: close."""
        self.state = CLOSED
        self.failures = 0
        self.probes = 0

    def failed(self, now: float, hold: float | None = None) -> bool:
        """An attempt failed. Returns True if this opened the breaker, for
        ``hold`` seconds when given (a server still starting up is worth
        another probe soon), else ``reset_timeout``."""
        self.failures += 1
        if self.state == HALF_OPEN or (
            self.state == CLOSED and self.failures >= self.options.failure_threshold
        ):
            self.state = OPEN
            self.open_until = now + (self.options.reset_timeout if hold is None else hold)
            self.probes = 0
            self.times_opened += 1
            return True
        return False
