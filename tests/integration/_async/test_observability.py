"""Hooks, health, alerts and statement counters against real servers (source of
the generated sync tests)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pgharbor import Alerts, Event, HealthThresholds
from pgharbor._acompat import ajoin, asleep, aspawn
from pgharbor._async.database import AsyncDatabase
from pgharbor._async.manager import AsyncDatabaseManager
from pgharbor._async.pool import AsyncPool
from pgharbor._policy.backoff import Backoff
from pgharbor._policy.breaker import BreakerOptions
from pgharbor.errors import ConfigError, PoolTimeout
from pgharbor.testing import ChaosProxy, PostgresServer, TempDatabase

from .helpers import DRIVERS, query, wait_until

PoolFactory = Callable[..., AsyncPool]


@pytest.fixture
async def make_pool(pg_server: PostgresServer, app_name: str) -> AsyncIterator[PoolFactory]:
    """Pools tagged with the test's application_name, closed afterwards."""
    pools: list[AsyncPool] = []

    def factory(conninfo: str | None = None, **kwargs: Any) -> AsyncPool:
        kwargs.setdefault("min_size", 1)
        kwargs.setdefault("name", f"obs{len(pools)}")
        pool = AsyncPool(
            conninfo if conninfo is not None else pg_server.conninfo(),
            kwargs={"application_name": app_name},
            **kwargs,
        )
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        await pool.close()


def via(proxy: ChaosProxy) -> str:
    """A conninfo through the fault proxy."""
    return f"host={proxy.host} port={proxy.port} user=postgres dbname=postgres sslmode=disable"


@pytest.mark.parametrize("driver", DRIVERS)
async def test_hooks_see_the_lifecycle_with_removal_reasons(
    make_pool: PoolFactory, driver: str
) -> None:
    """connect, acquire, release and remove (drained, closed) reach hooks with
    the connection and the times."""
    events: list[Event] = []
    pool = make_pool(driver=driver, min_size=1, max_size=2)
    for name in ("connect", "acquire", "release", "remove"):
        pool.on(name, events.append)
    await pool.open()
    async with pool.connection() as conn:
        await query(conn, "SELECT 1")
    await pool.drain()
    await wait_until(
        lambda: [e.reason for e in events if e.name == "remove"] == ["drained"], 5.0, "condition"
    )
    await wait_until(lambda: pool.stats()["size"] == 1, 5.0, "condition")
    await pool.close()

    names = [e.name for e in events]
    assert names[:3] == ["connect", "acquire", "release"]
    acquire, release = events[1], events[2]
    assert acquire.conn is conn and release.conn is conn and acquire.pool == pool.name
    assert acquire.seconds is not None and 0 <= acquire.seconds < 1
    assert release.seconds is not None and release.seconds > 0
    assert events[0].seconds is not None and events[0].seconds > 0  # time to connect
    removes = [e.reason for e in events if e.name == "remove"]
    assert removes == ["drained", "closed"]
    assert names.count("connect") == 2


async def test_a_dead_connection_is_removed_as_lost(
    make_pool: PoolFactory, pg_server: PostgresServer, app_name: str
) -> None:
    """After a backend is terminated the failed check emits error and remove(lost)."""
    events: list[Event] = []
    pool = make_pool(check_window=0.0)
    pool.on("remove", events.append)
    pool.on("error", events.append)
    await pool.open()
    pg_server.terminate_backends(app_name)
    async with pool.connection() as conn:
        await query(conn, "SELECT 1")
    assert [(e.name, e.reason) for e in events] == [("error", "check"), ("remove", "lost")]
    report = pool.health()
    assert report.kinds["check"].failures == 1
    assert any("check" in e for e in report.recent_errors)


async def test_timeouts_are_reported_and_waits_have_percentiles(make_pool: PoolFactory) -> None:
    """A timed-out acquire emits a timeout event; served waits feed p50/p99."""
    timeouts: list[Event] = []
    pool = make_pool(min_size=1, max_size=1)
    pool.on("timeout", timeouts.append)
    await pool.open()
    conn = await pool.acquire()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=0.1)
    assert len(timeouts) == 1 and timeouts[0].seconds == pytest.approx(0.1)

    async def later() -> None:
        await asleep(0.1)
        await pool.release(conn)

    task = aspawn(later, name="release-later", group=set())
    async with pool.connection():
        pass
    await ajoin(task, 5.0)
    stats = pool.stats()
    assert stats["timeouts"] == 1
    assert stats["wait_p99_ms"] >= 50.0  # the served waiter waited ~100 ms
    assert stats["wait_p50_ms"] <= stats["wait_p99_ms"]


