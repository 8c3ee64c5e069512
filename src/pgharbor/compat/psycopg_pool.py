"""A drop-in for psycopg_pool on pgharbor's pools: change
``from psycopg_pool import ...`` to ``from pgharbor.compat.psycopg_pool
import ...`` and keep your code.

``ConnectionPool``/``AsyncConnectionPool`` and
``NullConnectionPool``/``AsyncNullConnectionPool`` take psycopg_pool's
arguments and keep its semantics (psycopg's default transactions, a
``connection()`` block that commits or rolls back, ``check``, ``configure``,
``reset``, ``close_returns``, ``get_stats``...); the connections come from a
pgharbor `Pool`/`AsyncPool` (``pool.pgharbor``), with its checkout check,
reconnection, leak detection, health, metrics and, with
``pgharbor={"breaker": True}``, a circuit breaker. ``PoolTimeout``,
``PoolClosed`` and ``TooManyRequests`` are psycopg ``OperationalError``\\ s
and pgharbor errors at once. The differences are listed in
docs/coming-from-psycopg-pool.md.
"""

from __future__ import annotations

from .._async.psycopg_null_pool import AsyncNullConnectionPool
from .._async.psycopg_pool import AsyncConnectionPool
from .._sync.psycopg_null_pool import NullConnectionPool
from .._sync.psycopg_pool import ConnectionPool
from ._psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

__all__ = [
    "AsyncConnectionPool",
    "AsyncNullConnectionPool",
    "ConnectionPool",
    "NullConnectionPool",
    "PoolClosed",
    "PoolTimeout",
    "TooManyRequests",
]
