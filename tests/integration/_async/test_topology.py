"""AsyncTopology against a real primary and streaming replica: role discovery,
routing, failover, demotion, a lagging replica and a replica going down (source
of the generated sync tests, which run `Topology`)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from time import monotonic
from typing import Any

import pytest

from pgharbor._acompat import asleep
from pgharbor._async.pool import AsyncPool
from pgharbor._async.topology import AsyncTopology
from pgharbor._policy.backoff import Backoff
from pgharbor.errors import NoAvailableServer
from pgharbor.testing import PostgresServer

from .helpers import DRIVERS, query, wait_until

pytestmark = pytest.mark.replica

# Seconds of timing slack on a small shared machine; CI may scale it.
SCALE = float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))

TopologyFactory = Callable[..., Any]


@pytest.fixture
async def make_topology(app_name: str) -> AsyncIterator[TopologyFactory]:
    """Build topologies whose pools carry the test's application_name; close them after."""
    made: list[AsyncTopology] = []

    def factory(nodes: dict[str, str], driver: str = "psycopg", **options: Any) -> AsyncTopology:
        def pool(conninfo: str, name: str) -> AsyncPool:
            return AsyncPool(
                conninfo,
                name=name,
                driver=driver,
                min_size=1,
                max_size=4,
                timeout=2.0,
                # A restarted node is reconnected to within half a second.
                backoff=Backoff(initial=0.05, max_delay=0.5),
                kwargs={"application_name": app_name},
            )

        topo = AsyncTopology(nodes, pool_factory=pool, **options)
        made.append(topo)
        return topo

    yield factory
    for topo in made:
        await topo.close()


