"""AsyncPool against real PostgreSQL servers, for every async driver (source of
the generated sync tests, which run `Pool` over every sync driver)."""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Any

import pytest

from pgharbor._acompat import ajoin, asleep, aspawn
from pgharbor._async.pool import AsyncPool
from pgharbor._policy.backoff import Backoff
from pgharbor._policy.breaker import BreakerOptions
from pgharbor.errors import (
    CircuitOpen,
    ConfigError,
    ConnectionFailed,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
    UnsupportedServerVersion,
)
from pgharbor.testing import ChaosProxy, PostgresServer

from .helpers import backend_pid, query, wait_until

# Seconds of timing slack on a small shared machine; CI may scale it.
SLACK = 0.5 * float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))

PoolFactory = Callable[..., Any]


@pytest.fixture
async def make_pool(
    pg_server: PostgresServer, app_name: str, driver: str
) -> AsyncIterator[PoolFactory]:
    """Build pools tagged with the test's application_name; close them after."""
    pools: list[AsyncPool] = []

    def factory(conninfo: Any = None, **kwargs: Any) -> AsyncPool:
        kwargs.setdefault("min_size", 2)
        kwargs.setdefault("name", f"t{len(pools)}")
        kw = {"application_name": app_name, **kwargs.pop("kwargs", {})}
        pool = AsyncPool(
            conninfo if conninfo is not None else pg_server.conninfo(),
            driver=driver,
            kwargs=kw,
            **kwargs,
        )
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        # The bookkeeping invariant, on public numbers only.
        stats = pool.stats()
        assert stats["size"] + stats["connecting"] <= stats["max_size"] or stats["size"] == 0
        assert stats["idle"] + stats["in_use"] <= stats["size"]
        await pool.close()


def proxied(proxy: ChaosProxy) -> str:
    return f"host={proxy.host} port={proxy.port} user=postgres dbname=postgres sslmode=disable"


async def test_open_fills_min_size_and_close_leaves_nothing(
    make_pool: PoolFactory, pg_server: PostgresServer, app_name: str
) -> None:
    """open() waits for min_size connections; close() ends every backend."""
    pool = make_pool(min_size=3, max_size=4, name="main")
    await pool.open()
    stats = pool.stats()
    assert (stats["size"], stats["idle"], stats["in_use"]) == (3, 3, 0)
    assert repr(pool) == f"<{type(pool).__name__} 'main' open size=3/4 idle=3 waiting=0>"
    assert len(pg_server.backends(application_name=app_name)) == 3
    await pool.close()
    assert "closed" in repr(pool)
    for _ in range(50):
        if not pg_server.backends(application_name=app_name):
            break
        await asleep(0.02)
    assert pg_server.backends(application_name=app_name) == []


async def test_a_pool_dropped_without_close_warns_and_lets_go(
    pg_server: PostgresServer, app_name: str, driver: str
) -> None:
    """An open pool its owner drops without close() says so when collected
    (a ResourceWarning naming it), closes its idle connections without I/O,
    and its maintenance loop ends: nothing keeps the pool alive, and no
    session, task or thread is left behind (the leak guard checks the last two)."""
    pool = AsyncPool(
        pg_server.conninfo(),
        driver=driver,
        min_size=2,
        name="dropped",
        kwargs={"application_name": app_name},
    )
    await pool.open()
    async with pool.connection() as conn:
        await query(conn, "SELECT 1")
    assert len(pg_server.backends(application_name=app_name)) == 2
    with pytest.warns(ResourceWarning, match="pool 'dropped' was never closed"):
        del pool, conn
        gc.collect()
    await wait_until(
        lambda: not pg_server.backends(application_name=app_name), 5.0, "sessions ended"
    )
    await wait_until(
        lambda: not any("dropped" in t.name for t in threading.enumerate()),
        5.0,
        "maintenance thread ended",
    )


