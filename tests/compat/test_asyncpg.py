"""pgharbor.compat.asyncpg against real servers: asyncpg's pool semantics
on pgharbor's AsyncPool."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from time import monotonic
from typing import Any

import asyncpg
import pytest

import pgharbor
from pgharbor.compat.asyncpg import Pool, create_pool
from pgharbor.errors import ConfigError
from pgharbor.testing import ChaosProxy, PostgresServer, TempDatabase

Factory = Callable[..., Any]


@pytest.fixture
async def make(pg_database: TempDatabase, app_name: str) -> AsyncIterator[Factory]:
    """create_pool on a fresh database, tagged with the test's
    application_name (the leak guard counts it); terminated after."""
    pools: list[Pool] = []

    def factory(**kwargs: Any) -> Pool:
        kwargs.setdefault("min_size", 1)
        kwargs.setdefault("max_size", 2)
        settings = kwargs.setdefault("server_settings", {})
        settings.setdefault("application_name", app_name)
        pool = create_pool(pg_database.url(), **kwargs)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        if not pool.is_closing():
            await asyncio.wait_for(pool.close(), 10.0)


class Handler:
    """Records what the event loop's exception handler is called with."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.loop = asyncio.get_running_loop()
        self.old = self.loop.get_exception_handler()
        self.loop.set_exception_handler(lambda _, ctx: self.messages.append(ctx["message"]))

    def restore(self) -> None:
        self.loop.set_exception_handler(self.old)


async def test_acquire_as_awaitable_and_block(make: Factory) -> None:
    """acquire() is awaitable (then release) or an async with block; the
    proxy is an asyncpg Connection and refuses use once released."""
    async with make(min_size=1, max_size=1) as pool:
        con = await pool.acquire()
        assert isinstance(con, asyncpg.Connection)
        assert await con.fetchval("SELECT 1") == 1
        await pool.release(con)
        await pool.release(con)  # a second release does nothing
        with pytest.raises(asyncpg.InterfaceError, match="released back to the pool"):
            await con.fetchval("SELECT 1")
        async with pool.acquire() as con2:
            assert await con2.fetchval("SELECT 2") == 2
        assert "[released]" in repr(con2)
        assert pool.get_size() == 1 and pool.get_idle_size() == 1


async def test_session_is_reset_on_release(make: Factory, pg_server: PostgresServer) -> None:
    """What a borrower set (settings, session authorization, advisory locks,
    LISTEN) is gone for the next one: asyncpg's reset, and the session
    authorization, which asyncpg's own reset leaves."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    pg_server.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        async with make(min_size=1, max_size=1) as pool:
            async with pool.acquire() as con:
                pid = con.get_server_pid()
                await con.execute("SET work_mem = '7MB'")
                await con.execute("SELECT pg_advisory_lock(42)")
                await con.execute("LISTEN harbor_reset")
                await con.execute(f"SET SESSION AUTHORIZATION {role}")
            async with pool.acquire() as con:
                assert con.get_server_pid() == pid
                assert await con.fetchval("SELECT session_user") == "postgres"
                assert await con.fetchval("SHOW work_mem") != "7MB"
                locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1"
                assert await con.fetchval(locks, pid) == 0
                assert await con.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
    finally:
        pg_server.execute(f"DROP ROLE {role}")


async def test_init_and_setup_callbacks(make: Factory) -> None:
    """init runs once per new connection, setup at every acquire (with the
    proxy); a setup that raises closes that connection (the proxy it saw
    says so, as in asyncpg) and raises to the acquirer, and the next
    acquire gets a new connection."""
    inits: list[Any] = []
    setups: list[Any] = []
    fail = [True]

    async def init(con: Any) -> None:
        inits.append(con)

    async def setup(con: Any) -> None:
        setups.append(con)
        if fail.pop() if fail else False:
            raise RuntimeError("setup failed")

    async with make(min_size=1, max_size=1, init=init, setup=setup) as pool:
        with pytest.raises(RuntimeError, match="setup failed"):
            await pool.acquire()
        assert setups[0].is_closed()
        async with pool.acquire(timeout=5.0) as con:
            assert await con.fetchval("SELECT 1") == 1
        async with pool.acquire() as con:
            pass
    assert len(inits) == 2 and len(setups) == 3
    assert all(isinstance(c, asyncpg.Connection) for c in inits)


async def test_an_init_that_raises_reaches_the_acquirer(make: Factory) -> None:
    """As asyncpg: an ``init`` that raises on a connection opened for a caller
    raises to that caller and the connection is closed; the next acquire
    opens a new one. At pool creation, it fails the creation."""
    seen: list[Any] = []

    async def init(con: Any) -> None:
        seen.append(con)
        if len(seen) == 1:
            raise RuntimeError("init failed")

    async with make(min_size=0, max_size=1, init=init) as pool:
        with pytest.raises(RuntimeError, match="init failed"):
            await pool.acquire(timeout=5.0)
        assert seen[0].is_closed()
        async with pool.acquire(timeout=5.0) as con:
            assert await con.fetchval("SELECT 1") == 1
            assert con._con is seen[1]
    seen.clear()
    pool = make(min_size=1, max_size=1, init=init)
    with pytest.raises(RuntimeError, match="init failed"):
        await pool
    assert pool.pgharbor.stats()["size"] == 0


async def test_a_pool_grows_by_one_connection_per_waiting_caller(make: Factory) -> None:
    """As asyncpg: beyond min_size, each waiting caller gets a connection
    opened for it, up to max_size (10 concurrent users, max_size 5: 5
    connections, each initialised once)."""
    inits: list[Any] = []

    async def init(con: Any) -> None:
        inits.append(con)

    async def user(pool: Pool) -> None:
        async with pool.acquire():
            pass

    async with make(min_size=2, max_size=5, init=init) as pool:
        await asyncio.gather(*[user(pool) for _ in range(10)])
    assert len(inits) == 5


async def test_methods_on_the_pool(make: Factory) -> None:
    """fetch, fetchrow, fetchval, execute, executemany, fetchmany and
    copy_records_to_table run on one of the pool's connections."""
    async with make() as pool:
        assert await pool.execute("CREATE TABLE t (a int, b text)") == "CREATE TABLE"
        await pool.executemany("INSERT INTO t VALUES ($1, $2)", [(1, "x"), (2, "y")])
        await pool.copy_records_to_table("t", records=[(3, "z")])
        assert [tuple(r) for r in await pool.fetch("SELECT * FROM t ORDER BY a")] == [
            (1, "x"),
            (2, "y"),
            (3, "z"),
        ]
        row = await pool.fetchrow("SELECT * FROM t WHERE a = $1", 2)
        assert row is not None and row["b"] == "y"
        assert await pool.fetchval("SELECT count(*) FROM t") == 3
        rows = await pool.fetchmany("SELECT $1::int + 1", [(1,), (2,)])
        assert [r[0] for r in rows] == [2, 3]


