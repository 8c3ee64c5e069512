"""AsyncPool behaviour with no sync counterpart: task cancellation."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pgharbor import AsyncPool, PoolClosed
from pgharbor.testing import PostgresServer


@pytest.fixture(params=["psycopg", "asyncpg"])
async def pool(
    request: pytest.FixtureRequest, pg_server: PostgresServer, app_name: str
) -> AsyncIterator[AsyncPool]:
    async with AsyncPool(
        pg_server.conninfo(application_name=app_name),
        driver=request.param,
        min_size=2,
        max_size=2,
    ) as pool:
        yield pool


async def test_cancel_storm_while_queued_loses_nothing(pool: AsyncPool) -> None:
    """Cancelling queued tasks removes them from the queue; no connection is lost."""
    held = [await pool.acquire(), await pool.acquire()]
    tasks = [asyncio.create_task(pool.acquire(timeout=10)) for _ in range(8)]
    while pool.stats()["waiting"] < 8:
        await asyncio.sleep(0.001)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.sleep(0)
    for conn in held:
        await pool.release(conn)
    done = await asyncio.gather(*tasks, return_exceptions=True)
    got = [c for c in done if not isinstance(c, BaseException)]
    assert sum(isinstance(c, asyncio.CancelledError) for c in done) == 4
    # Two connections were handed out; the other two waiters still queue.
    for conn in got:
        await pool.release(conn)
    stats = pool.stats()
    assert stats["waiting"] == 0 and stats["size"] == 2 and stats["in_use"] == 0


async def test_cancel_right_after_handoff_returns_the_connection(pool: AsyncPool) -> None:
    """A waiter cancelled after a connection was assigned to it gives it back."""
    held = [await pool.acquire(), await pool.acquire()]
    task = asyncio.create_task(pool.acquire(timeout=10))
    while pool.stats()["waiting"] < 1:
        await asyncio.sleep(0.001)
    await pool.release(held.pop())  # assigned to the waiter...
    task.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await task
    await pool.release(held.pop())
    stats = pool.stats()
    assert stats["in_use"] == 0 and stats["idle"] == 2


async def test_cancel_during_release_rollback_never_loses_a_slot(pool: AsyncPool) -> None:
    """Cancelled while rolling back on return: the connection is discarded, not lost."""
    conn = await pool.acquire()
    if hasattr(conn, "fetch"):
        await conn.execute("BEGIN")
    else:
        await conn.execute("BEGIN")
    task = asyncio.create_task(pool.release(conn))
    await asyncio.sleep(0)  # release is now awaiting the rollback
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pool.wait(timeout=5)
    stats = pool.stats()
    assert stats["in_use"] == 0
    assert stats["size"] + stats["connecting"] <= 2
    for _ in range(2):  # whichever connection comes next is clean
        async with pool.connection() as again:
            if hasattr(again, "is_in_transaction"):
                assert not again.is_in_transaction()
            else:
                assert again.info.transaction_status.name == "IDLE"


async def test_timeout_racing_a_handoff_keeps_the_connection(pool: AsyncPool) -> None:
    """Many short timeouts racing releases never leak a connection."""
    for _ in range(20):
        held = [await pool.acquire(), await pool.acquire()]
        waiter = asyncio.create_task(pool.acquire(timeout=0.002))
        await asyncio.sleep(0.002)
        for conn in held:
            await pool.release(conn)
        result = (await asyncio.gather(waiter, return_exceptions=True))[0]
        if not isinstance(result, BaseException):
            await pool.release(result)
    stats = pool.stats()
    assert stats["in_use"] == 0 and stats["idle"] == 2


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_a_pool_used_from_another_event_loop_raises_clearly(
    pg_server: PostgresServer, app_name: str, driver: str
) -> None:
    """Used from a second thread's event loop, or from a second asyncio.run()
    after the first ended, a pool raises an error naming it (no crash); close()
    from the new loop leaves no server session and no file descriptor."""
    fds = _fds()
    pool = AsyncPool(
        pg_server.conninfo(application_name=app_name),
        driver=driver,
        min_size=2,
        max_size=2,
        name="looped",
    )
    asyncio.run(pool.open())
    assert len(pg_server.backends(app_name)) == 2

    errors: list[BaseException] = []

    def other_thread() -> None:
        async def use() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

        try:
            asyncio.run(use())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert errors and isinstance(errors[0], RuntimeError)
    assert "'looped'" in str(errors[0]) and "event loop" in str(errors[0])

    async def again() -> None:
        with pytest.raises(RuntimeError, match=r"'looped'.*event loop"):
            async with pool.connection():
                pass
        with pytest.raises(RuntimeError, match=r"'looped'.*event loop"):
            await pool.acquire()
        await pool.close()

    asyncio.run(again())
    deadline = time.monotonic() + 5
    while pg_server.backends(app_name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pg_server.backends(app_name) == []
    assert _fds() <= fds


async def test_lifecycle_calls_on_a_closed_pool_raise(pool: AsyncPool) -> None:
    """resize, check and drain on a closed pool raise PoolClosed (they used to
    succeed silently)."""
    await pool.close()
    calls: list[Any] = [lambda: pool.resize(1, 2), pool.check, pool.drain]
    for call in calls:
        with pytest.raises(PoolClosed):
            await call()


async def test_asyncpg_transaction_left_open_does_not_reach_the_next_borrower(
    pg_server: PostgresServer, app_name: str
) -> None:
    """A borrower who leaves an asyncpg ``Transaction`` started (or ends it
    with a bare ``COMMIT``) gets it rolled back and forgotten: the next
    borrower's ``con.transaction()`` is a real transaction, not a savepoint
    inside a transaction that no longer exists."""
    async with AsyncPool(
        pg_server.conninfo(application_name=app_name), driver="asyncpg", min_size=1, max_size=1
    ) as pool:
        async with pool.connection() as con:
            await con.transaction().start()  # left open: rolled back at return
        async with pool.connection() as con, con.transaction():
            assert await con.fetchval("SELECT 1") == 1
        async with pool.connection() as con:
            await con.transaction().start()
            await con.execute("COMMIT")  # ended behind asyncpg's back
        async with pool.connection() as con, con.transaction():
            assert await con.fetchval("SELECT 2") == 2
        assert pool.stats()["connections_created"] == 1


@pytest.mark.parametrize("reset", ["rollback", "session"])
async def test_asyncpg_listeners_do_not_reach_the_next_borrower(
    pg_server: PostgresServer, app_name: str, reset: Any
) -> None:
    """A borrower's asyncpg notification callbacks are forgotten at return:
    they are not called during the next borrow, and the next borrower's own
    listener on the same channel hears (whatever the reset preset)."""
    heard: list[str] = []
    async with AsyncPool(
        pg_server.conninfo(application_name=app_name),
        driver="asyncpg",
        min_size=1,
        max_size=1,
        reset=reset,
    ) as pool:
        async with pool.connection() as con:
            await con.add_listener("harbor_chan", lambda *a: heard.append("first"))
        async with pool.connection() as con:
            got = asyncio.Event()

            def second(*args: Any) -> None:
                heard.append("second")
                got.set()

            await con.add_listener("harbor_chan", second)
            pg_server.execute("NOTIFY harbor_chan")
            await asyncio.wait_for(got.wait(), 5.0)
            await con.remove_listener("harbor_chan", second)
        assert heard == ["second"]
        assert pool.stats()["connections_created"] == 1