async def test_connection_is_native_and_autocommit(make_pool: PoolFactory, driver: str) -> None:
    """The caller gets the driver's own connection, in autocommit mode."""
    pool = make_pool(min_size=1)
    await pool.open()
    async with pool.connection() as conn:
        assert type(conn).__module__.split(".")[0] == driver
        await query(conn, "CREATE TEMP TABLE t (x int)")
        await query(conn, "INSERT INTO t VALUES (1)")
    async with pool.connection() as conn:
        # Same connection (LIFO): the temp table survived, nothing to roll back.
        assert await query(conn, "SELECT count(*) FROM t") == [(1,)]


async def test_open_transaction_is_rolled_back_on_return(make_pool: PoolFactory) -> None:
    """A connection returned inside a transaction is rolled back and kept."""
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    async with pool.connection() as conn:
        pid = await backend_pid(conn)
        await query(conn, "CREATE TEMP TABLE t (x int)")
        await query(conn, "BEGIN")
        await query(conn, "INSERT INTO t VALUES (1)")
    async with pool.connection() as conn:
        assert await backend_pid(conn) == pid
        assert await query(conn, "SELECT count(*) FROM t") == [(0,)]
    async with pool.connection() as conn:
        await query(conn, "BEGIN")
        with pytest.raises(Exception):  # noqa: B017 - each driver has its own class
            await query(conn, "SELECT 1/0")
    async with pool.connection() as conn:
        assert await backend_pid(conn) == pid
        assert await query(conn, "SELECT 1") == [(1,)]
    assert pool.stats()["connections_lost"] == 0


async def test_broken_connection_is_discarded_and_replaced(
    make_pool: PoolFactory, pg_server: PostgresServer
) -> None:
    """A connection killed while in use is discarded; the pool refills."""
    pool = make_pool(min_size=2, max_size=2)
    await pool.open()
    with pytest.raises(Exception):  # noqa: B017 - driver-specific disconnect error
        async with pool.connection() as conn:
            pid = await backend_pid(conn)
            pg_server.execute(f"SELECT pg_terminate_backend({pid})")
            await asleep(0.05)
            await query(conn, "SELECT 1")
    assert pool.stats()["connections_lost"] == 1
    await pool.wait(timeout=5)
    for _ in range(3):
        async with pool.connection() as conn:
            assert await backend_pid(conn) != pid


async def test_restart_costs_at_most_one_failed_check(
    make_pool: PoolFactory, pg_server: PostgresServer
) -> None:
    """After a server restart, acquiring pays one failed check at most (the
    checkout check usually sees the dead connections with no round trip), and
    no sleep."""
    pool = make_pool(min_size=4, max_size=4, check_window=0.0)
    await pool.open()
    pg_server.restart()
    start = monotonic()
    async with pool.connection() as conn:
        assert await query(conn, "SELECT 1") == [(1,)]
    elapsed = monotonic() - start
    stats = pool.stats()
    assert stats["checks_failed"] <= 1
    assert stats["connections_lost"] == 4
    assert elapsed < 1.0 + SLACK


@pytest.mark.timing
async def test_acquire_timeout_is_a_contract(make_pool: PoolFactory) -> None:
    """With the pool exhausted, acquire raises PoolTimeout in [T, T+ε], naming the pool."""
    pool = make_pool(min_size=1, max_size=1, name="tiny")
    await pool.open()
    held = await pool.acquire()
    try:
        start = monotonic()
        with pytest.raises(PoolTimeout) as info:
            await pool.acquire(timeout=0.5)
        elapsed = monotonic() - start
        assert 0.5 <= elapsed <= 0.5 + SLACK
        message = str(info.value)
        assert "'tiny'" in message and "size=1" in message and "waiting=0" in message
        assert pool.stats()["timeouts"] == 1
    finally:
        await pool.release(held)


