"""Real PostgreSQL servers, replicas and PgBouncer for tests, plus a pytest plugin.

Names are imported lazily: the pytest plugin lives in this package and must
not pay for psycopg (a quarter of a second) in test runs that never start a
server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgharbor.testing._binaries import PostgresNotFound, find_bindirs
    from pgharbor.testing.pgbouncer import PgBouncer, pgbouncer_available
    from pgharbor.testing.proxy import ChaosProxy
    from pgharbor.testing.server import PostgresServer, ServerVersion, TempDatabase

__all__ = [
    "ChaosProxy",
    "PgBouncer",
    "PostgresNotFound",
    "PostgresServer",
    "ServerVersion",
    "TempDatabase",
    "find_bindirs",
    "pgbouncer_available",
]

_HOMES = {
    "ChaosProxy": "pgharbor.testing.proxy",
    "PgBouncer": "pgharbor.testing.pgbouncer",
    "PostgresNotFound": "pgharbor.testing._binaries",
    "PostgresServer": "pgharbor.testing.server",
    "ServerVersion": "pgharbor.testing.server",
    "TempDatabase": "pgharbor.testing.server",
    "find_bindirs": "pgharbor.testing._binaries",
    "pgbouncer_available": "pgharbor.testing.pgbouncer",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
