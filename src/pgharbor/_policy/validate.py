"""The one validator for seconds and counts, and the bounds they obey.

Every duration and count a user gives pgharbor (pool options, the backoff,
the breaker, the retry policy, health thresholds, routing, the topology's
probe, CLI intervals) is checked here, so the rules — and the words of the
errors — are the same everywhere: a bad value raises `ConfigError` naming
the field and the rule, at once, and nothing is clamped silently.

Upper bounds exist because the runtime has them: a wait longer than about
24 days overflows ``poll()``'s millisecond argument, and one beyond
``threading.TIMEOUT_MAX`` makes every lock wait raise ``OverflowError``.
Lower bounds on background periods exist because a keepalive of a
nanosecond is a busy loop.
"""

from __future__ import annotations

import math
from typing import Any, Final

from ..errors import ConfigError

__all__ = ["MAX_PERIOD", "MAX_TIMEOUT", "MIN_PERIOD", "count", "seconds"]

#: The longest timeout (a wait for an answer): about 11.5 days.
MAX_TIMEOUT: Final = 1e6
#: The longest period or lifetime (keepalive, max_idle, max_lifetime...): about 115 days.
MAX_PERIOD: Final = 1e7
#: The shortest background period (keepalive, max_idle...): shorter is a busy loop.
MIN_PERIOD: Final = 0.01


def count(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]``; ``True`` is not 1.

    Raises:
        ConfigError: not an integer, or out of bounds.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {type(value).__name__}", value)
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}", value)
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be <= {maximum}, got {value}", value)
    return value


def seconds(
    name: str,
    value: Any,
    *,
    optional: bool = False,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float = MAX_PERIOD,
) -> float | None:
    """A finite number of seconds: >= 0 (> 0 with ``positive``), at least
    ``minimum`` when given, at most ``maximum``; None only when ``optional``
    (it means "off" or "no limit").

    Raises:
        ConfigError: anything else, naming ``name`` and the rule.
    """
    if value is None:
        if optional:
            return None
        raise ConfigError(name, "is required (seconds, a positive number)", value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number of seconds, got {type(value).__name__}", value)
    if math.isnan(value) or math.isinf(value):
        hint = " (use None for no limit)" if optional else ""
        raise ConfigError(name, f"must be finite{hint}, got {value}", value)
    if value < 0 or (positive and value == 0):
        rule = "> 0" if positive else ">= 0"
        raise ConfigError(name, f"must be {rule}, got {value}", value)
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"must be >= {minimum:g} seconds, got {value}", value)
    if value > maximum:
        raise ConfigError(name, f"must be <= {maximum:g} seconds, got {value}", value)
    return float(value)
