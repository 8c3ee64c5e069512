"""The drop-in modules: the peers' public names, nothing of the peers' pools imported."""

from __future__ import annotations

import subprocess
import sys

import psycopg

import pgharbor
from pgharbor.compat import asyncpg as compat_asyncpg
from pgharbor.compat import psycopg_pool as compat_psycopg_pool

PSYCOPG_POOL_NAMES = [
    "AsyncConnectionPool",
    "AsyncNullConnectionPool",
    "ConnectionPool",
    "NullConnectionPool",
    "PoolClosed",
    "PoolTimeout",
    "TooManyRequests",
]


def test_psycopg_pool_names() -> None:
    """pgharbor.compat.psycopg_pool exports psycopg_pool's public names, and
    its null pools are pools (as psycopg_pool's are)."""
    assert compat_psycopg_pool.__all__ == PSYCOPG_POOL_NAMES
    for name in PSYCOPG_POOL_NAMES:
        assert getattr(compat_psycopg_pool, name) is not None
    assert issubclass(compat_psycopg_pool.NullConnectionPool, compat_psycopg_pool.ConnectionPool)
    assert issubclass(
        compat_psycopg_pool.AsyncNullConnectionPool, compat_psycopg_pool.AsyncConnectionPool
    )


def test_errors_belong_to_both_trees() -> None:
    """The drop-in's errors are psycopg OperationalErrors and pgharbor's errors."""
    pairs = [
        (compat_psycopg_pool.PoolTimeout, pgharbor.PoolTimeout),
        (compat_psycopg_pool.PoolClosed, pgharbor.PoolClosed),
        (compat_psycopg_pool.TooManyRequests, pgharbor.TooManyRequests),
    ]
    for ours, harbor in pairs:
        assert issubclass(ours, psycopg.OperationalError) and issubclass(ours, harbor)
        assert ours.__module__ == "pgharbor.compat.psycopg_pool"
    assert issubclass(compat_psycopg_pool.PoolTimeout, TimeoutError)


def test_asyncpg_names() -> None:
    """pgharbor.compat.asyncpg exports create_pool and Pool."""
    assert compat_asyncpg.__all__ == ["Pool", "create_pool"]


def test_the_peers_pools_are_not_imported() -> None:
    """Importing the drop-ins loads neither psycopg_pool nor asyncpg's pool
    class into use: psycopg_pool need not be installed."""
    code = (
        "import sys; import pgharbor.compat.psycopg_pool, pgharbor.compat.asyncpg; "
        "print('psycopg_pool' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
