"""Side-by-side benchmarks for pgharbor (run them, never assert on them in tests).

``python -m benchmarks.pools --quick`` compares pgharbor's pools with raw driver
connections and with the peer pools (psycopg_pool, asyncpg, SQLAlchemy,
psycopg2) against one throwaway PostgreSQL server. See ``benchmarks/README.md``
and ``/work/shared/BENCHMARKS.md`` for the method and the bar.
"""