@pytest.fixture
def own_pair() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and replica this test may fail over (the module pair stays intact)."""
    with PostgresServer() as primary:
        primary.execute("CREATE TABLE ledger (k int PRIMARY KEY)")
        replica = primary.add_replica()
        primary.wait_for_replay()
        yield primary, replica


async def in_recovery(conn: Any) -> bool:
    return bool((await query(conn, "SELECT pg_is_in_recovery()"))[0][0])


def role_of(topo: AsyncTopology, name: str) -> tuple[str, bool]:
    node = next(n for n in topo.nodes() if n["name"] == name)
    return node["role"], node["healthy"]


@pytest.mark.parametrize("driver", DRIVERS)
async def test_roles_discovered_and_routes_followed(
    make_topology: TopologyFactory,
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
    driver: str,
) -> None:
    """open() discovers roles: writes reach the primary, replica reads the standby."""
    primary, replica = pg_primary_replica
    # Listed backwards: the hint is only a hint, the probe decides.
    topo = make_topology({"r": replica.conninfo(), "p": primary.conninfo()}, driver=driver)
    await topo.open()
    assert [(n["name"], n["role"], n["healthy"]) for n in topo.nodes()] == [
        ("r", "standby", True),
        ("p", "primary", True),
    ]
    assert "password" not in repr(topo.nodes())
    assert repr(topo) == (f"<{type(topo).__name__} 'topology' open primary='p' standbys=['r']>")
    async with topo.pool_for("primary").connection() as conn:
        assert not await in_recovery(conn)
    for _ in range(3):
        async with topo.pool_for("replica").connection() as conn:
            assert await in_recovery(conn)
    # "any" spreads over both; None means the reads setting (primary here).
    seen = set()
    for _ in range(4):
        seen.add(topo.pool_for("any").name)
    assert seen == {"p", "r"}
    assert topo.pool_for(None).name == "p"


@pytest.mark.slow
@pytest.mark.timing
async def test_failover_then_demotion(
    make_topology: TopologyFactory,
    own_pair: tuple[PostgresServer, PostgresServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Primary stopped, replica promoted: writes fail fast meanwhile, reach the
    new primary soon after promote, never run on a standby; the old primary
    rejoins as a standby and is recognised as one."""
    old, new = own_pair
    topo = make_topology({"old": old.conninfo(), "new": new.conninfo()}, ban_time=1.0)
    await topo.open()
    acked: list[int] = []
    refused_read_only = 0
    key = 0

    async def write(timeout: float = 1.0) -> bool:
        """One write through the topology; True if acknowledged."""
        nonlocal key, refused_read_only
        key += 1
        pool = topo.pool_for("primary")
        try:
            async with pool.connection(timeout=timeout) as conn:
                # Server-side guard: a standby could not run it anyway (25006),
                # and the WHERE makes the row depend on the server's own view.
                rows = await query(
                    conn,
                    f"INSERT INTO ledger SELECT {key} WHERE NOT pg_is_in_recovery() RETURNING k",
                )
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == "25006":
                refused_read_only += 1
            topo.note_error(pool, exc)
            return False
        assert rows == [(key,)]
        acked.append(key)
        topo.note_write()
        return True

    for _ in range(5):
        assert await write()
    old.stop("fast")

    # No primary: every write fails, fast, and never hangs.
    outage_start = monotonic()
    slowest = 0.0
    while monotonic() - outage_start < 1.5:
        start = monotonic()
        try:
            await write()
        except NoAvailableServer:
            pass
        slowest = max(slowest, monotonic() - start)
        await asleep(0.01)
    assert slowest < 1.0 + 0.5 * SCALE  # bounded by the acquire timeout at worst
    start = monotonic()
    with pytest.raises(NoAvailableServer, match="no reachable node reports primary"):
        topo.pool_for("primary")
    assert monotonic() - start < 0.05

    new.promote()
    promoted = monotonic()
    while True:
        try:
            if await write():
                break
        except NoAvailableServer:
            pass
        assert monotonic() - promoted < 3.0 * SCALE, "no write reached the new primary"
        await asleep(0.01)
    failover = monotonic() - promoted
    print(f"\nfirst write after promote (writer retrying): {failover:.3f} s")
    assert failover <= 3.0 * SCALE
    for _ in range(5):
        assert await write()

    # No write ever ran on a standby, and every acknowledged one is on the
    # new primary's timeline, once.
    assert refused_read_only == 0
    rows = new.execute("SELECT k FROM ledger ORDER BY k")
    assert [r[0] for r in rows] == acked

    # Demotion: the old primary comes back as a standby of the new one.
    with caplog.at_level(logging.INFO, logger="pgharbor.topology"):
        old.demote_to_standby_of(new)
        rejoined = monotonic()
        took = await wait_until(lambda: role_of(topo, "old") == ("standby", True), 5.0 * SCALE)
    print(f"old primary recognised as a standby {took:.3f} s after it rejoined")
    assert monotonic() - rejoined <= 2.5 * SCALE
    assert topo.pool_for("primary").name == "new"
    # Replica reads return to it once the ban of its outage has expired.
    await wait_until(lambda: topo.pool_for("replica").name == "old", 2.0 * SCALE)
    async with topo.pool_for("replica").connection() as conn:
        assert await in_recovery(conn)
    assert any("'old'" in r.message and "standby" in r.message for r in caplog.records)


