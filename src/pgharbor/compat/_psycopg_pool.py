"""What both flavours of the psycopg_pool drop-in share: the errors, the
stats, psycopg_pool's rules for sizes, and the pgharbor settings a drop-in
takes in its ``pgharbor=`` mapping. No I/O here."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from psycopg import errors as e

from .. import errors as harbor
from .._policy.options import MAX_POOL_SIZE
from ..errors import ConfigError

__all__ = [
    "EXTRAS",
    "PoolClosed",
    "PoolTimeout",
    "Stats",
    "TooManyRequests",
    "attributes",
    "check_size",
    "check_workers",
    "extras",
    "logger",
]

#: psycopg_pool's logger: what psycopg_pool logs, the drop-in logs there
#: too, with the same words, so logging configurations keep working.
#: pgharbor's own messages go to ``pgharbor.pool``.
logger = logging.getLogger("psycopg.pool")


class PoolClosed(e.OperationalError, harbor.PoolClosed):
    """Attempt to get a connection from a closed pool (also a
    `pgharbor.PoolClosed` and a ``psycopg.OperationalError``)."""

    __module__ = "pgharbor.compat.psycopg_pool"


class PoolTimeout(e.OperationalError, harbor.PoolTimeout):
    """The pool couldn't provide a connection in acceptable time (also a
    `pgharbor.PoolTimeout`, a ``TimeoutError`` and a
    ``psycopg.OperationalError``)."""

    __module__ = "pgharbor.compat.psycopg_pool"


class TooManyRequests(e.OperationalError, harbor.TooManyRequests):
    """Too many requests in the queue waiting for a connection from the pool
    (also a `pgharbor.TooManyRequests` and a ``psycopg.OperationalError``)."""

    __module__ = "pgharbor.compat.psycopg_pool"


#: pgharbor settings a drop-in pool takes in its ``pgharbor=`` mapping (the
#: others are psycopg_pool's own arguments, or set by the drop-in).
EXTRAS = frozenset(
    {
        "alerts",
        "backoff",
        "breaker",
        "check_timeout",
        "check_window",
        "connect_timeout",
        "health",
        "keepalive",
        "labels",
        "leak_threshold",
        "max_uses",
        "metrics",
        "minimum_version",
        "password",
        "prepared_statements",
    }
)


def extras(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``pgharbor=`` mapping, checked: pgharbor pool settings by name.

    Raises:
        ConfigError: not a mapping, or a key that is not one of `EXTRAS`.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("pgharbor", "must be a mapping of pgharbor pool settings")
    for key in value:
        if key not in EXTRAS:
            known = ", ".join(sorted(EXTRAS))
            raise ConfigError("pgharbor", f"{key!r} is not one of the settings it takes: {known}")
    return dict(value)


def check_size(min_size: int, max_size: int | None, null: bool) -> tuple[int, int]:
    """psycopg_pool's rules: ``max_size`` None means ``min_size``; a null pool
    has ``min_size`` 0 and ``max_size`` 0 means no limit.

    Raises:
        ConfigError: (a ``ValueError``, as psycopg_pool raises) naming the size.
    """
    if max_size is None:
        max_size = min_size
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, "must be an integer", value)
    if null and min_size != 0:
        raise ConfigError("min_size", "null pools must have min_size = 0", min_size)
    if min_size < 0:
        raise ConfigError("min_size", "cannot be negative", min_size)
    if max_size < min_size:
        raise ConfigError("max_size", "must be greater or equal than min_size", max_size)
    if not null and min_size == max_size == 0:
        raise ConfigError("max_size", "if min_size is 0 max_size must be greater than 0")
    if max_size > MAX_POOL_SIZE:
        raise ConfigError("max_size", f"must be <= {MAX_POOL_SIZE}", max_size)
    return min_size, max_size


def check_workers(num_workers: int) -> int:
    """``num_workers`` (how many connections open at the same time),
    checked as psycopg_pool checks it.

    Raises:
        ConfigError: less than 1.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ConfigError("num_workers", "must be at least 1", num_workers)
    return num_workers


def attributes(conn: Any) -> tuple[Any, Any, Any, Any]:
    """A psycopg connection's client-side session attributes (no I/O).

    Read from psycopg's own fields, as `pgharbor.drivers.psycopg` does at
    every return: its properties cost five times as much."""
    return (conn._autocommit, conn._isolation_level, conn._read_only, conn._deferrable)


# pgharbor's counters behind psycopg_pool's ``connections_*`` stats.
_HARBOR_COUNTERS = (
    "connections_created",
    "connections_failed",
    "connect_ms",
    "connections_lost",
    "waited",
    "timeouts",
)


class Stats:
    """psycopg_pool's ``get_stats``/``pop_stats`` over pgharbor's numbers.

    The drop-in counts what only it sees (requests, their waits and errors,
    usage inside ``connection()``, connections returned broken); the
    connection counters come from the pgharbor pool, relative to the last
    `pop`.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._base: dict[str, float] = {}

    def report(
        self,
        harbor_stats: Mapping[str, Any],
        min_size: int,
        max_size: int,
        *,
        pop: bool,
        null: bool = False,
    ) -> dict[str, int]:
        """The stats psycopg_pool reports (``min_size``/``max_size`` as the
        drop-in was given them); with ``pop``, counters restart at zero. A
        ``null`` pool's ``requests_queued`` is counted by the drop-in (every
        request waits for the pool to connect; only those that found
        ``max_size`` connections busy queued)."""
        h = harbor_stats
        delta = {k: h[k] - self._base.get(k, 0) for k in _HARBOR_COUNTERS}
        out = {
            "requests_num": 0,
            "requests_queued": 0,
            "requests_wait_ms": 0,
            "requests_errors": 0,
            "usage_ms": 0,
            "returns_bad": 0,
            **self.counts,
        }
        # Queued: served after waiting, timed out, or waiting now.
        if not null:
            out["requests_queued"] = int(delta["waited"] + delta["timeouts"] + h["waiting"])
        out["connections_num"] = int(delta["connections_created"] + delta["connections_failed"])
        out["connections_ms"] = int(delta["connect_ms"])
        out["connections_errors"] = int(delta["connections_failed"])
        # pgharbor counts a connection returned broken as lost; psycopg_pool
        # counts it in returns_bad.
        out["connections_lost"] = max(0, int(delta["connections_lost"]) - out["returns_bad"])
        out.update(
            pool_min=min_size,
            pool_max=max_size,
            pool_size=int(h["size"] + h["connecting"]),
            pool_available=int(h["idle"]),
            requests_waiting=int(h["waiting"]),
        )
        if pop:
            self.counts = Counter()
            self._base = {k: h[k] for k in _HARBOR_COUNTERS}
        return out
