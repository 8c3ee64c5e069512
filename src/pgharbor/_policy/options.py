"""Pool settings: defaults in one place, validated once, at construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .backoff import Backoff

__all__ = ["MAX_POOL_SIZE", "PoolOptions", "timeout_arg"]

#: Hard ceiling for ``max_size``: far above any PostgreSQL ``max_connections``
#: worth running, low enough that a typo (``10**9``) fails loudly.
MAX_POOL_SIZE = 10_000


def _count(name: str, value: Any, minimum: int) -> int:
    # bool is an int subclass: ``max_size=True`` is a bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {type(value).__name__}", value)
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}", value)
    return value


def _seconds(name: str, value: Any, *, allow_none: bool, positive: bool) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(name, "is required (seconds, a positive number)", value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number of seconds, got {type(value).__name__}", value)
    if math.isnan(value) or math.isinf(value):
        hint = " (use None for no limit)" if allow_none else ""
        raise ConfigError(name, f"must be finite{hint}, got {value}", value)
    if value < 0 or (positive and value == 0):
        rule = "> 0" if positive else ">= 0"
        raise ConfigError(name, f"must be {rule}, got {value}", value)
    return float(value)


def timeout_arg(value: Any, name: str = "timeout") -> float | None:
    """A per-call timeout (``acquire(timeout=...)``, ``close(timeout=...)``):
    None (the pool's default) or finite seconds >= 0 (0: do not wait).

    Raises:
        ConfigError: not a number, NaN, infinite or negative — a NaN deadline
            would never expire, and a string would fail only once queued.
    """
    if value is None or (type(value) is float and 0.0 <= value < math.inf):
        return value  # the common cases, without the full check
    return _seconds(name, value, allow_none=True, positive=False)


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
        _count("min_size", self.min_size, 0)
        _count("max_size", self.max_size, 1)
        if self.max_size > MAX_POOL_SIZE:
            raise ConfigError(
                "max_size",
                f"must be <= {MAX_POOL_SIZE}, got {self.max_size}",
                self.max_size,
            )
        if self.min_size > self.max_size:
            raise ConfigError(
                "min_size",
                f"must be <= max_size ({self.max_size}), got {self.min_size}",
                self.min_size,
            )
        _count("max_waiting", self.max_waiting, 0)
        if self.max_uses is not None:
            _count("max_uses", self.max_uses, 1)
        _seconds("timeout", self.timeout, allow_none=False, positive=True)
        _seconds("max_lifetime", self.max_lifetime, allow_none=True, positive=True)
        _seconds("max_idle", self.max_idle, allow_none=True, positive=True)
        _seconds("check_window", self.check_window, allow_none=False, positive=False)
        _seconds("check_timeout", self.check_timeout, allow_none=False, positive=True)
        _seconds("keepalive", self.keepalive, allow_none=True, positive=True)
        _seconds("leak_threshold", self.leak_threshold, allow_none=True, positive=True)
        _seconds("connect_timeout", self.connect_timeout, allow_none=False, positive=True)
        _seconds("reconnect_timeout", self.reconnect_timeout, allow_none=False, positive=True)
        jitter = _seconds("lifetime_jitter", self.lifetime_jitter, allow_none=False, positive=False)
        if jitter is not None and jitter >= 1:
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
