"""pgharbor.compat.psycopg_pool against real servers: psycopg_pool's
semantics on pgharbor's pool (source of the generated sync tests)."""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import Row, dict_row

import pgharbor
from pgharbor._acompat import ajoin, asleep, aspawn
from pgharbor.compat.psycopg_pool import (
    AsyncConnectionPool,
    AsyncNullConnectionPool,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
)
from pgharbor.errors import ConfigError
from pgharbor.testing import ChaosProxy, PostgresServer, TempDatabase

Factory = Callable[..., Any]


@pytest.fixture
def dsn(pg_database: TempDatabase, app_name: str) -> str:
    """A fresh database, the test's application_name (the leak guard counts it)."""
    return pg_database.conninfo(application_name=app_name)


@pytest.fixture
async def make(dsn: str) -> AsyncIterator[Factory]:
    """Build drop-in pools on ``dsn`` (opened explicitly); close them after."""
    pools: list[AsyncConnectionPool[Any]] = []

    def factory(cls: Any = AsyncConnectionPool, conninfo: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("open", False)
        pool = cls(dsn if conninfo is None else conninfo, **kwargs)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        await pool.close()


async def _one(conn: Any, sql: str, *params: Any) -> Any:
    cur = await conn.execute(sql, params or None)
    row = await cur.fetchone()
    return None if row is None else row[0]


async def test_connection_block_commits_or_rolls_back(make: Factory, dsn: str) -> None:
    """Connections use psycopg's default transactions: a connection() block
    commits when it ends normally and rolls back when it raises."""
    async with make(min_size=1) as pool:
        async with pool.connection() as conn:
            assert not conn.autocommit
            await conn.execute("CREATE TABLE t (x int)")
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ZeroDivisionError):
            async with pool.connection() as conn:
                await conn.execute("INSERT INTO t VALUES (2)")
                1 / 0  # noqa: B018
        async with await AsyncConnection.connect(dsn) as other:
            assert await _one(other, "SELECT array_agg(x) FROM t") == [1]
        async with pool.connection() as conn:
            assert conn.info.transaction_status == TransactionStatus.IDLE
        assert pool.get_stats()["pool_size"] == 1


