"""Faults around a primary and its replica, through the fault proxy and server
control: a node blackholed or paused (SIGSTOP), every replica down, a flapping
replica (source of the generated sync tests)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from time import monotonic
from typing import Any

import pytest

from pgharbor._acompat import asleep
from pgharbor._async.database import AsyncDatabase
from pgharbor._async.pool import AsyncPool
from pgharbor._async.topology import AsyncTopology
from pgharbor._policy.backoff import Backoff
from pgharbor._policy.routing import Route
from pgharbor.errors import ConfigError, NoAvailableServer
from pgharbor.testing import PostgresServer
from pgharbor.testing.proxy import ChaosProxy
from pgharbor.testing.server import target_conninfo, target_url

from .helpers import DRIVERS, query, wait_until

pytestmark = pytest.mark.replica

# Seconds of timing slack on a small shared machine; CI may scale it.
SCALE = float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))
IN_RECOVERY = "SELECT pg_is_in_recovery()"
PROBE_INTERVAL = 0.2
PROBE_TIMEOUT = 0.5
BAN_TIME = 0.5


@pytest.fixture
def proxies(
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
) -> Iterator[dict[str, ChaosProxy]]:
    """A fault proxy in front of the primary ("p") and one in front of the replica ("r")."""
    primary, replica = pg_primary_replica
    with ChaosProxy(primary.host, primary.port) as p, ChaosProxy(replica.host, replica.port) as r:
        yield {"p": p, "r": r}


@pytest.fixture
async def make_topology(app_name: str) -> AsyncIterator[Callable[..., AsyncTopology]]:
    """Topologies with quick probes whose pools carry the test's application_name."""
    made: list[AsyncTopology] = []

    def factory(nodes: dict[str, str], driver: str = "psycopg", **options: Any) -> AsyncTopology:
        def pool(conninfo: str, name: str) -> AsyncPool:
            return AsyncPool(
                conninfo,
                name=name,
                driver=driver,
                min_size=1,
                max_size=4,
                timeout=1.0,
                backoff=Backoff(initial=0.05, max_delay=0.5),
                kwargs={"application_name": app_name},
            )

        options = {
            "probe_interval": PROBE_INTERVAL,
            "probe_timeout": PROBE_TIMEOUT,
            "ban_time": BAN_TIME,
            **options,
        }
        topo = AsyncTopology(nodes, pool_factory=pool, **options)
        made.append(topo)
        return topo

    yield factory
    for topo in made:
        started = monotonic()
        await topo.close()
        assert monotonic() - started < 5.0 + SCALE, "close() is bounded"


def via(proxy: ChaosProxy) -> str:
    """A conninfo reaching the server behind ``proxy``."""
    return target_conninfo(proxy.host, proxy.port, None, "postgres", None)


def node_state(topo: AsyncTopology, name: str) -> dict[str, Any]:
    return next(n for n in topo.nodes() if n["name"] == name)


async def in_recovery_via(pool: AsyncPool) -> tuple[bool, float]:
    """Ask ``pool``'s server whether it is a standby; the answer and how long it took."""
    start = monotonic()
    async with pool.connection() as conn:
        rows = await query(conn, IN_RECOVERY)
    return bool(rows[0][0]), monotonic() - start


def settle_sessions(servers: tuple[PostgresServer, ...], app_name: str) -> dict[int, list[int]]:
    """Sessions of this test still open on each server, after a short grace."""
    deadline = monotonic() + 2.0
    while True:
        left = {s.port: s.backends(app_name) for s in servers}
        if not any(left.values()) or monotonic() > deadline:
            return {port: pids for port, pids in left.items() if pids}


@contextlib.contextmanager
def fault_on(kind: str, server: PostgresServer, proxy: ChaosProxy) -> Iterator[Callable[[], None]]:
    """Hang ``server`` (SIGSTOP) or partition it (blackhole its proxy); yields
    the function that ends the fault, which also runs on the way out."""
    ended = False

    def end() -> None:
        nonlocal ended
        if not ended:
            ended = True
            if kind == "pause":
                server.resume()
            else:
                proxy.heal()

    if kind == "pause":
        server.pause()
    else:
        proxy.blackhole()
    try:
        yield end
    finally:
        end()