async def test_health_is_good_for_a_working_pool(make_pool: PoolFactory) -> None:
    """A pool that connects and checks fine is healthy, with its numbers."""
    pool = make_pool(min_size=2, max_size=3, check_window=0.0)
    await pool.open()
    async with pool.connection() as conn:  # checked first: check_window=0
        await query(conn, "SELECT 1")
    report = pool.health()
    assert report.healthy and report.reasons == ()
    assert report.kinds["connect"].attempts == 2 and report.kinds["check"].attempts == 1
    assert report.success_rate == 1.0 and report.max_ms > 0
    assert (report.total, report.in_use, report.waiting, report.failed) == (2, 0, 0, 0)
    assert report.mean_connect_ms is not None and report.mean_connect_ms > 0
    assert report.last_check_ago is not None and report.last_check_ago < 5
    assert report.to_dict()["kinds"]["connect"]["attempts"] == 2


async def test_health_turns_bad_when_the_server_is_unreachable(
    make_pool: PoolFactory, chaos_proxy: ChaosProxy
) -> None:
    """Refused connections make the pool unhealthy, with masked recent errors."""
    chaos_proxy.refuse()
    secret = "Hunter2-secret"
    pool = make_pool(
        via(chaos_proxy) + f" password={secret}",
        backoff=Backoff(initial=0.05, max_delay=0.1),
        health=HealthThresholds(min_success_rate=0.5),
    )
    await pool.open(wait=False)
    await wait_until(lambda: pool.stats()["connections_failed"] >= 2, 5.0, "condition")
    report = pool.health()
    assert not report.healthy
    assert report.kinds["connect"].success_rate == 0.0
    assert "no open connection and the last attempt failed" in report.reasons
    assert report.recent_errors and secret not in repr(report)

    chaos_proxy.heal()
    await wait_until(lambda: pool.stats()["size"] >= 1, 5.0, "condition")
    assert "no open connection and the last attempt failed" not in pool.health().reasons


async def test_breaker_changes_are_events(make_pool: PoolFactory, chaos_proxy: ChaosProxy) -> None:
    """The breaker opens, probes (half-open) and closes: each change is an event."""
    states: list[str | None] = []
    chaos_proxy.refuse()
    pool = make_pool(
        via(chaos_proxy),
        backoff=Backoff(initial=0.02, max_delay=0.05),
        breaker=BreakerOptions(failure_threshold=2, reset_timeout=0.3),
    )
    pool.on("breaker_change", lambda e: states.append(e.state))
    await pool.open(wait=False)
    await wait_until(lambda: "open" in states, 5.0, "condition")
    chaos_proxy.heal()
    await wait_until(lambda: states[-1:] == ["closed"], 5.0, "condition")
    # In order: opened, then a half-open probe, then closed by its success.
    assert states[0] == "open"
    probe = states.index("half-open")
    assert "closed" in states[probe:]