async def test_a_transaction_left_open_is_rolled_back_with_a_warning(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """getconn/putconn: an open transaction is rolled back at putconn, with
    psycopg_pool's warning on its logger, and the connection is reused."""
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    async with make(min_size=1) as pool:
        conn = await pool.getconn()
        pid = conn.info.backend_pid
        await conn.execute("CREATE TABLE left_open ()")
        await pool.putconn(conn)
        async with pool.connection() as conn2:
            assert conn2.info.backend_pid == pid
            assert await _one(conn2, "SELECT to_regclass('left_open')::text") is None
    messages = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1 and "INTRANS" in messages[0]
    assert caplog.records[0].name == "psycopg.pool"


async def test_check_callback_replaces_a_broken_connection(
    make: Factory, dsn: str, pg_server: PostgresServer
) -> None:
    """check=check_connection runs at every getconn; a connection whose
    backend was terminated is replaced and counted as lost."""
    async with make(min_size=1, check=AsyncConnectionPool.check_connection) as pool:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
        pg_server.execute(f"SELECT pg_terminate_backend({pid})")
        async with pool.connection(timeout=5.0) as conn:
            assert conn.info.backend_pid != pid
            assert await _one(conn, "SELECT 1") == 1
        assert pool.get_stats()["connections_lost"] == 1


async def test_connection_class_and_kwargs_of_any_type(make: Factory) -> None:
    """connection_class (generic too) and kwargs with non-string values
    (row_factory, prepare_threshold, autocommit) reach psycopg's connect."""

    class MyConnection(AsyncConnection[Row]):
        pass

    kwargs = {"row_factory": dict_row, "prepare_threshold": 0, "autocommit": True}
    for cls in (MyConnection, MyConnection[dict[str, Any]]):
        pool = make(min_size=1, connection_class=cls, kwargs=kwargs)
        await pool.open()
        async with pool.connection() as conn:
            assert isinstance(conn, MyConnection)
            assert conn.autocommit and conn.prepare_threshold == 0
            cur = await conn.execute("SELECT 1 AS one")
            assert await cur.fetchone() == {"one": 1}


async def test_callables_for_conninfo_and_kwargs_are_asked_per_connection(
    make: Factory, dsn: str
) -> None:
    """A conninfo callable and a kwargs callable are called at every
    connection attempt (credential rotation)."""
    calls: list[str] = []

    async def conninfo() -> str:
        calls.append("conninfo")
        return dsn

    async def kwargs() -> dict[str, Any]:
        calls.append("kwargs")
        return {"options": f"-c search_path=s{len(calls)}"}

    async with make(conninfo=conninfo, kwargs=kwargs, min_size=2) as pool:
        await pool.wait(5.0)
        async with pool.connection() as a, pool.connection() as b:
            paths = {await _one(a, "SHOW search_path"), await _one(b, "SHOW search_path")}
        assert len(paths) == 2
    assert calls.count("conninfo") == calls.count("kwargs") == 2


async def test_configure_and_reset_callbacks(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """configure runs once per connection, reset at every return; what
    configure set (autocommit here) is what a borrower's changes go back to."""
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    seen = {"configure": 0, "reset": 0}

    async def configure(conn: Any) -> None:
        seen["configure"] += 1
        if True:  # ASYNC
            await conn.set_autocommit(True)
        else:
            conn.autocommit = True

    async def reset(conn: Any) -> None:
        seen["reset"] += 1
        async with conn.transaction():
            await conn.execute("RESET ALL")

    async with make(min_size=1, configure=configure, reset=reset) as pool:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
            await conn.execute("SET TIME ZONE '+02:00'")
            if True:  # ASYNC
                await conn.set_autocommit(False)
            else:
                conn.autocommit = False
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            assert conn.autocommit  # configure's, not the last borrower's
            assert await _one(conn, "SHOW TIME ZONE") != "+02:00"
    assert seen == {"configure": 1, "reset": 2}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_reset_that_leaves_a_transaction_replaces_the_connection(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """A reset callback that leaves a transaction open gets the connection
    closed and replaced, with psycopg_pool's warning naming the status."""
    caplog.set_level(logging.WARNING, logger="psycopg.pool")

    async def reset(conn: Any) -> None:
        await conn.execute("RESET ALL")  # not autocommit: a transaction is open

    async with make(min_size=1, reset=reset) as pool:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
        async with pool.connection(timeout=5.0) as conn:
            assert conn.info.backend_pid != pid
    assert any("INTRANS" in r.message for r in caplog.records)


async def test_a_configure_that_leaves_a_transaction_fails_the_connection(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """A configure callback that leaves a transaction open fails the attempt
    (the pool waits in vain), and the warning names the status."""

    async def configure(conn: Any) -> None:
        await conn.execute("SELECT 1")

    async with make(min_size=1, configure=configure) as pool:
        with pytest.raises(PoolTimeout):
            await pool.wait(timeout=0.5)
        assert pool.closed  # psycopg_pool closes a pool that is not ready in time
    assert any("INTRANS" in r.message for r in caplog.records)


async def test_a_missing_database_fails_at_once(make: Factory, pg_server: PostgresServer) -> None:
    """A connect failure that retrying cannot fix (no such database) makes
    wait() and getconn() raise PoolTimeout at once, the failure as its cause."""
    pool = make(conninfo=pg_server.conninfo(dbname="no_such_db_here"), min_size=1)
    await pool.open()
    start = monotonic()
    with pytest.raises(PoolTimeout) as info:
        await pool.getconn(timeout=20.0)
    assert isinstance(info.value.__cause__, pgharbor.ConnectionFailed)
    assert info.value.__cause__.reason == "database-missing"
    with pytest.raises(PoolTimeout):
        await pool.wait(timeout=20.0)
    assert monotonic() - start < 10.0


async def test_close_returns(make: Factory) -> None:
    """close_returns=True: conn.close() gives the connection back to the
    pool; it is closed for real when the pool closes."""
    async with make(min_size=1, close_returns=True) as pool:
        conn = await pool.getconn()
        pid = conn.info.backend_pid
        await conn.close()
        assert not conn.closed
        assert pool.get_stats()["pool_available"] == 1
        async with pool.connection() as conn2:
            assert conn2.info.backend_pid == pid
    assert conn.closed


async def test_client_side_attributes_go_back_to_the_pools(make: Factory) -> None:
    """Attributes a borrower changes (autocommit, isolation, read-only) are
    set back at return to those the pool's connections were made with."""
    async with make(min_size=1) as pool:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
            if True:  # ASYNC
                await conn.set_autocommit(True)
                await conn.set_read_only(True)
            else:
                conn.autocommit = True
                conn.read_only = True
        async with pool.connection() as conn:
            assert conn.info.backend_pid == pid
            assert not conn.autocommit and conn.read_only is None


async def test_errors_are_psycopg_and_pgharbor_errors(make: Factory) -> None:
    """PoolTimeout, TooManyRequests and PoolClosed are psycopg
    OperationalErrors and pgharbor's errors at once, with psycopg_pool's words."""
    pool = make(min_size=1, max_waiting=1, name="errs")
    with pytest.raises(PoolClosed, match="'errs' is not open yet"):
        await pool.getconn()
    await pool.open(wait=True)
    held = await pool.getconn()
    start = monotonic()
    with pytest.raises(PoolTimeout) as timeout:
        await pool.getconn(timeout=0.2)
    assert monotonic() - start < 5.0
    assert isinstance(timeout.value, psycopg.OperationalError)
    assert isinstance(timeout.value, pgharbor.PoolTimeout)
    assert isinstance(timeout.value, TimeoutError)

    async def waiter() -> None:
        conn = await pool.getconn(timeout=5.0)
        await pool.putconn(conn)

    task = aspawn(waiter, name="waiter", group=set())
    while pool.get_stats()["requests_waiting"] < 1:
        await asleep(0.005)
    with pytest.raises(TooManyRequests, match="'errs' has already 1 requests waiting") as many:
        await pool.getconn()
    assert isinstance(many.value, pgharbor.TooManyRequests)
    await pool.putconn(held)
    await ajoin(task, 5.0)
    with pytest.raises(ValueError, match="doesn't come from any pool"):
        await pool.putconn(held)
    await pool.close()
    with pytest.raises(PoolClosed, match="already closed") as closed:
        await pool.getconn()
    assert isinstance(closed.value, pgharbor.PoolClosed)
    with pytest.raises(PoolClosed, match="cannot be reused"):
        await pool.open()
    stats = pool.get_stats()
    # Every getconn is a request; only those that waited in vain are errors.
    assert stats["requests_num"] == 6 and stats["requests_errors"] == 2


async def test_stats_and_pop_stats(make: Factory) -> None:
    """get_stats has psycopg_pool's keys; pop_stats restarts the counters
    but not the measures."""
    async with make(min_size=2, max_size=3) as pool:
        await pool.wait(5.0)
        for _ in range(3):
            async with pool.connection():
                pass
        stats = pool.pop_stats()
        assert stats["requests_num"] == 3
        assert stats["connections_num"] == 2 and stats["connections_errors"] == 0
        assert stats["pool_min"] == 2 and stats["pool_max"] == 3
        assert stats["pool_size"] == 2 and stats["pool_available"] == 2
        assert stats["usage_ms"] >= 0 and stats["returns_bad"] == 0
        async with pool.connection() as conn:
            await conn.close()  # returned closed: counted, replaced
        after = pool.get_stats()
        assert after["requests_num"] == 1 and after["connections_num"] == 0
        assert after["returns_bad"] == 1 and after["connections_lost"] == 0
        assert after["pool_min"] == 2


async def test_reconnect_failed_on_time(
    make: Factory, chaos_proxy: ChaosProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """reconnect_failed(pool) is called reconnect_timeout after connecting
    started failing, not at the next attempt, with psycopg_pool's warning;
    the pool recovers after."""
    called: list[tuple[Any, float]] = []

    async def failed(pool: Any) -> None:
        called.append((pool, monotonic()))

    conninfo = (
        f"host={chaos_proxy.host} port={chaos_proxy.port} user=postgres dbname=postgres "
        "sslmode=disable"
    )
    pool = make(conninfo=conninfo, min_size=1, reconnect_timeout=1.0, reconnect_failed=failed)
    chaos_proxy.refuse()
    start = monotonic()
    await pool.open()
    while not called and monotonic() - start < 10.0:
        await asleep(0.02)
    assert called and called[0][0] is pool
    assert 0.9 <= called[0][1] - start <= 3.0
    assert [r for r in caplog.records if "reconnection attempt in pool" in r.message]
    chaos_proxy.heal()
    async with pool.connection(timeout=10.0) as conn:
        assert await _one(conn, "SELECT 1") == 1


async def test_reconnect_failed_again_for_a_caller_after_it(
    make: Factory, chaos_proxy: ChaosProxy
) -> None:
    """psycopg_pool's rule (its issue #370): once reconnect_failed was
    called, nothing more is said while nobody asks; a caller who then finds
    no connection starts a new reconnect_timeout, and reconnect_failed is
    called again at its end if connecting still fails."""
    called: list[float] = []

    async def failed(pool: Any) -> None:
        called.append(monotonic())

    conninfo = (
        f"host={chaos_proxy.host} port={chaos_proxy.port} user=postgres dbname=postgres "
        "sslmode=disable"
    )
    pool = make(conninfo=conninfo, min_size=2, reconnect_timeout=0.5, reconnect_failed=failed)
    chaos_proxy.refuse()
    await pool.open()
    start = monotonic()
    while not called and monotonic() - start < 5.0:
        await asleep(0.02)
    assert len(called) == 1
    await asleep(1.2)  # nobody asks: once per failing series
    assert len(called) == 1
    asked = monotonic()
    with pytest.raises(PoolTimeout):
        async with pool.connection(timeout=0.2):
            pass
    while len(called) < 2 and monotonic() - asked < 5.0:
        await asleep(0.02)
    assert len(called) == 2
    assert 0.4 <= called[1] - asked <= 2.0
    chaos_proxy.heal()
    async with pool.connection(timeout=10.0) as conn:
        assert await _one(conn, "SELECT 1") == 1


async def test_connections_are_lent_in_turn(make: Factory) -> None:
    """psycopg_pool lends the least recently returned connection first
    (FIFO): sequential borrowers use every connection in turn."""
    async with make(min_size=3) as pool:
        await pool.wait(5.0)
        pids = []
        for _ in range(6):
            async with pool.connection() as conn:
                pids.append(conn.info.backend_pid)
        assert len(set(pids)) == 3
        assert pids[:3] == pids[3:]


async def test_num_workers_connections_open_at_once(make: Factory) -> None:
    """``num_workers`` bounds how many connections open at the same time,
    as psycopg_pool's workers do (its ``wait`` then takes longer)."""
    for workers, most in ((1, 1), (2, 2)):
        active = peak = 0

        async def configure(conn: Any) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asleep(0.1)
            active -= 1

        async with make(min_size=4, num_workers=workers, configure=configure) as pool:
            start = monotonic()
            await pool.wait(5.0)
            took = monotonic() - start
        assert peak == most, (workers, peak)
        assert took >= 0.4 / workers - 0.05, (workers, took)
    async with make(min_size=4, num_workers=1, configure=configure) as pool:
        with pytest.raises(PoolTimeout):
            await pool.wait(0.25)


async def test_a_connection_found_dead_is_discarded_alone(make: Factory) -> None:
    """A backend terminated while idle is not lent (pgharbor's checkout
    check) and, as psycopg_pool does, its live siblings stay in the pool."""
    async with make(min_size=2) as pool:
        await pool.wait(5.0)
        async with pool.connection() as conn:
            pid1 = conn.info.backend_pid
            async with pool.connection() as conn2:
                pid2 = conn2.info.backend_pid
            await conn.execute("SELECT pg_terminate_backend(%s)", [pid2])
        await asleep(0.2)
        async with pool.connection() as conn, pool.connection() as conn2:
            await conn.execute("SELECT 1")
            await conn2.execute("SELECT 1")
            pids = {conn.info.backend_pid, conn2.info.backend_pid}
        assert pid1 in pids and pid2 not in pids


async def test_a_pool_dropped_unclosed_warns_nothing(make: Factory, dsn: str) -> None:
    """psycopg_pool says nothing of a pool dropped without close() (pgharbor's
    own pools raise a ResourceWarning); its connections are let go."""
    pool = AsyncConnectionPool(dsn, min_size=2, open=False)
    await pool.open()
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")
    await pool.wait(5.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        del pool, conn
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]


async def test_null_pool_counts_queued_requests_as_psycopg_pool(make: Factory) -> None:
    """A null pool's request queues only when max_size connections are busy
    (every request waits for its connection to open: that is not queueing)."""
    async with make(AsyncNullConnectionPool, max_size=2) as pool:
        await pool.wait(5.0)
        pool.pop_stats()

        async def worker() -> None:
            async with pool.connection(timeout=5.0) as conn:
                await conn.execute("SELECT pg_sleep(0.2)")

        group: set[Any] = set()
        tasks = [aspawn(worker, name=f"w{i}", group=group) for i in range(5)]
        for task in tasks:
            await ajoin(task, 10.0)
        stats = pool.get_stats()
        assert stats["requests_num"] == 5
        assert stats["requests_queued"] == 3
        pool.pop_stats()
        async with pool.connection():  # opened for it: no queue, no wait
            pass
        stats = pool.get_stats()
        assert stats["requests_queued"] == 0 and stats["requests_wait_ms"] == 0


async def test_null_pool(make: Factory, pg_server: PostgresServer, app_name: str) -> None:
    """A null pool keeps no idle connection: each getconn opens one, each
    return closes it, unless a client waits for it; min_size must be 0."""
    with pytest.raises(ValueError, match="min_size"):
        AsyncNullConnectionPool("", min_size=1)
    async with make(AsyncNullConnectionPool, max_size=1) as pool:
        await pool.wait(5.0)
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
        async with pool.connection() as conn:
            assert conn.info.backend_pid != pid
            pid = conn.info.backend_pid
            got: list[int] = []

            async def waiter() -> None:
                async with pool.connection() as other:
                    got.append(other.info.backend_pid)

            task = aspawn(waiter, name="waiter", group=set())
            while pool.get_stats()["requests_waiting"] < 1:
                await asleep(0.005)
        await ajoin(task, 5.0)
        assert got == [pid]  # handed over, not closed
        assert pool.get_stats()["pool_available"] == 0
        assert pool.pgharbor.stats()["size"] == 0
    assert not pg_server.backends(app_name)


async def test_resize_check_drain(make: Factory) -> None:
    """resize checks sizes as psycopg_pool does; check() replaces a broken
    idle connection; drain() replaces every connection."""
    async with make(min_size=2) as pool:
        await pool.wait(5.0)
        with pytest.raises(ValueError):
            await pool.resize(3, 1)
        await pool.resize(3)
        assert (pool.min_size, pool.max_size) == (3, 3)
        await pool.wait(5.0)
        conns = [await pool.getconn() for _ in range(3)]
        pids = {c.info.backend_pid for c in conns}
        await conns[0].close()
        for conn in conns:
            await pool.putconn(conn)
        await pool.check()
        await pool.wait(5.0)
        await pool.drain()
        await pool.wait(5.0)
        async with pool.connection() as conn:
            assert conn.info.backend_pid not in pids


async def test_pgharbor_settings(make: Factory) -> None:
    """pgharbor={...} reaches the pgharbor pool (breaker, leak detection...);
    an unknown key, or a bad size, fails at construction."""
    pool = make(min_size=1, pgharbor={"breaker": True, "leak_threshold": 60.0, "keepalive": 30})
    assert pool.pgharbor.options.leak_threshold == 60.0
    assert pool.pgharbor.options.keepalive == 30
    assert "breaker_open" in pool.pgharbor.stats()
    with pytest.raises(ConfigError, match="pgharbor"):
        AsyncConnectionPool("", open=False, pgharbor={"min_size": 3})
    with pytest.raises(ValueError):
        AsyncConnectionPool("", open=False, min_size=4, max_size=2)
    with pytest.raises(ConfigError, match="aplication_name"):
        AsyncConnectionPool("", open=False, kwargs={"aplication_name": "x"})