@pytest.mark.timing
async def test_hung_server_times_out(make_pool: PoolFactory, pg_server: PostgresServer) -> None:
    """A hung server (SIGSTOP): acquire still raises PoolTimeout on time."""
    pool = make_pool(min_size=0, max_size=1, connect_timeout=2.0)
    await pool.open()
    pg_server.pause()
    try:
        start = monotonic()
        with pytest.raises(PoolTimeout):
            await pool.acquire(timeout=1.0)
        assert 1.0 <= monotonic() - start <= 1.0 + SLACK
    finally:
        pg_server.resume()


@pytest.mark.timing
@pytest.mark.parametrize("fault", ["refuse", "blackhole"])
async def test_unreachable_server_times_out_with_cause(
    make_pool: PoolFactory, chaos_proxy: ChaosProxy, fault: str
) -> None:
    """Refused or blackholed: acquire still answers at T, citing the connect error."""
    getattr(chaos_proxy, fault)()
    secret = "S3cr3t-unique-pw"
    pool = make_pool(
        proxied(chaos_proxy) + f" password={secret}",
        min_size=1,
        connect_timeout=2.0,
    )
    await pool.open(wait=False)
    start = monotonic()
    with pytest.raises(PoolTimeout) as info:
        await pool.acquire(timeout=1.0)
    elapsed = monotonic() - start
    assert 1.0 <= elapsed <= 1.0 + SLACK
    if fault == "refuse":
        assert "last connect error" in str(info.value)
        assert info.value.__cause__ is not None
    text = str(info.value) + repr(info.value.__cause__) + str(info.value.__cause__)
    assert secret not in text
    chaos_proxy.heal()


async def test_missing_database_fails_fast(
    make_pool: PoolFactory, pg_server: PostgresServer
) -> None:
    """A connect error that retrying cannot fix (3D000) ends open() and queued
    acquires at once, classified, instead of after the whole timeout; a pool
    that failed to open is closed."""
    pool = make_pool(pg_server.conninfo(dbname="no_such_db_here"), min_size=1)
    start = monotonic()
    with pytest.raises(ConnectionFailed) as info:
        await pool.open(timeout=20.0)
    assert info.value.reason == "database-missing"
    assert monotonic() - start < 2.0 + SLACK
    with pytest.raises(PoolClosed):
        await pool.acquire(timeout=20.0)
    background = make_pool(pg_server.conninfo(dbname="no_such_db_here"), min_size=1)
    await background.open(wait=False)
    start = monotonic()
    with pytest.raises(ConnectionFailed):
        await background.acquire(timeout=20.0)
    assert monotonic() - start < 2.0 + SLACK


async def test_old_server_is_refused(make_pool: PoolFactory, pg_server: PostgresServer) -> None:
    """minimum_version above the server's refuses it with UnsupportedServerVersion."""
    pool = make_pool(min_size=1, minimum_version=pg_server.version.major + 1)
    with pytest.raises(UnsupportedServerVersion, match="older than the minimum supported"):
        await pool.open(timeout=10.0)


async def test_pool_recovers_after_outage(make_pool: PoolFactory, chaos_proxy: ChaosProxy) -> None:
    """Connections refused for a while: once healed, the pool refills to min_size."""
    chaos_proxy.refuse()
    pool = make_pool(proxied(chaos_proxy), min_size=2)
    await pool.open(wait=False)
    await asleep(0.5)
    assert pool.stats()["connections_failed"] >= 1
    chaos_proxy.heal()
    start = monotonic()
    await pool.wait(timeout=5.0)
    assert monotonic() - start < 2.0 + SLACK
    async with pool.connection() as conn:
        assert await query(conn, "SELECT 1") == [(1,)]


async def test_reconnect_failed_is_called_and_attempts_continue(
    make_pool: PoolFactory, chaos_proxy: ChaosProxy
) -> None:
    """After reconnect_timeout the callback runs once; attempts go on, and recover."""
    chaos_proxy.refuse()
    called: list[Any] = []
    pool = make_pool(
        proxied(chaos_proxy), min_size=1, reconnect_timeout=0.3, reconnect_failed=called.append
    )
    await pool.open(wait=False)
    deadline = monotonic() + 5.0
    while not called and monotonic() < deadline:
        await asleep(0.05)
    assert called == [pool]
    chaos_proxy.heal()
    await pool.wait(timeout=5.0)
    assert pool.stats()["size"] == 1


