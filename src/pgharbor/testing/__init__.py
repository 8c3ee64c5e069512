"""Real PostgreSQL servers, replicas and PgBouncer for tests, plus a pytest plugin."""

from pgharbor.testing._binaries import PostgresNotFound, find_bindirs
from pgharbor.testing.server import PostgresServer, ServerVersion

__all__ = [
    "PostgresNotFound",
    "PostgresServer",
    "ServerVersion",
    "find_bindirs",
]