@pytest.mark.timing
@pytest.mark.parametrize("victim", ["replica", "primary"])
@pytest.mark.parametrize("kind", ["blackhole", "pause"])
@pytest.mark.parametrize("driver", DRIVERS)
async def test_hung_node_probe_times_out_routing_avoids_it(
    make_topology: Callable[..., AsyncTopology],
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
    proxies: dict[str, ChaosProxy],
    caplog: pytest.LogCaptureFixture,
    driver: str,
    kind: str,
    victim: str,
) -> None:
    """A node that stops answering (blackholed or paused) is marked unhealthy
    once its probe times out, within probe_interval + probe_timeout; routing
    avoids it while the other node keeps serving within bounds; it is
    re-admitted once it answers again."""
    primary, replica = pg_primary_replica
    topo = make_topology({"p": via(proxies["p"]), "r": via(proxies["r"])}, driver=driver)
    await topo.open()
    assert topo.pool_for("replica").name == "r"
    name = "p" if victim == "primary" else "r"
    server = primary if victim == "primary" else replica

    with (
        caplog.at_level(logging.WARNING, logger="pgharbor.topology"),
        fault_on(kind, server, proxies[name]) as end,
    ):
        took = await wait_until(
            lambda: not node_state(topo, name)["healthy"], 5.0 * SCALE, "probe timed out"
        )
        print(f"\n{kind} {victim} ({driver}): unhealthy after {took:.3f} s")
        assert took <= PROBE_INTERVAL + PROBE_TIMEOUT + 0.5 * SCALE
        if victim == "replica":
            # Replica reads fall back to the primary; writes go on.
            routes: tuple[Route, ...] = ("replica", "any", "primary")
            for route in routes:
                pool = topo.pool_for(route)
                assert pool.name == "p"
                standby, elapsed = await in_recovery_via(pool)
                assert not standby and elapsed < 0.5 * SCALE
        else:
            # No primary: writes fail at once; reads go on at the replica.
            start = monotonic()
            with pytest.raises(NoAvailableServer, match="no reachable node reports primary"):
                topo.pool_for("primary")
            assert monotonic() - start < 0.05 * SCALE
            standby, elapsed = await in_recovery_via(topo.pool_for("replica"))
            assert standby and elapsed < 0.5 * SCALE
        end()
        back = await wait_until(
            lambda: node_state(topo, name)["healthy"] and not node_state(topo, name)["banned"],
            BAN_TIME + PROBE_INTERVAL + PROBE_TIMEOUT + 2.0 * SCALE,
            "re-admitted",
        )
        print(f"{kind} {victim} ({driver}): re-admitted {back:.3f} s after the fault ended")
    assert topo.pool_for("primary").name == "p"
    await wait_until(lambda: topo.pool_for("replica").name == "r", 1.0 * SCALE, "replica reads")
    standby, _ = await in_recovery_via(topo.pool_for("replica"))
    assert standby
    assert any("no answer to the role probe within 0.50 s" in r.message for r in caplog.records)


def tuned(**options: Any) -> AsyncDatabase:
    """A database with quick probes and short bans."""
    options.setdefault("probe_interval", PROBE_INTERVAL)
    options.setdefault("probe_timeout", PROBE_TIMEOUT)
    options.setdefault("ban_time", BAN_TIME)
    return AsyncDatabase(**options)


def test_database_takes_routing_options() -> None:
    """Database(primary=..., replicas=...) accepts the topology's routing options."""
    db = AsyncDatabase(
        primary="postgresql://app@db1/app",
        replicas=["postgresql://app@db2/app"],
        fallback_to_primary=False,
        probe_interval=0.2,
        ban_time=0.5,
    )
    assert db.topology is not None
    assert db.topology.router.fallback_to_primary is False
    assert db.topology.probe_interval == 0.2
    with pytest.raises(ConfigError, match="ban_time"):
        AsyncDatabase(
            primary="postgresql://app@db1/app", replicas=["postgresql://app@db2/app"], ban_time=-1
        )
    with pytest.raises(ConfigError, match=r"probe_interval.*replicas"):
        AsyncDatabase("postgresql://app@db1/app", probe_interval=0.2)


@pytest.mark.timing
async def test_all_replicas_down_reads_fall_back_or_fail_then_return(
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
    proxies: dict[str, ChaosProxy],
    app_name: str,
) -> None:
    """With every replica down, replica reads go to the primary by default,
    raise NoAvailableServer at once when fallback_to_primary is off, and go
    back to the replicas once they return."""
    primary, replica = pg_primary_replica
    # Two replicas as the client sees them: two routes to the one standby,
    # so stopping it takes every replica down.
    with ChaosProxy(replica.host, replica.port) as second:
        options: dict[str, Any] = {
            "primary": primary.url(),
            "replicas": [
                target_url(p.host, p.port, None, "postgres", None) for p in (proxies["r"], second)
            ],
            "application_name": app_name,
            "min_size": 1,
            "max_size": 2,
            "timeout": 1.0,
        }
        lenient = tuned(**options, name="lenient")
        strict = tuned(**options, name="strict", fallback_to_primary=False)
        async with lenient, strict:
            for db in (lenient, strict):
                assert await db.fetchval(IN_RECOVERY, route="replica") is True
            replica.stop("fast")
            try:
                # Reads keep succeeding meanwhile (a read in flight on a dying
                # session is resent: it is safe to).
                start = monotonic()
                while monotonic() - start < 1.0:
                    began = monotonic()
                    answer = await lenient.fetchval(IN_RECOVERY, route="replica", idempotent=True)
                    assert answer in (True, False)
                    assert monotonic() - began < 1.0 + 0.5 * SCALE
                    await asleep(0.02)
                assert await lenient.fetchval(IN_RECOVERY, route="replica") is False
                assert await lenient.fetchval(IN_RECOVERY, route="any") is False

                def strict_refuses() -> bool:
                    topo = strict.topology
                    assert topo is not None
                    return not any(n["healthy"] for n in topo.nodes() if n["name"] != "primary")

                await wait_until(strict_refuses, 2.0 * SCALE, "replicas seen down")
                began = monotonic()
                with pytest.raises(NoAvailableServer, match="fallback_to_primary is off"):
                    await strict.fetchval(IN_RECOVERY, route="replica")
                assert monotonic() - began < 0.05 * SCALE
                assert await strict.fetchval(IN_RECOVERY) is False  # writes and primary reads go on
            finally:
                replica.start()

            async def on_replica(db: AsyncDatabase) -> bool:
                try:
                    return bool(await db.fetchval(IN_RECOVERY, route="replica"))
                except NoAvailableServer:
                    return False

            for db in (lenient, strict):
                start = monotonic()
                while not await on_replica(db):
                    assert monotonic() - start < BAN_TIME + 2.0 * SCALE, f"{db.name}: no replica"
                    await asleep(0.05)
    assert settle_sessions((primary, replica), app_name) == {}