async def test_idle_connections_get_keepalive_pings(
    make_pool: PoolFactory, pg_server: PostgresServer, app_name: str
) -> None:
    """Idle connections are pinged in the background; dead ones are replaced."""
    pool = make_pool(min_size=2, max_size=2, keepalive=0.2)
    await pool.open()
    pg_server.terminate_backends(application_name=app_name)
    deadline = monotonic() + 5.0
    while pool.stats()["connections_lost"] < 2 and monotonic() < deadline:
        await asleep(0.05)
    assert pool.stats()["connections_lost"] == 2
    await pool.wait(timeout=5.0)
    async with pool.connection() as conn:
        assert await query(conn, "SELECT 1") == [(1,)]


@pytest.mark.timing
async def test_circuit_breaker_fails_fast_and_probes_once(
    make_pool: PoolFactory, chaos_proxy: ChaosProxy
) -> None:
    """Open breaker: no TCP attempt while nobody asks (counted at the proxy);
    a caller gets CircuitOpen in milliseconds and brings the probe forward
    (one attempt, 0.25 s after the last); healed, it closes."""
    chaos_proxy.close_after(0)  # accept, then hang up: each attempt fails fast
    pool = make_pool(
        proxied(chaos_proxy),
        min_size=1,
        breaker=BreakerOptions(failure_threshold=2, reset_timeout=2.0),
        backoff=Backoff(initial=0.05, jitter=0.0),
    )
    await pool.open(wait=False)
    deadline = monotonic() + 5.0
    while not pool.stats()["breaker_open"] and monotonic() < deadline:
        await asleep(0.01)
    assert pool.stats()["breaker_open"] == 1
    opened = chaos_proxy.connections_opened
    await asleep(0.6)
    assert chaos_proxy.connections_opened == opened  # nothing tried while nobody asks
    start = monotonic()
    with pytest.raises(CircuitOpen) as info:
        await pool.acquire(timeout=10.0)
    assert monotonic() - start < 0.05
    assert 0 <= info.value.retry_after <= 0.25
    await asleep(0.6)  # one probe, brought forward by the caller; it fails again
    assert chaos_proxy.connections_opened == opened + 1
    chaos_proxy.heal()
    await pool.wait(timeout=5.0)
    assert pool.stats()["breaker_open"] == 0
    async with pool.connection() as conn:
        assert await query(conn, "SELECT 1") == [(1,)]


async def test_release_without_keep_hands_over_or_closes(
    make_pool: PoolFactory, pg_server: PostgresServer, app_name: str
) -> None:
    """release(keep=False) gives the connection to a waiting caller if there
    is one, else closes it before returning; the pool refills min_size."""
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    held = await pool.acquire()
    pid = await backend_pid(held)
    got: list[Any] = []

    async def waiter() -> None:
        got.append(await pool.acquire(timeout=5.0))

    task = aspawn(waiter, name="waiter", group=set())
    while pool.stats()["waiting"] < 1:
        await asleep(0.005)
    await pool.release(held, keep=False)
    await ajoin(task, 5.0)
    assert len(got) == 1 and got[0] is held and await backend_pid(held) == pid
    await pool.release(held, keep=False)
    assert pool.stats()["size"] == 0 or pid not in pg_server.backends(app_name)
    await wait_until(lambda: pid not in pg_server.backends(app_name), 5.0, "backend gone")
    assert pool.stats()["connections_expired"] == 1
    assert pool.stats()["connections_lost"] == 0
    await pool.wait(timeout=5.0)  # min_size is refilled with a new connection
    async with pool.connection() as conn:
        assert await backend_pid(conn) != pid