async def test_alerts_log_once_per_crossing(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting and no-idle alerts warn once when they start and note when they clear."""
    alerts: list[tuple[str | None, str | None]] = []
    pool = make_pool(min_size=1, max_size=1, alerts=Alerts(waiting=1, no_idle=True))
    pool.on("alert", lambda e: alerts.append((e.reason, e.state)))
    await pool.open()
    with caplog.at_level(logging.INFO, logger="pgharbor.pool"):
        conn = await pool.acquire()
        for _ in range(3):
            with pytest.raises(PoolTimeout):
                await pool.acquire(timeout=0.05)
        await wait_until(lambda: ("no_idle", "raised") in alerts, 3.0, "alert")
        await pool.release(conn)
        await wait_until(lambda: ("no_idle", "cleared") in alerts, 3.0, "alert")
        await wait_until(lambda: ("waiting", "cleared") in alerts, 3.0, "alert")
    raised = [r.getMessage() for r in caplog.records if "raised" in r.getMessage()]
    assert sum("alert waiting raised" in m for m in raised) == 1
    assert sum("alert no_idle raised" in m for m in raised) == 1
    assert alerts.count(("waiting", "raised")) == 1


async def test_hooks_are_validated_and_never_break_the_pool(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown events are refused; a raising hook is logged, the pool goes on."""
    pool = make_pool()
    with pytest.raises(ConfigError, match="event"):
        pool.on("checkout", print)

    def boom(event: Event) -> None:
        raise RuntimeError("hook failed")

    remove = pool.on("acquire", boom)
    await pool.open()
    with caplog.at_level(logging.ERROR, logger="pgharbor.pool"):
        async with pool.connection() as conn:
            await query(conn, "SELECT 1")
    assert any("hook" in r.getMessage() for r in caplog.records)
    remove()
    caplog.clear()
    async with pool.connection():
        pass
    assert not caplog.records


async def test_database_counts_statements_and_logs_slow_ones(
    pg_database: TempDatabase, app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Statements feed stats(), query events and the health window; slow ones are
    logged with duration, rows and the statement, parameters only on request."""
    queries: list[Event] = []
    async with AsyncDatabase(
        pg_database.conninfo(),
        name="obsdb",
        min_size=1,
        slow_query=0.05,
        application_name=app_name,
    ) as db:
        db.on("query", queries.append)
        with caplog.at_level(logging.WARNING, logger="pgharbor.query"):
            assert await db.fetchval("SELECT 1") == 1
            await db.fetch("SELECT pg_sleep(0.1), %s::text AS secret_value", ("s3cr3t",))
            with pytest.raises(Exception, match="division by zero"):
                await db.fetchval("SELECT 1/0")
            async with db.transaction() as tx:
                await tx.execute("SELECT pg_sleep(0.06)")
        stats = db.stats()
        assert stats["queries"] == 4 and stats["queries_failed"] == 1
        assert stats["queries_slow"] == 2 and stats["query_ms"] >= 160
        assert len(queries) == 4 and queries[2].error is not None
        slow = [r.getMessage() for r in caplog.records]
        assert len(slow) == 2
        assert "slow query" in slow[0] and "1 row" in slow[0] and "pg_sleep(0.1)" in slow[0]
        assert "s3cr3t" not in slow[0]
        health = db.health()
        assert health.healthy and health.queries["queries"] == 4
        (endpoint,) = health.endpoints
        # A division by zero is the statement's fault, not the server's.
        assert endpoint.kinds["query"].attempts == 4 and endpoint.kinds["query"].failures == 0

    async with AsyncDatabase(
        pg_database.conninfo(),
        min_size=1,
        slow_query=0.0,
        log_parameters=True,
        application_name=app_name,
    ) as db:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pgharbor.query"):
            await db.fetchval("SELECT %s::text", ("visible-param",))
        assert "visible-param" in caplog.records[0].getMessage()


async def test_manager_health_covers_every_database(
    pg_server: PostgresServer, app_name: str
) -> None:
    """manager.health() has one report per database; on() reaches every pool."""
    seen: set[str] = set()
    async with AsyncDatabaseManager(
        {"source": pg_server.conninfo(), "target": pg_server.conninfo()},
        min_size=1,
        application_name=app_name,
    ) as mgr:
        mgr.on("acquire", lambda e: seen.add(e.pool))
        await mgr["source"].fetchval("SELECT 1")
        await mgr["target"].fetchval("SELECT 1")
        health = mgr.health()
    assert set(health) == {"source", "target"}
    assert all(h.healthy for h in health.values())
    assert seen == {"source", "target"}
    assert health["source"].to_dict()["endpoints"][0]["kinds"]["query"]["attempts"] == 1


@pytest.mark.replica
async def test_roles_are_events_and_in_health(
    pg_primary_replica: tuple[PostgresServer, PostgresServer], app_name: str
) -> None:
    """The topology's probe tells each node's pool its role: role_change
    events, HealthReport.role, and one report per endpoint in db.health()."""
    primary, replica = pg_primary_replica
    roles: dict[str, str | None] = {}
    db = AsyncDatabase(
        primary=primary.url(),
        replicas=[replica.url()],
        name="roles",
        min_size=1,
        probe_interval=0.2,
        application_name=app_name,
    )
    db.on("role_change", lambda e: roles.__setitem__(e.pool, e.state))
    async with db:
        await wait_until(lambda: len(roles) == 2, 5.0, "condition")
        health = db.health()
    assert roles == {"roles-primary": "primary", "roles-replica1": "replica"}
    assert {e.name: e.role for e in health.endpoints} == roles
    assert health.healthy
