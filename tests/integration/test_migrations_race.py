"""Deployers racing: real processes migrating one database at the same moment,
directly and through PgBouncer in transaction mode."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgharbor import Database, MigrationError, Migrations
from pgharbor.testing import PgBouncer, PostgresServer, TempDatabase
from pgharbor.testing.pgbouncer import pgbouncer_available

# Each migration leaves a row per application, so anything applied twice shows.
FILES = {
    "0001_log.sql": (
        "CREATE TABLE applied (version int, pid int);\n"
        "INSERT INTO applied VALUES (1, pg_backend_pid());\n"
    ),
    "0002_slow.sql": "SELECT pg_sleep(0.5);\nINSERT INTO applied VALUES (2, pg_backend_pid());\n",
    "0003_table.sql": (
        "CREATE TABLE orders (id int, status text);\n"
        "INSERT INTO applied VALUES (3, pg_backend_pid());\n"
    ),
    "0004_slow.sql": "SELECT pg_sleep(0.3);\nINSERT INTO applied VALUES (4, pg_backend_pid());\n",
}
# A build outside a transaction while the other deployer waits for the lock:
# a deployer blocked in pg_advisory_lock would deadlock it.
CONCURRENT = {
    "0005_index.sql": "CREATE INDEX CONCURRENTLY orders_status ON orders (status);\n",
    "0006_after.sql": "INSERT INTO applied VALUES (6, pg_backend_pid());\n",
}

RUNNER = """
import json, sys, time
import pgharbor

url, directory, start_at, pgbouncer, app = sys.argv[1:]
with pgharbor.Database(url, pgbouncer=pgbouncer == "1", application_name=app,
                       min_size=1, max_size=2) as db:
    migrations = pgharbor.Migrations(db, directory)
    while time.time() < float(start_at):  # both start at the same instant
        time.sleep(0.001)
    plan = migrations.up()
print(json.dumps([s.version for s in plan.steps]))
"""


def race(url: str, directory: Path, pgbouncer: bool, app_name: str, n: int = 2) -> list[list[int]]:
    """Run ``n`` deployers at once; what each applied."""
    start_at = time.time() + 2.0  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUNNER,
                url,
                str(directory),
                str(start_at),
                "1" if pgbouncer else "0",
                app_name,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def check_once(server: PostgresServer, dbname: str, logged: list[int], history: list[int]) -> None:
    """Each logging migration left exactly one row; the history is complete."""
    rows = server.execute(
        "SELECT version, count(*) FROM applied GROUP BY version ORDER BY version", dbname=dbname
    )
    assert rows == [(v, 1) for v in logged]
    versions = server.execute(
        "SELECT version FROM pgharbor_migrations WHERE success ORDER BY version", dbname=dbname
    )
    assert [v for (v,) in versions] == history


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.mark.slow
def test_two_deployers_at_once_apply_everything_once(
    pg_server: PostgresServer, pg_database: TempDatabase, tmp_path: Path, app_name: str
) -> None:
    """Two processes started at the same instant: every migration is applied
    exactly once, in order, by one of them; a CREATE INDEX CONCURRENTLY run
    while the other waits for the lock does not deadlock."""
    directory = write(tmp_path / "m", {**FILES, **CONCURRENT})
    results = race(pg_database.url(), directory, False, app_name)
    assert sorted(v for r in results for v in r) == [1, 2, 3, 4, 5, 6]
    # The session lock serializes whole runs: one deployer did everything.
    assert sorted(results, key=len) == [[], [1, 2, 3, 4, 5, 6]]
    check_once(pg_server, pg_database.name, [1, 2, 3, 4, 6], [1, 2, 3, 4, 5, 6])


@pytest.mark.slow
@pytest.mark.pgbouncer
def test_two_deployers_through_pgbouncer_apply_everything_once(
    pg_server: PostgresServer,
    pg_database: TempDatabase,
    pgbouncer: PgBouncer,
    tmp_path: Path,
    app_name: str,
) -> None:
    """Through PgBouncer in transaction mode (pgbouncer=True: a lock in each
    migration's transaction), two deployers at once still apply every
    migration exactly once."""
    directory = write(tmp_path / "m", FILES)
    results = race(pgbouncer.url(dbname=pg_database.name), directory, True, app_name)
    applied = sorted(v for r in results for v in r)
    assert applied == [1, 2, 3, 4]
    for r in results:
        assert r == sorted(r)
    check_once(pg_server, pg_database.name, [1, 2, 3, 4], [1, 2, 3, 4])


@pytest.mark.pgbouncer
def test_pgbouncer_refuses_migrations_outside_transactions(
    pg_database: TempDatabase, pgbouncer: PgBouncer, tmp_path: Path, app_name: str
) -> None:
    """Through PgBouncer (pgbouncer=True), a migration that cannot run in a
    transaction is refused with a message saying what to do; nothing runs."""
    directory = write(tmp_path / "m", {**FILES, **CONCURRENT})
    with Database(
        pgbouncer.url(dbname=pg_database.name),
        pgbouncer=True,
        application_name=app_name,
        max_size=2,
    ) as db:
        m = Migrations(db, directory)
        assert m.mode == "transaction"
        with pytest.raises(MigrationError, match=r"0005_index.sql: .*direct connection"):
            m.up()
        assert m.history() == []
        assert [s.version for s in m.up(to=4).steps] == [1, 2, 3, 4]


@pytest.mark.pgbouncer
def test_an_undeclared_pooler_is_detected(
    pg_server: PostgresServer, pg_database: TempDatabase, tmp_path: Path, app_name: str
) -> None:
    """Through a transaction-mode pooler the user did not declare, the
    session lock is seen to hold nothing (statements reach another server
    session) and the run stops, saying to configure pgbouncer=True."""
    if not pgbouncer_available():
        pytest.skip("pgbouncer binary not found")
    directory = write(tmp_path / "m", FILES)
    # Two server connections, used in turn: consecutive transactions of one
    # client land on different server sessions, as on a busy pooler.
    with (
        PgBouncer(
            pg_server, pool_mode="transaction", min_pool_size=2, server_round_robin=1
        ) as bouncer,
        Database(  # psycopg2: no prepared statements for the pooler to break
            bouncer.url(dbname=pg_database.name),
            driver="psycopg2",
            application_name=app_name,
            max_size=1,
        ) as db,
    ):
        for _ in range(10):  # let PgBouncer open its minimum of server connections
            db.fetchval("SELECT 1")
            time.sleep(0.05)
        m = Migrations(db, directory)
        with pytest.raises(MigrationError, match=r"(?i)configure the database with pgbouncer=True"):
            m.up()