async def test_max_waiting_rejects_at_once(make_pool: PoolFactory) -> None:
    """Beyond max_waiting queued callers, acquire fails with TooManyRequests at once."""
    pool = make_pool(min_size=1, max_size=1, max_waiting=1)
    await pool.open()
    held = await pool.acquire()
    got: list[Any] = []

    async def waiter() -> None:
        try:
            got.append(await pool.acquire(timeout=5.0))
        except Exception as exc:
            got.append(exc)

    task = aspawn(waiter, name="waiter", group=set())
    while pool.stats()["waiting"] < 1:
        await asleep(0.005)
    start = monotonic()
    with pytest.raises(TooManyRequests, match="max_waiting=1"):
        await pool.acquire(timeout=5.0)
    assert monotonic() - start < 0.1
    await pool.release(held)
    await ajoin(task, 5.0)
    assert len(got) == 1 and not isinstance(got[0], Exception)
    await pool.release(got[0])
    assert pool.stats()["rejected"] == 1


async def test_waiters_are_served_in_order(make_pool: PoolFactory) -> None:
    """Queued callers get connections first come, first served."""
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    held = await pool.acquire()
    order: list[int] = []
    group: set[Any] = set()

    async def waiter(i: int) -> None:
        async with pool.connection():
            order.append(i)

    tasks = []
    for i in range(4):
        tasks.append(aspawn(waiter, i, name=f"w{i}", group=group))
        while pool.stats()["waiting"] < i + 1:
            await asleep(0.005)
    await pool.release(held)
    for task in tasks:
        await ajoin(task, 5.0)
    assert order == [0, 1, 2, 3]


async def test_max_lifetime_replaces_connections(make_pool: PoolFactory) -> None:
    """Connections older than max_lifetime are replaced, never while in use."""
    pool = make_pool(min_size=1, max_size=1, max_lifetime=0.3)
    await pool.open()
    async with pool.connection() as conn:
        first = await backend_pid(conn)
        await asleep(0.4)  # expires while in use: still usable
        assert await query(conn, "SELECT 1") == [(1,)]
    async with pool.connection() as conn:
        assert await backend_pid(conn) != first
    assert pool.stats()["connections_expired"] >= 1


async def test_max_uses_retires_connection(make_pool: PoolFactory) -> None:
    """A connection is replaced after max_uses checkouts."""
    pool = make_pool(min_size=1, max_size=1, max_uses=2)
    await pool.open()
    pids = []
    for _ in range(3):
        async with pool.connection() as conn:
            pids.append(await backend_pid(conn))
    assert pids[0] == pids[1] != pids[2]


