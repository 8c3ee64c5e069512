"""Drop-in replacements for other pools, built on pgharbor's.

- `pgharbor.compat.psycopg_pool`: ``ConnectionPool``, ``AsyncConnectionPool``,
  ``NullConnectionPool``, ``AsyncNullConnectionPool`` and their errors, with
  psycopg_pool's semantics (docs/coming-from-psycopg-pool.md).
- `pgharbor.compat.asyncpg`: ``create_pool`` and ``Pool`` with asyncpg's pool
  semantics (docs/coming-from-asyncpg.md).

Change one import; keep your code; gain pgharbor's checkout check, breaker,
leak detection, health and metrics.
"""
