"""Streaming replicas: replay, read-only standbys, promotion and demotion."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgharbor.testing import PostgresServer

pytestmark = pytest.mark.replica


def test_replica_receives_writes(
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
) -> None:
    """A write on the primary is visible on the replica after wait_for_replay()."""
    primary, replica = pg_primary_replica
    primary.execute("CREATE TABLE IF NOT EXISTS shipped (x int)")
    primary.execute("INSERT INTO shipped VALUES (1)")
    primary.wait_for_replay()
    assert replica.execute("SELECT x FROM shipped") == [(1,)]
    assert replica.is_in_recovery()
    assert not primary.is_in_recovery()


def test_replica_rejects_writes(
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
) -> None:
    """Writing on a standby fails with SQLSTATE 25006 (read-only transaction)."""
    _, replica = pg_primary_replica
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as info:
        replica.execute("CREATE TABLE nope (x int)")
    assert info.value.sqlstate == "25006"


@pytest.fixture
def pair() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and replica this test may fail over (the module pair stays intact)."""
    with PostgresServer() as primary:
        primary.execute("CREATE TABLE t (x int)")
        yield primary, primary.add_replica()


@pytest.mark.slow
def test_promote_then_demote_old_primary(
    pair: tuple[PostgresServer, PostgresServer],
) -> None:
    """Failover: the promoted replica takes writes and the old primary follows it."""
    old, new = pair
    old.execute("INSERT INTO t VALUES (1)")
    old.wait_for_replay()
    old.stop()
    new.promote()
    assert not new.is_in_recovery()
    new.execute("INSERT INTO t VALUES (2)")

    old.demote_to_standby_of(new)
    assert old.is_in_recovery()
    new.execute("INSERT INTO t VALUES (3)")
    new.wait_for_replay()
    assert old.execute("SELECT x FROM t ORDER BY x") == [(1,), (2,), (3,)]


@pytest.mark.slow
def test_demote_rewinds_a_diverged_primary(
    pair: tuple[PostgresServer, PostgresServer],
) -> None:
    """An old primary that wrote after the promotion is rewound and then follows."""
    old, new = pair
    old.wait_for_replay()
    new.promote()
    old.execute("INSERT INTO t VALUES (99)")  # split brain: lost on rejoin
    new.execute("INSERT INTO t VALUES (2)")

    old.demote_to_standby_of(new)
    new.wait_for_replay()
    assert old.execute("SELECT x FROM t") == [(2,)]