@pytest.mark.slow
@pytest.mark.timing
async def test_flapping_replica_banned_and_readmitted_reads_never_fail(
    pg_primary_replica: tuple[PostgresServer, PostgresServer],
    proxies: dict[str, ChaosProxy],
    app_name: str,
) -> None:
    """A replica whose network goes down and up every few hundred
    milliseconds is banned and re-admitted; reads never fail and never hang,
    the pools stay within bounds, and it serves again once it is stable."""
    primary, replica = pg_primary_replica
    db = tuned(
        primary=primary.url(),
        replicas=[target_url(proxies["r"].host, proxies["r"].port, None, "postgres", None)],
        application_name=app_name,
        min_size=1,
        max_size=3,
        timeout=1.0,
        name="flappy",
    )
    proxy = proxies["r"]
    served: dict[bool, int] = {True: 0, False: 0}
    readmitted = 0  # up phases in which the replica served again
    slowest = 0.0
    banned_seen = False

    async def read_for(seconds: float) -> int:
        """Replica reads for ``seconds``; how many the standby served."""
        nonlocal slowest
        on_standby = 0
        until = monotonic() + seconds
        while monotonic() < until:
            began = monotonic()
            standby = await db.fetchval(IN_RECOVERY, route="replica", idempotent=True)
            slowest = max(slowest, monotonic() - began)
            served[bool(standby)] += 1
            on_standby += bool(standby)
            await asleep(0.02)
        return on_standby

    async with db:
        topo = db.topology
        assert topo is not None
        for _ in range(5):
            proxy.refuse()
            proxy.reset_all()  # its sessions die with it
            await read_for(0.3)
            banned_seen |= node_state(topo, "replica1")["banned"]
            proxy.heal()
            # Up for longer than a ban plus a probe: back in rotation.
            readmitted += await read_for(BAN_TIME + PROBE_INTERVAL + 0.4) > 0
            assert node_state(topo, "replica1")["pool"]["size"] <= 3
        # Stable again: in rotation, never banned for good.
        took = await wait_until(
            lambda: topo.pool_for("replica").name == "flappy-replica1",
            BAN_TIME + PROBE_INTERVAL + PROBE_TIMEOUT + 2.0 * SCALE,
            "re-admitted",
        )
        assert await db.fetchval(IN_RECOVERY, route="replica") is True
    print(
        f"\nflapping: reads on standby={served[True]} on primary={served[False]} "
        f"slowest={slowest:.3f} s, back in rotation in {readmitted}/5 up phases"
    )
    assert banned_seen and served[False] > 0 and readmitted >= 3
    assert took < 1.0 * SCALE
    assert slowest < 1.0 + 0.5 * SCALE
    assert settle_sessions((primary, replica), app_name) == {}


@pytest.mark.replica
async def test_a_read_the_replica_cannot_serve_goes_to_the_primary(
    pg_primary_replica: tuple[PostgresServer, PostgresServer], app_name: str
) -> None:
    """A replica whose pool gives no connection within the timeout (nothing
    was sent there) is banned, and the read goes to the primary at once
    instead of failing."""
    primary, replica = pg_primary_replica
    async with tuned(
        primary=primary.url(),
        replicas=[replica.url()],
        application_name=app_name,
        min_size=1,
        max_size=1,
        timeout=0.3,
        name="busy",
    ) as db:
        async with db.connection(route="replica") as held:  # the replica's only connection
            assert held is not None
            started = monotonic()
            assert await db.fetchval("SELECT pg_is_in_recovery()", route="replica") is False
            assert monotonic() - started < 0.3 + 1.0 * SCALE
        assert db.topology is not None
        (node,) = [n for n in db.topology.nodes() if n["name"] == "replica1"]
        assert node["banned"]