async def test_a_connection_closed_by_its_borrower(make: Factory) -> None:
    """A borrower that closes (or terminates) its connection frees its slot
    without a release, as with asyncpg; releasing it afterwards does
    nothing, and nothing is left failing in the background."""
    handler = Handler()
    try:
        async with make(min_size=1, max_size=1) as pool:
            async with pool.acquire(timeout=5.0) as con:
                await con.close()
            con = await pool.acquire(timeout=5.0)
            con.terminate()
            con2 = await pool.acquire(timeout=5.0)  # the slot came back by itself
            await pool.release(con)
            assert await con2.fetchval("SELECT 1") == 1
            await pool.release(con2)
            await asyncio.sleep(0.05)
    finally:
        handler.restore()
    assert handler.messages == []


async def test_an_open_transaction_is_reported_as_asyncpg_does(make: Factory) -> None:
    """A transaction left open by hand is reported to the event loop's
    exception handler, as asyncpg does; a managed one (``async with
    con.transaction()`` still running) is not. Both are rolled back."""
    handler = Handler()
    try:
        async with make(min_size=1, max_size=1) as pool:
            async with pool.acquire() as con:
                await con.execute("BEGIN")
            assert len(handler.messages) == 1
            assert "active transaction" in handler.messages[0]

            async def rows(con: Any) -> AsyncGenerator[int, None]:
                async with con.transaction():
                    yield 1

            con = await pool.acquire()
            gen = rows(con)
            assert await gen.__anext__() == 1  # released inside the managed block
            await pool.release(con)
            assert len(handler.messages) == 1
            try:
                await gen.aclose()
            except asyncpg.InterfaceError:
                pass  # its connection went back to the pool before it ended
            async with pool.acquire() as con, con.transaction():
                assert await con.fetchval("SELECT 1") == 1
    finally:
        handler.restore()


async def test_expire_and_connect_args(
    make: Factory, pg_database: TempDatabase, app_name: str
) -> None:
    """expire_connections replaces every connection; set_connect_args
    applies to the connections made from then on."""
    async with make(min_size=1, max_size=1) as pool:
        async with pool.acquire() as con:
            pid = con.get_server_pid()
            settings = {"application_name": app_name, "work_mem": "5MB"}
            pool.set_connect_args(pg_database.url(), server_settings=settings)
            await pool.expire_connections()
        async with pool.acquire(timeout=5.0) as con:
            assert con.get_server_pid() != pid
            assert await con.fetchval("SHOW work_mem") == "5MB"


