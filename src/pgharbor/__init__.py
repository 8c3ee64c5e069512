"""pgharbor: PostgreSQL connection management for Python services and tools.

Fast sync and async pools over psycopg 3, asyncpg and psycopg2; the user gets
the driver's native connection. Names are imported on first use, so that
``import pgharbor`` (and the pytest plugin that ships with it) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgharbor._async.pool import AsyncPool
    from pgharbor._policy.backoff import Backoff
    from pgharbor._policy.options import PoolOptions
    from pgharbor._sync.pool import Pool
    from pgharbor.errors import (
        AuthenticationFailed,
        CircuitOpen,
        CommitOutcomeUnknown,
        ConfigError,
        ConnectionFailed,
        HarborError,
        InsufficientPrivileges,
        NoAvailableServer,
        PoolClosed,
        PoolError,
        PoolTimeout,
        TooManyRequests,
        UnsupportedServerVersion,
    )

__version__ = "0.1.0.dev0"

__all__ = [
    "AsyncPool",
    "AuthenticationFailed",
    "Backoff",
    "CircuitOpen",
    "CommitOutcomeUnknown",
    "ConfigError",
    "ConnectionFailed",
    "HarborError",
    "InsufficientPrivileges",
    "NoAvailableServer",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolOptions",
    "PoolTimeout",
    "TooManyRequests",
    "UnsupportedServerVersion",
    "__version__",
]

_ERRORS = "pgharbor.errors"
_HOMES = {
    "AsyncPool": "pgharbor._async.pool",
    "AuthenticationFailed": _ERRORS,
    "Backoff": "pgharbor._policy.backoff",
    "CircuitOpen": _ERRORS,
    "CommitOutcomeUnknown": _ERRORS,
    "ConfigError": _ERRORS,
    "ConnectionFailed": _ERRORS,
    "HarborError": _ERRORS,
    "InsufficientPrivileges": _ERRORS,
    "NoAvailableServer": _ERRORS,
    "Pool": "pgharbor._sync.pool",
    "PoolClosed": _ERRORS,
    "PoolError": _ERRORS,
    "PoolOptions": "pgharbor._policy.options",
    "PoolTimeout": _ERRORS,
    "TooManyRequests": _ERRORS,
    "UnsupportedServerVersion": _ERRORS,
}


def __getattr__(name: str) -> Any:
    try:
        home = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module 'pgharbor' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
