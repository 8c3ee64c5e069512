"""Defects found by tests written from outside (issue 11), each pinned by a test
against real servers: idle while down, no re-send of a statement that ran,
no session state inherited, quick recovery, failing fast with the cause.
Source of the generated sync twin."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Any, ClassVar

import pytest

from pgharbor._acompat import AEvent, ajoin, asleep, aspawn
from pgharbor._async.database import AsyncDatabase
from pgharbor._async.manager import AsyncDatabaseManager
from pgharbor._async.pool import AsyncPool
from pgharbor._async.topology import AsyncTopology
from pgharbor.drivers import get_async_driver
from pgharbor.errors import CircuitOpen, ConnectionFailed, PoolClosed
from pgharbor.testing import PostgresServer, TempDatabase
from pgharbor.testing._cleanup import free_port

from .helpers import DRIVERS, backend_pid, query, wait_until

SLACK_FACTOR = float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))
SLACK = 0.5 * SLACK_FACTOR

PoolFactory = Callable[..., AsyncPool]


@pytest.fixture
async def make_pool(
    pg_server: PostgresServer, app_name: str, driver: str
) -> AsyncIterator[PoolFactory]:
    """Pools tagged with the test's application_name, closed after the test."""
    pools: list[AsyncPool] = []

    def factory(conninfo: Any = None, **kwargs: Any) -> AsyncPool:
        kwargs.setdefault("min_size", 1)
        kwargs.setdefault("name", f"t{len(pools)}")
        kwargs.setdefault("driver", driver)
        kw = {"application_name": app_name, **kwargs.pop("kwargs", {})}
        pool = AsyncPool(
            conninfo if conninfo is not None else pg_server.conninfo(), kwargs=kw, **kwargs
        )
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        await pool.close()


def refused() -> str:
    """A conninfo nobody listens on: every connection attempt is refused at once."""
    return f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres sslmode=disable"


# -- 1: idle while the database is down ---------------------------------------


@pytest.mark.timing
@pytest.mark.slow
async def test_nothing_spins_while_the_database_is_down() -> None:
    """Pools of every driver (with a breaker), a Database and a topology with a
    dead node, all against refused ports, use well under 5 % of a core."""
    things: list[Any] = [
        AsyncPool(refused(), driver=d, min_size=2, breaker=True, name=f"down-{d}") for d in DRIVERS
    ]
    things.append(AsyncDatabase(refused(), name="down-db"))
    things.append(AsyncTopology({"a": refused(), "b": refused()}, name="down-topo"))
    try:
        for thing in things:
            await thing.open(wait=False)
        await asleep(1.0)  # past the first attempts and the breaker opening
        cpu, wall = time.process_time(), monotonic()
        await asleep(5.0)
        used = (time.process_time() - cpu) / (monotonic() - wall)
        assert used < 0.05, f"{used:.1%} of a core while the database is down"
    finally:
        for thing in things:
            await thing.close()


# -- 2: a statement is sent again only when it provably never reached the server


async def test_a_statement_killed_while_running_is_not_sent_again(
    pg_database: TempDatabase, pg_server: PostgresServer, app_name: str, driver: str
) -> None:
    """A running statement terminated by a DBA fails at once; it is not run a
    second time (its side effect happened once), unless marked idempotent."""
    pg_server.execute("CREATE SEQUENCE s", dbname=pg_database.name)
    sql = "SELECT nextval('s'), pg_sleep(1.5)"
    async with AsyncDatabase(
        pg_database.conninfo(), driver=driver, min_size=1, kwargs={"application_name": app_name}
    ) as db:
        outcome: list[Any] = []

        async def run(idempotent: bool) -> None:
            try:
                outcome.append(await db.fetchval(sql, idempotent=idempotent))
            except Exception as exc:
                outcome.append(exc)
            outcome.append(monotonic())

        task = aspawn(run, False, name="victim", group=set())
        await asleep(0.4)
        killed = monotonic()
        assert pg_server.terminate_backends(app_name) == 1
        await ajoin(task, 10.0)
        error, ended = outcome
        assert isinstance(error, Exception), f"returned {error!r}: it was run again"
        assert ended - killed < 1.0
        assert await db.fetchval("SELECT last_value FROM s") == 1

        outcome.clear()
        task = aspawn(run, True, name="idempotent", group=set())
        await asleep(0.4)
        pg_server.terminate_backends(app_name)
        await ajoin(task, 10.0)
        assert outcome[0] == 3  # run again: the killed run took 2, the re-run 3


