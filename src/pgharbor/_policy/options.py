"""Pool settings: defaults in one place, validated once, at construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .backoff import Backoff
from .validate import MAX_TIMEOUT, MIN_PERIOD, count, seconds

__all__ = ["DEFAULTS", "MAX_POOL_SIZE", "PoolOptions", "timeout_arg"]

#: Hard ceiling for ``max_size``: far above any PostgreSQL ``max_connections``
#: worth running, low enough that a typo (``10**9``) fails loudly.
MAX_POOL_SIZE = 10_000


def timeout_arg(value: Any, name: str = "timeout") -> float | None:
    """A per-call timeout (``acquire(timeout=...)``, ``close(timeout=...)``):
    None (the pool's default) or finite seconds in [0, `MAX_TIMEOUT`] (0: do
    not wait).

    Raises:
        ConfigError: not a number, NaN, infinite or negative — a NaN deadline
            would never expire, and a string would fail only once queued.
    """
    if value is None or (type(value) is float and 0.0 <= value <= MAX_TIMEOUT):
        return value  # the common cases, without the full check
    return seconds(name, value, optional=True, maximum=MAX_TIMEOUT)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolOptions:
    """Every pool knob, validated. Times are float seconds; ``None`` means "off".

    Essentials:
        min_size: connections kept open (5).
        max_size: upper bound (5; >= min_size, <= 10 000).
        timeout: default acquire timeout (30 s).

    Frequently used:
        max_waiting: callers allowed to queue; beyond it ``TooManyRequests``
            (0 = unbounded).
        max_lifetime: connections are replaced after this (30 min, minus up to
            5 % jitter), checked at checkout and at return, never while in use.
        max_idle: idle connections above ``min_size`` close after this (10 min).
        leak_threshold: warn when a connection is held longer (off).

    Infrequently used:
        max_uses: retire a connection after N checkouts (off).
        check_window: a connection idle longer than this is pinged at checkout
            (0.5 s); 0 pings every checkout.
        check_timeout: bound on that ping (5 s).
        keepalive: idle connections are pinged in the background this often (2 min).
        connect_timeout: bound on one connection attempt (10 s).
        reconnect_timeout: after failing this long, ``reconnect_failed`` is
            called (5 min); attempts continue regardless.
        backoff: the reconnect schedule.
    """

    min_size: int = 5
    max_size: int = 5
    timeout: float = 30.0
    max_waiting: int = 0
    max_lifetime: float | None = 30 * 60.0
    lifetime_jitter: float = 0.05
    max_idle: float | None = 10 * 60.0
    max_uses: int | None = None
    check_window: float = 0.5
    check_timeout: float = 5.0
    keepalive: float | None = 120.0
    leak_threshold: float | None = None
    connect_timeout: float = 10.0
    reconnect_timeout: float = 5 * 60.0
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        count("min_size", self.min_size, 0)
        count("max_size", self.max_size, 1, MAX_POOL_SIZE)
        if self.min_size > self.max_size:
            raise ConfigError(
                "min_size",
                f"must be <= max_size ({self.max_size}), got {self.min_size}",
                self.min_size,
            )
        count("max_waiting", self.max_waiting, 0)
        if self.max_uses is not None:
            count("max_uses", self.max_uses, 1)
        # Waits for an answer: bounded by what poll() and lock waits accept.
        for name in ("timeout", "check_timeout", "connect_timeout"):
            seconds(name, getattr(self, name), positive=True, maximum=MAX_TIMEOUT)
        seconds("check_window", self.check_window)
        # Periods the housekeeper sleeps on: shorter than MIN_PERIOD is a busy loop.
        for name in ("max_lifetime", "max_idle", "keepalive", "leak_threshold"):
            seconds(name, getattr(self, name), optional=True, positive=True, minimum=MIN_PERIOD)
        seconds("reconnect_timeout", self.reconnect_timeout, positive=True, minimum=MIN_PERIOD)
        jitter = self.lifetime_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ConfigError("lifetime_jitter", "must be in [0, 1)", self.lifetime_jitter)
        if not isinstance(self.backoff, Backoff):
            raise ConfigError("backoff", "must be a pgharbor.Backoff", self.backoff)

    def with_sizes(self, min_size: int, max_size: int | None) -> PoolOptions:
        """A validated copy with new sizes (``max_size=None`` keeps the bound
        unless it would fall below ``min_size``)."""
        from dataclasses import replace

        if max_size is None:
            max_size = max(self.max_size, min_size) if isinstance(min_size, int) else self.max_size
        return replace(self, min_size=min_size, max_size=max_size)


#: Every pool default, in one place: `Pool`, `AsyncPool` and
#: `pgharbor.config.DatabaseSettings` take theirs from here.
DEFAULTS = PoolOptions()