async def test_close_waits_for_release_and_terminate(make: Factory) -> None:
    """close() waits until every connection is released; acquire meanwhile
    fails; terminate() ends every connection at once."""
    pool = await make(min_size=1, max_size=1)
    con = await pool.acquire()
    closing = asyncio.ensure_future(pool.close())
    await asyncio.sleep(0.1)
    assert not closing.done() and pool.is_closing()
    with pytest.raises(asyncpg.InterfaceError, match="closing"):
        await pool.acquire()
    await pool.release(con)
    await asyncio.wait_for(closing, 5.0)
    pool2 = await make(min_size=2, max_size=2)
    held = await pool2.acquire()
    pool2.terminate()
    assert pool2.is_closing() and held.is_closed()


async def test_sizes_and_validation(make: Factory) -> None:
    """get_*_size report the pool; init_size connections are opened first;
    bad sizes raise ValueError, bad classes TypeError, as asyncpg does."""
    async with make(init_size=3, min_size=1, max_size=4) as pool:
        assert (pool.get_min_size(), pool.get_max_size()) == (1, 4)
        assert pool.get_size() == 3 and pool.get_idle_size() == 3
        async with pool.acquire():
            assert pool.get_idle_size() == 2
    bads: list[dict[str, Any]] = [
        {"max_size": 0},
        {"min_size": 3, "max_size": 2},
        {"max_queries": 0},
    ]
    for bad in bads:
        with pytest.raises(ValueError):
            create_pool("", **bad)
    with pytest.raises(TypeError):
        create_pool("", connection_class=dict)
    with pytest.raises(ConfigError, match="pgharbor"):
        create_pool("", pgharbor={"min_size": 1})


async def test_connection_class_and_connect_kwargs(make: Factory) -> None:
    """connection_class, record_class and asyncpg.connect's own keyword
    arguments are used for every connection; max_queries retires one."""

    class MyConnection(asyncpg.Connection):
        pass

    class MyRecord(asyncpg.Record):
        pass

    async with make(
        min_size=1,
        max_size=1,
        connection_class=MyConnection,
        record_class=MyRecord,
        statement_cache_size=0,
        command_timeout=5,
        max_queries=2,
    ) as pool:
        pids = []
        for _ in range(3):
            async with pool.acquire() as con:
                assert isinstance(con._con, MyConnection)
                assert isinstance(await con.fetchrow("SELECT 1"), MyRecord)
                pids.append(con.get_server_pid())
        assert pids[0] == pids[1] != pids[2]


async def test_errors(make: Factory, pg_server: PostgresServer) -> None:
    """Using a pool before it is initialized, or releasing another pool's
    connection, raises asyncpg's InterfaceError; an acquire that times out
    raises a TimeoutError (pgharbor's PoolTimeout)."""
    pool = make(min_size=1, max_size=1)
    with pytest.raises(asyncpg.InterfaceError, match="not initialized"):
        await pool.fetchval("SELECT 1")
    await pool
    other = await make(min_size=1, max_size=1)
    con = await other.acquire()
    with pytest.raises(asyncpg.InterfaceError, match="not a member of this pool"):
        await pool.release(con)
    with pytest.raises(TimeoutError) as info:
        await other.acquire(timeout=0.1)
    assert isinstance(info.value, pgharbor.PoolTimeout)
    await other.release(con)
    await pool.close()
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        await pool.acquire()


async def test_pgharbor_settings(make: Factory) -> None:
    """pgharbor={...} reaches the pgharbor pool; its health and stats are
    there to read."""
    async with make(pgharbor={"breaker": True, "leak_threshold": 30.0, "name": "apg"}) as pool:
        assert pool.pgharbor.name == "apg"
        assert pool.pgharbor.options.leak_threshold == 30.0
        await pool.fetchval("SELECT 1")
        assert pool.pgharbor.stats()["acquired"] >= 1
        assert pool.pgharbor.health().healthy


async def test_a_refused_server_fails_create_pool_at_once(chaos_proxy: ChaosProxy) -> None:
    """await create_pool() on a port that refuses fails within about one
    attempt with pgharbor's ConnectionFailed, not after its timeout; the
    pool is then closed."""
    chaos_proxy.refuse()
    pool = create_pool(
        host=chaos_proxy.host, port=chaos_proxy.port, user="postgres", ssl=False, min_size=1
    )
    start = monotonic()
    with pytest.raises(pgharbor.ConnectionFailed) as info:
        await pool
    assert monotonic() - start < 10.0
    assert info.value.reason == "network"
    assert pool.is_closing()


async def test_a_release_cancelled_during_the_reset_loses_nothing(make: Factory) -> None:
    """A task cancelled while its connection is being reset (a slow reset=)
    does not lose the connection: the pool discards it and opens another."""

    async def slow_reset(con: Any) -> None:
        await asyncio.sleep(0.5)

    async with make(min_size=1, max_size=1, reset=slow_reset) as pool:

        async def worker() -> None:
            async with pool.acquire():
                pass

        task = asyncio.ensure_future(worker())
        await asyncio.sleep(0.1)  # inside the reset
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with pool.acquire(timeout=5.0) as con:
            assert await con.fetchval("SELECT 1") == 1
        assert pool.get_size() == 1