@pytest.mark.parametrize("how", ["terminate", "restart"])
async def test_a_connection_ended_between_two_calls_is_invisible(
    pg_server: PostgresServer, app_name: str, driver: str, how: str
) -> None:
    """A backend the server ended while idle (terminated, or a restart) is
    discarded at checkout without sending anything, even inside the check window."""
    async with AsyncDatabase(
        pg_server.conninfo(),
        driver=driver,
        min_size=2,
        max_size=2,
        check_window=600.0,  # no ping: the pending-input check alone must see it
        kwargs={"application_name": app_name},
    ) as db:
        assert await db.fetchval("SELECT 1") == 1
        if how == "terminate":
            pg_server.terminate_backends(app_name)
        else:
            pg_server.restart()
        await asleep(0.1)  # the FATAL message arrives
        for _ in range(4):
            assert await db.fetchval("SELECT 1") == 1


# -- 3: no session state inherited ---------------------------------------------


async def test_client_side_attributes_are_restored_at_return(
    make_pool: PoolFactory, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A borrower that turns autocommit off (and changes isolation, read-only)
    does not hand that to the next borrower, whose write then sticks."""
    if driver == "asyncpg":
        pytest.skip("asyncpg connections have no client-side transaction attributes")
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    async with pool.connection() as conn:
        if True:  # ASYNC
            await conn.set_autocommit(False)
            await conn.set_read_only(True)
        else:
            conn.autocommit = False
            setattr(conn, "readonly" if driver == "psycopg2" else "read_only", True)
    async with pool.connection() as conn:
        assert conn.autocommit is True
        await query(conn, "CREATE TEMP TABLE IF NOT EXISTS keep_me (x int)")
        await query(conn, "INSERT INTO keep_me VALUES (1)")
    async with pool.connection() as conn:
        assert await query(conn, "SELECT count(*) FROM keep_me") == [(1,)]


async def test_a_connection_returned_in_a_transaction_is_rolled_back_with_a_warning(
    make_pool: PoolFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Returned inside a transaction: rolled back, and a WARNING names the pool."""
    pool = make_pool(min_size=1, max_size=1, name="warned")
    await pool.open()
    with caplog.at_level(logging.WARNING, logger="pgharbor.pool"):
        async with pool.connection() as conn:
            await query(conn, "BEGIN")
            await query(conn, "SELECT 1")
    assert any(
        "'warned'" in r.getMessage() and "transaction" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("reset", ["session", "discard"])
async def test_reset_presets_leave_no_session_state(
    make_pool: PoolFactory, reset: str, pg_server: PostgresServer, app_name: str
) -> None:
    """reset="session" / "discard": SET, advisory locks and LISTEN do not carry
    over to the next borrower; startup settings survive."""
    pool = make_pool(
        min_size=1, max_size=1, reset=reset, kwargs={"options": "-c lock_timeout=4321"}
    )
    await pool.open()
    async with pool.connection() as conn:
        await query(conn, "SET statement_timeout = '1234ms'")
        await query(conn, "SELECT pg_advisory_lock(4242)")
        await query(conn, "LISTEN somewhere")
    async with pool.connection() as conn:
        assert await query(conn, "SHOW statement_timeout") != [("1234ms",)]
        assert await query(conn, "SHOW lock_timeout") == [("4321ms",)]
        assert await query(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [
            (0,)
        ]
        assert await query(conn, "SELECT count(*) FROM pg_listening_channels()") == [(0,)]


async def test_a_database_never_inherits_a_raw_borrowers_session(
    pg_server: PostgresServer, app_name: str, driver: str
) -> None:
    """State a raw borrower of a Database's pool leaves (SET, a lock) is gone
    before a Database statement runs on that connection."""
    async with AsyncDatabase(
        pg_server.conninfo(),
        driver=driver,
        min_size=1,
        max_size=1,
        kwargs={"application_name": app_name},
    ) as db:
        default = await db.fetchval("SELECT current_setting('statement_timeout')")
        async with db.connection() as conn:
            await query(conn, "SET statement_timeout = '1234ms'")
            await query(conn, "SELECT pg_advisory_lock(4243)")
        assert await db.fetchval("SELECT current_setting('statement_timeout')") == default
        assert await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


# -- 4: a connection the driver knows is closed is never lent ---------------------


async def test_a_closed_connection_is_not_lent(
    make_pool: PoolFactory, pg_server: PostgresServer, app_name: str
) -> None:
    """After the server kills an idle connection, the next acquire gets a working one."""
    pool = make_pool(min_size=1, max_size=1, check_window=600.0)
    await pool.open()
    async with pool.connection() as conn:
        pid = await backend_pid(conn)
    pg_server.execute(f"SELECT pg_terminate_backend({pid})")
    await asleep(0.2)
    async with pool.connection() as conn:
        assert await query(conn, "SELECT 1") == [(1,)]
        assert await backend_pid(conn) != pid


# -- 5: quick recovery, and a breaker that never outlives the outage ----------------


@pytest.mark.timing
@pytest.mark.slow
async def test_a_waiting_caller_is_served_soon_after_a_long_outage(
    driver: str, app_name: str
) -> None:
    """Down for 3 s: a caller waiting meanwhile is served within about 100 ms
    of the server accepting again, not after the backoff's next delay."""
    with PostgresServer() as server:
        pool = AsyncPool(
            server.conninfo(application_name=app_name), driver=driver, min_size=1, name="back"
        )
        async with pool:
            server.stop()
            got: list[float] = []

            async def wait_for_one() -> None:
                async with pool.connection(timeout=30.0) as conn:
                    got.append(monotonic())
                    await query(conn, "SELECT 1")

            task = aspawn(wait_for_one, name="waiter", group=set())
            await asleep(3.0)
            server.start()
            back = monotonic()
            await ajoin(task, 30.0)
            assert got, "the waiter was not served"
            assert got[0] - back < 0.1 + SLACK, f"served {got[0] - back:.3f} s after"


@pytest.mark.timing
async def test_the_breaker_does_not_outlive_a_short_outage(app_name: str, driver: str) -> None:
    """After a 0.1 s immediate restart, CircuitOpen stops within a probe
    interval of the server accepting again (the restart's failed attempts
    count as one failure)."""
    with PostgresServer() as server:
        async with AsyncDatabase(
            server.conninfo(application_name=app_name), driver=driver, min_size=4, max_size=4
        ) as db:
            server.restart(mode="immediate")
            back = monotonic()
            last_open = back
            while monotonic() - back < 3.0:
                try:
                    await db.fetchval("SELECT 1", timeout=1.0)
                except CircuitOpen:
                    last_open = monotonic()
                except Exception:
                    pass
                await asleep(0.01)
            assert last_open - back < 0.5 + SLACK, f"CircuitOpen {last_open - back:.2f} s after"


# -- 6, 7, 8: on time, fast, honest ------------------------------------------------


@pytest.mark.timing
async def test_reconnect_failed_fires_on_time(driver: str) -> None:
    """reconnect_failed is called when reconnect_timeout is up, not a backoff delay later."""
    fired: list[float] = []
    pool = AsyncPool(
        refused(),
        driver=driver,
        min_size=1,
        reconnect_timeout=1.0,
        reconnect_failed=lambda _pool: fired.append(monotonic()),
    )
    start = monotonic()
    await pool.open(wait=False)
    try:
        await wait_until(lambda: bool(fired), 5.0, "reconnect_failed")
        assert fired[0] - start < 1.0 + 0.15 * SLACK_FACTOR, f"{fired[0] - start:.2f} s"
    finally:
        await pool.close()


@pytest.mark.timing
async def test_open_fails_fast_with_the_cause_on_a_refused_port(driver: str) -> None:
    """open() against a refused port fails within about one attempt, with the
    cause (not PoolTimeout after 30 s, not CircuitOpen)."""
    pool = AsyncPool(refused(), driver=driver, min_size=2, breaker=True)
    start = monotonic()
    with pytest.raises(ConnectionFailed) as info:
        await pool.open()
    assert monotonic() - start < 2.0 + SLACK
    assert not isinstance(info.value, CircuitOpen)
    assert info.value.reason == "network"
    assert "refused" in str(info.value).lower()
    with pytest.raises(PoolClosed):
        await pool.acquire()  # a pool that failed to open is closed


async def test_open_fails_fast_on_an_unresolvable_host(driver: str) -> None:
    """A name the resolver cannot translate (injected: no lookup leaves this
    machine) fails open() at once with reason "dns"."""
    real = get_async_driver(driver)

    class NoResolver:
        name: ClassVar[str] = real.name

        def __getattr__(self, attr: str) -> Any:
            return getattr(real, attr)

        async def connect(self, params: dict[str, Any], timeout: float) -> Any:
            raise OSError(
                f'could not translate host name "{params["host"]}" to address: '
                "Name or service not known"
            )

    pool = AsyncPool("host=db.example.invalid user=u dbname=d", driver=NoResolver(), min_size=1)
    start = monotonic()
    with pytest.raises(ConnectionFailed) as info:
        await pool.open(timeout=30.0)
    assert monotonic() - start < 2.0 + SLACK
    assert info.value.reason == "dns"


async def test_manager_open_error_names_each_failed_database(
    pg_server: PostgresServer, app_name: str
) -> None:
    """DatabaseManager.open(): the error's text names each failed database and its cause."""
    mgr = AsyncDatabaseManager(
        {
            "good": pg_server.conninfo(application_name=app_name),
            "gone": refused(),
            "nodb": pg_server.conninfo(dbname="no_such_database_x", application_name=app_name),
        },
        min_size=1,
    )
    try:
        with pytest.raises(Exception) as info:
            await mgr.open(timeout=20.0)
        text = str(info.value)
        assert "gone" in text and "refused" in text.lower()
        assert "nodb" in text and "no_such_database_x" in text
        assert "good" not in text.replace("good", "", 0) or "'good'" not in text
    finally:
        await mgr.close()


async def test_health_of_a_pool_never_opened_is_not_healthy(driver: str) -> None:
    """A pool (or database) that was never opened is not healthy, and says why."""
    pool = AsyncPool(refused(), driver=driver)
    report = pool.health()
    assert not report.healthy and any("not open" in r for r in report.reasons)
    db = AsyncDatabase(refused(), driver=driver)
    assert not db.health().healthy


# -- 12, 14, 15 -----------------------------------------------------------------------


async def test_a_connection_returned_to_a_closed_pool_is_closed_at_once(
    make_pool: PoolFactory, pg_server: PostgresServer, app_name: str
) -> None:
    """Returned after close(): its session ends before the return completes."""
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    async with pool.connection() as conn:
        pid = await backend_pid(conn)
        await pool.close()
    # No loop iteration from here on (blocking calls): nothing scheduled can run.
    deadline = monotonic() + 2.0
    while pid in pg_server.backends(app_name) and monotonic() < deadline:
        time.sleep(0.02)  # noqa: ASYNC251 (on purpose: no loop iteration)
    assert pid not in pg_server.backends(app_name)


async def test_a_stale_double_release_is_refused(make_pool: PoolFactory) -> None:
    """A releases, B acquires the same connection, A releases again: refused,
    and B keeps its connection (the next caller does not get it)."""
    pool = make_pool(min_size=1, max_size=1)
    await pool.open()
    seen: dict[str, Any] = {}
    b_has_it = AEvent()

    async def a() -> None:
        seen["conn"] = conn = await pool.acquire()
        await pool.release(conn)
        await b_has_it.wait_timeout(5.0)
        try:
            await pool.release(conn)  # stale: B holds it now
        except ValueError as exc:
            seen["error"] = exc

    task = aspawn(a, name="A", group=set())
    await wait_until(lambda: "conn" in seen and pool.stats()["in_use"] == 0, 5.0, "A's release")
    conn_b = await pool.acquire()  # B: this task
    assert conn_b is seen["conn"]
    b_has_it.set()
    await ajoin(task, 5.0)
    assert "stale" in str(seen.get("error"))
    assert pool.stats()["in_use"] == 1
    await pool.release(conn_b)
    assert pool.stats()["in_use"] == 0


async def test_a_repeated_fatal_error_is_raised_fresh_each_time(
    pg_server: PostgresServer, driver: str
) -> None:
    """open()/wait() against a missing database raise a new error each call,
    chained to the cause, whose traceback does not grow."""
    pool = AsyncPool(pg_server.conninfo(dbname="no_such_db_y"), driver=driver, min_size=1)
    errors: list[BaseException] = []
    try:
        for _ in range(20):
            try:
                await pool.wait(timeout=10.0) if errors else await pool.open(timeout=10.0)
            except ConnectionFailed as exc:
                errors.append(exc)
            except PoolClosed:
                break
    finally:
        await pool.close()
    assert errors
    assert len({id(e) for e in errors}) == len(errors)
    depth = []
    for e in errors:
        tb, n = e.__traceback__, 0
        while tb is not None:
            n, tb = n + 1, tb.tb_next
        depth.append(n)
    assert max(depth) == min(depth)
    assert all(e.__cause__ is not None for e in errors)


async def test_a_topology_of_one_serves_a_database(
    pg_server: PostgresServer, app_name: str
) -> None:
    """A Database with a single endpoint runs on a topology of one node (no probe session)."""
    async with AsyncDatabase(
        pg_server.conninfo(application_name=app_name), min_size=1, max_size=1
    ) as db:
        assert db.topology is not None and db.topology.pools() == [db.pool]
        assert await db.fetchval("SELECT 1") == 1
        assert len(pg_server.backends(app_name)) == 1