async def test_leak_is_reported_with_the_holders_stack(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection held past leak_threshold is logged with where its holder is."""
    pool = make_pool(min_size=1, max_size=1, leak_threshold=0.2)
    await pool.open()
    with caplog.at_level(logging.WARNING, logger="pgharbor.pool"):
        async with pool.connection():
            await asleep(0.6)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "held for more than" in m and "test_leak_is_reported_with_the_holders_stack" in m
        for m in messages
    ), messages
    assert any("returned after" in m for m in messages)
    assert pool.stats()["leaks"] == 1


async def test_close_fails_waiters_at_once(make_pool: PoolFactory) -> None:
    """Waiters get PoolClosed as soon as the pool closes; held connections close
    when returned."""
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    held = await pool.acquire()
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await pool.acquire(timeout=10.0)
        except Exception as exc:
            errors.append(exc)

    task = aspawn(waiter, name="waiter", group=set())
    while pool.stats()["waiting"] < 1:
        await asleep(0.005)
    start = monotonic()
    await pool.close(timeout=1.0)
    await ajoin(task, 5.0)
    assert monotonic() - start < 1.0 + SLACK
    assert len(errors) == 1 and isinstance(errors[0], PoolClosed)
    await pool.release(held)  # closed on return
    assert pool.stats()["size"] == 0
    with pytest.raises(PoolClosed):
        await pool.acquire()


async def test_resize_and_drain(make_pool: PoolFactory) -> None:
    """resize grows and shrinks at runtime; drain replaces every connection."""
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    await pool.resize(3, 3)
    await pool.wait(timeout=5.0)
    assert pool.stats()["size"] == 3
    async with pool.connection() as conn:
        old = await backend_pid(conn)
    await pool.drain()
    await pool.wait(timeout=5.0)
    async with pool.connection() as conn:
        assert await backend_pid(conn) != old
    await pool.resize(1, 1)
    assert pool.stats()["size"] <= 1
    with pytest.raises(ConfigError, match="min_size"):
        await pool.resize(5, 2)
    assert pool.options.max_size == 1


async def test_callable_conninfo_and_callbacks(
    make_pool: PoolFactory, pg_server: PostgresServer
) -> None:
    """conninfo may be a callable (called per attempt); configure runs per connection,
    reset per return."""
    calls: list[str] = []
    configured: list[Any] = []
    resets: list[Any] = []

    def conninfo() -> str:
        calls.append("x")
        return pg_server.conninfo()

    pool = make_pool(conninfo, min_size=2, configure=configured.append, reset=resets.append)
    await pool.open()
    assert len(calls) == 2 and len(configured) == 2
    async with pool.connection():
        pass
    assert len(resets) == 1


async def test_callable_password_and_version_logged_once(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The password may be a (sync or async) callable, called per attempt; the
    server version is logged once per pool, not once per connection."""
    calls: list[int] = []

    async def password() -> str:
        calls.append(1)
        return "unused-with-trust"

    with caplog.at_level(logging.INFO, logger="pgharbor.pool"):
        pool = make_pool(min_size=3, max_size=3, password=password)
        await pool.open()
    assert len(calls) == 3
    logged = [r for r in caplog.records if "connected to PostgreSQL" in r.getMessage()]
    assert len(logged) == 1


async def test_failing_configure_is_a_failed_connect(make_pool: PoolFactory) -> None:
    """A configure callback that raises counts as a failed attempt; the pool survives."""
    attempts: list[int] = []

    def configure(conn: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("boom")

    pool = make_pool(min_size=1, configure=configure)
    await pool.open(timeout=5.0)
    assert pool.stats()["connections_failed"] == 1
    async with pool.connection() as conn:
        assert await query(conn, "SELECT 1") == [(1,)]


async def test_release_of_foreign_connection_is_refused(make_pool: PoolFactory) -> None:
    """Returning a connection the pool did not lend raises ValueError; nothing changes."""
    a = make_pool(min_size=1)
    b = make_pool(min_size=1)
    await a.open()
    await b.open()
    conn = await a.acquire()
    with pytest.raises(ValueError, match="not lent out"):
        await b.release(conn)
    await a.release(conn)
    with pytest.raises(ValueError):
        await a.release(conn)  # double return
    assert a.stats()["idle"] == 1


async def test_check_discards_dead_idle_connections(
    make_pool: PoolFactory, pg_server: PostgresServer, app_name: str
) -> None:
    """check() pings idle connections and replaces the dead ones."""
    pool = make_pool(min_size=2, max_size=2)
    await pool.open()
    pg_server.terminate_backends(application_name=app_name)
    await asleep(0.1)
    await pool.check()
    await pool.wait(timeout=5.0)
    assert pool.stats()["connections_lost"] >= 1
    async with pool.connection() as conn:
        assert await query(conn, "SELECT 1") == [(1,)]


async def test_bad_settings_fail_at_construction() -> None:
    """Invalid settings raise ConfigError naming the field, before any I/O."""
    with pytest.raises(ConfigError, match="max_size"):
        AsyncPool("", max_size=0)
    with pytest.raises(ConfigError, match="conninfo"):
        AsyncPool("postgresql://u:p%zzSECRET@h/db")
    with pytest.raises(ConfigError) as info:
        AsyncPool("postgresql://user:SECRET@[::1/db")
    assert "SECRET" not in str(info.value)
    with pytest.raises(ConfigError, match="configure"):
        AsyncPool("", configure=42)  # type: ignore[call-overload]
