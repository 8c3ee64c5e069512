"""PgBouncer in front of a test server."""

from __future__ import annotations

import os

import psycopg
import pytest

from pgharbor.testing import PgBouncer, PostgresServer, pgbouncer_available

pytestmark = [
    pytest.mark.pgbouncer,
    pytest.mark.skipif(not pgbouncer_available(), reason="pgbouncer not installed"),
]


def test_transaction_mode_answers_queries(pgbouncer: PgBouncer, app_name: str) -> None:
    """Queries, including prepared ones, work through a transaction-mode PgBouncer."""
    assert pgbouncer.pool_mode == "transaction"
    with psycopg.connect(pgbouncer.conninfo(application_name=app_name)) as conn:
        for _ in range(7):  # past psycopg's prepare_threshold
            assert conn.execute("SELECT %s::int", [1]).fetchone() == (1,)
        conn.commit()


def test_url_connects(pgbouncer: PgBouncer) -> None:
    """url() points at PgBouncer, not at the server behind it."""
    with psycopg.connect(pgbouncer.url()) as conn:
        assert conn.info.port == pgbouncer.port


def test_admin_show_pools(pgbouncer: PgBouncer) -> None:
    """admin('SHOW POOLS') returns rows from the admin console."""
    rows = pgbouncer.admin("SHOW POOLS")
    assert {row[0] for row in rows} >= {"pgbouncer"}
    assert pgbouncer.version >= (1, 0)


def test_stop_and_cleanup(pg_server: PostgresServer) -> None:
    """stop() ends PgBouncer; cleanup() removes its directory."""
    bouncer = PgBouncer(pg_server, pool_mode="session", default_pool_size=2)
    bouncer.start()
    log_dir = bouncer.log_file.rsplit("/", 1)[0]
    bouncer.stop()
    assert not bouncer.is_running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bouncer.conninfo(connect_timeout=2)).close()
    bouncer.cleanup()
    assert not os.path.exists(log_dir)