@pytest.mark.slow
@pytest.mark.timing
async def test_promotion_seen_by_probe_alone(
    make_topology: TopologyFactory,
    own_pair: tuple[PostgresServer, PostgresServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nobody writing, the probe alone finds a promoted replica within
    about a probe interval; a still-running old primary makes a split brain,
    resolved by the higher timeline and logged as an error."""
    old, new = own_pair
    topo = make_topology({"old": old.conninfo(), "new": new.conninfo()})
    await topo.open()
    with caplog.at_level(logging.ERROR, logger="pgharbor.topology"):
        new.promote()  # the old primary keeps running: split brain
        promoted = monotonic()
        took = await wait_until(lambda: role_of(topo, "new") == ("primary", True), 3.0 * SCALE)
        print(f"\npromotion seen by the probe alone: {monotonic() - promoted:.3f} s")
        assert took <= 1.0 + 0.5 * SCALE
        await wait_until(lambda: bool(topo.warnings), 1.0)
    assert topo.pool_for("primary").name == "new"  # timeline 2 beats timeline 1
    assert "split brain" in topo.warnings[0] and "'new'" in topo.warnings[0]
    assert "SPLIT-BRAIN" in repr(topo)
    assert any("split brain" in r.message for r in caplog.records)
    old.stop("fast")
    await wait_until(lambda: not topo.warnings, 3.0 * SCALE)
    assert topo.pool_for("primary").name == "new"


async def test_lagging_replica_excluded_then_readmitted(
    make_topology: TopologyFactory,
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
) -> None:
    """A replica whose replay is paused drops out of reads once its lag passes
    max_replica_lag (reads fall back to the primary) and returns after resume."""
    primary, replica = pg_primary_replica
    primary.execute("CREATE TABLE IF NOT EXISTS lag_probe (x int)")
    primary.execute("INSERT INTO lag_probe VALUES (1)")
    primary.wait_for_replay()  # a replayed commit: the lag clock has a start
    topo = make_topology(
        {"p": primary.conninfo(), "r": replica.conninfo()},
        probe_interval=0.2,
        max_replica_lag=0.5,
    )
    await topo.open()
    assert topo.pool_for("replica").name == "r"
    replica.execute("SELECT pg_wal_replay_pause()")
    try:
        primary.execute("INSERT INTO lag_probe VALUES (2)")
        await wait_until(lambda: topo.pool_for("replica").name == "p", 3.0 * SCALE)
        lagging = next(n for n in topo.nodes() if n["name"] == "r")
        assert lagging["lag_seconds"] > 0.5 and lagging["lag_bytes"] > 0
        async with topo.pool_for("replica").connection() as conn:
            assert not await in_recovery(conn)  # the fallback is the primary
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")
    await wait_until(lambda: topo.pool_for("replica").name == "r", 3.0 * SCALE)


async def test_replica_down_reads_fall_back_then_readmitted(
    make_topology: TopologyFactory,
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
) -> None:
    """A stopped replica gets no reads (primary fallback; NoAvailableServer
    without it) and is re-admitted once it is back and its ban has expired."""
    primary, replica = pg_primary_replica
    nodes = {"p": primary.conninfo(), "r": replica.conninfo()}
    topo = make_topology(nodes, probe_interval=0.2, ban_time=0.5)
    strict = make_topology(nodes, probe_interval=0.2, ban_time=0.5, fallback_to_primary=False)
    await topo.open()
    await strict.open()
    replica.stop("fast")
    try:
        await wait_until(lambda: topo.pool_for("replica").name == "p", 2.0 * SCALE)
        with pytest.raises(NoAvailableServer, match="fallback_to_primary is off"):
            await wait_until(lambda: strict.pool_for("replica") is None, 2.0 * SCALE)
        assert role_of(topo, "r") == ("standby", False)
        assert topo.pool_for("primary").name == "p"
    finally:
        replica.start()
    await wait_until(lambda: topo.pool_for("replica").name == "r", 3.0 * SCALE)
    async with topo.pool_for("replica").connection() as conn:
        assert await in_recovery(conn)


async def test_read_only_error_on_primary_triggers_reprobe(
    make_topology: TopologyFactory,
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
) -> None:
    """A 25006 reported against the primary's pool stops writes there until the
    immediate re-probe confirms it is still primary."""
    primary, replica = pg_primary_replica
    topo = make_topology({"p": primary.conninfo(), "r": replica.conninfo()}, probe_interval=30.0)
    await topo.open()
    pool = topo.pool_for("primary")

    class ReadOnly(Exception):
        sqlstate = "25006"

    assert topo.note_error(pool, ReadOnly("cannot execute INSERT in a read-only transaction"))
    # The probe runs at once (the interval is 30 s): the primary is back.
    await wait_until(lambda: role_of(topo, "p") == ("primary", True), 2.0)
    assert topo.pool_for("primary") is pool
    assert not topo.note_error(pool, ValueError("not a database error"))
    with pytest.raises(ValueError, match="not a pool of topology"):
        topo.note_error(AsyncPool(primary.conninfo(), name="stranger"), ReadOnly())


async def test_open_with_no_node_reachable_raises(make_topology: TopologyFactory) -> None:
    """open() raises NoAvailableServer, fast, when no node answers."""
    topo = make_topology(
        {"a": "host=127.0.0.1 port=1 dbname=x user=x", "b": "host=127.0.0.1 port=2"},
        probe_timeout=0.5,
    )
    start = monotonic()
    with pytest.raises(NoAvailableServer, match="no node answered"):
        await topo.open()
    assert monotonic() - start < 1.0 + 0.5 * SCALE
    with pytest.raises(NoAvailableServer):
        topo.pool_for("replica")
