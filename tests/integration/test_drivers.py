"""One suite for the four driver adapters, against a real PostgreSQL server."""

from __future__ import annotations

import inspect
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgharbor.drivers import ConnStatus, get_async_driver, get_driver

ADAPTERS = ["psycopg-async", "psycopg-sync", "asyncpg", "psycopg2"]
SLACK = 0.5 * float(os.environ.get("PGHARBOR_TIMING_SLACK", "1"))


def make_driver(adapter: str) -> Any:
    if adapter == "psycopg-async":
        return get_async_driver("psycopg")
    if adapter == "asyncpg":
        return get_async_driver("asyncpg")
    return get_driver("psycopg2" if adapter == "psycopg2" else "psycopg")


async def call(drv: Any, method: str, *args: Any) -> Any:
    """Run an adapter method, awaiting it if the adapter is async."""
    result = getattr(drv, method)(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run(conn: Any, query: str) -> Any:
    """Run ``query`` on a native connection; the first value, or None."""
    if hasattr(conn, "fetch"):  # asyncpg
        rows = await conn.fetch(query)
        return rows[0][0] if rows else None
    if hasattr(conn, "pgconn"):  # psycopg, either flavour
        cur = conn.execute(query)
        if inspect.isawaitable(cur):
            cur = await cur
            return (await cur.fetchone())[0] if cur.description else None
        return cur.fetchone()[0] if cur.description else None
    with conn.cursor() as cur:  # psycopg2
        cur.execute(query)
        return cur.fetchone()[0] if cur.description else None


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def drv(adapter: str) -> Any:
    return make_driver(adapter)


@pytest.fixture
def params(pg_server: Any, app_name: str) -> dict[str, Any]:
    return conninfo_to_dict(pg_server.conninfo(application_name=app_name))


@pytest.fixture
async def conn(drv: Any, params: dict[str, Any]) -> AsyncIterator[Any]:
    c = await call(drv, "connect", params, 10.0)
    try:
        yield c
    finally:
        drv.terminate(c)


def wait_gone(pg_server: Any, pid: int) -> None:
    deadline = time.monotonic() + 5
    while pg_server.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]):
        assert time.monotonic() < deadline, "backend did not exit"
        time.sleep(0.02)


class SilentListener:
    """Accepts TCP connections and never answers (a hung server's socket)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, name="silent-listener")
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            if select.select([self.sock], [], [], 0.05)[0]:
                self.held.append(self.sock.accept()[0])

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        for s in [*self.held, self.sock]:
            s.close()


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


async def test_connect_autocommit(drv: Any, conn: Any, pg_server: Any) -> None:
    """A statement is visible from another session at once: autocommit is on."""
    table = f"drv_ac_{uuid.uuid4().hex[:12]}"
    await run(conn, f"CREATE TABLE {table} (x int)")
    try:
        found = pg_server.execute("SELECT to_regclass(%s)::text", [table])
        assert found == [(table,)]
        assert drv.status(conn) is ConnStatus.IDLE
    finally:
        pg_server.execute(f"DROP TABLE IF EXISTS {table}")


async def test_ping(drv: Any, conn: Any) -> None:
    """An empty-query ping succeeds and leaves the connection usable."""
    await call(drv, "ping", conn, 5.0)
    await call(drv, "ping", conn, 5.0)
    assert await run(conn, "SELECT 1") == 1
    assert drv.status(conn) is ConnStatus.IDLE


async def test_ping_terminated_backend(drv: Any, conn: Any, pg_server: Any) -> None:
    """Ping on a terminated backend raises an error classified as a disconnect."""
    pid = drv.backend_pid(conn)
    pg_server.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_gone(pg_server, pid)
    with pytest.raises(Exception) as info:
        await call(drv, "ping", conn, 5.0)
    assert drv.is_error_disconnect(info.value), repr(info.value)
    assert drv.status(conn) is ConnStatus.BROKEN


async def test_status_transitions(drv: Any, conn: Any, adapter: str) -> None:
    """Status goes IDLE, INTRANS, INERROR, and back to IDLE after rollback."""
    assert drv.status(conn) is ConnStatus.IDLE
    await run(conn, "BEGIN")
    assert drv.status(conn) is ConnStatus.INTRANS
    with pytest.raises(Exception, match="division by zero"):
        await run(conn, "SELECT 1/0")
    # asyncpg reports a failed transaction as merely "in transaction".
    expected = ConnStatus.INTRANS if adapter == "asyncpg" else ConnStatus.INERROR
    assert drv.status(conn) is expected
    await call(drv, "rollback", conn, 5.0)
    assert drv.status(conn) is ConnStatus.IDLE
    assert await run(conn, "SELECT 2") == 2


async def test_status_active_during_copy(drv: Any, conn: Any, adapter: str) -> None:
    """A COPY FROM STDIN left open reads as ACTIVE (psycopg only)."""
    if not adapter.startswith("psycopg-"):
        pytest.skip(f"{adapter} cannot leave a COPY open")
    await run(conn, "CREATE TEMP TABLE t (x int)")
    cur = conn.cursor()
    if adapter == "psycopg-async":
        async with cur.copy("COPY t FROM STDIN") as copy:
            assert drv.status(conn) is ConnStatus.ACTIVE
            await copy.write_row([1])
    else:
        with cur.copy("COPY t FROM STDIN") as copy:
            assert drv.status(conn) is ConnStatus.ACTIVE
            copy.write_row([1])
    assert drv.status(conn) is ConnStatus.IDLE
    assert await run(conn, "SELECT count(*) FROM t") == 1


async def test_terminate_then_broken(drv: Any, conn: Any) -> None:
    """After terminate() the status is BROKEN; terminate and close never raise."""
    drv.terminate(conn)
    assert drv.status(conn) is ConnStatus.BROKEN
    drv.terminate(conn)
    await call(drv, "close", conn, 1.0)


async def test_close(drv: Any, params: dict[str, Any]) -> None:
    """close() ends the session gracefully and leaves the connection BROKEN."""
    c = await call(drv, "connect", params, 10.0)
    try:
        await call(drv, "close", c, 5.0)
        assert drv.status(c) is ConnStatus.BROKEN
    finally:
        drv.terminate(c)


async def test_server_facts(drv: Any, conn: Any, pg_server: Any, app_name: str) -> None:
    """server_version, backend_pid and parameter() match what the server says."""
    assert drv.server_version(conn) == pg_server.version.num
    assert drv.backend_pid(conn) == await run(conn, "SELECT pg_backend_pid()")
    assert drv.parameter(conn, "application_name") == app_name
    assert drv.parameter(conn, "server_version")
    assert drv.parameter(conn, "no_such_parameter") is None


async def test_options_reach_session(drv: Any, pg_server: Any, app_name: str) -> None:
    """``-c`` settings in the options parameter reach the session."""
    params = conninfo_to_dict(
        pg_server.conninfo(
            application_name=app_name,
            options=r"-c statement_timeout=1234 -c DateStyle=ISO,\ DMY",
        )
    )
    c = await call(drv, "connect", params, 10.0)
    try:
        assert await run(c, "SHOW statement_timeout") == "1234ms"
        assert await run(c, "SHOW DateStyle") == "ISO, DMY"
    finally:
        drv.terminate(c)


@pytest.mark.timing
async def test_connect_to_silent_server_times_out(
    drv: Any, adapter: str, silent: SilentListener
) -> None:
    """Connecting to a socket that never answers fails within the timeout."""
    params = {"host": "127.0.0.1", "port": str(silent.port), "user": "x"}
    timeout = 1.0
    # libpq counts whole seconds with a floor of 2: the sync bound is 2 s.
    bound = timeout if adapter in ("psycopg-async", "asyncpg") else 2.0
    start = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own error
        c = await call(drv, "connect", params, timeout)
        drv.terminate(c)
    assert time.monotonic() - start < bound + SLACK


async def test_wrong_password_not_in_error(drv: Any, pg_server: Any, app_name: str) -> None:
    """A rejected password raises, and the password is not in the message."""
    role = f"drv_{uuid.uuid4().hex[:10]}"
    secret = f"S3cr3t-{uuid.uuid4()}"
    pg_server.create_role(role, password="right-" + secret)
    try:
        params = conninfo_to_dict(
            pg_server.conninfo(user=role, password=secret, application_name=app_name)
        )
        try:
            c = await call(drv, "connect", params, 10.0)
        except Exception as exc:
            assert secret not in str(exc) and secret not in repr(exc)
        else:
            drv.terminate(c)
            pytest.skip("the server trusts 127.0.0.1: no password check")
    finally:
        pg_server.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.timing
async def test_ping_bounded_when_paused(drv: Any, conn: Any, pg_server: Any) -> None:
    """A ping to a stopped (SIGSTOP) server raises TimeoutError within its bound."""
    timeout = 0.5
    pg_server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await call(drv, "ping", conn, timeout)
        assert time.monotonic() - start < timeout + SLACK
    finally:
        pg_server.resume()
    assert drv.status(conn) in (ConnStatus.ACTIVE, ConnStatus.BROKEN, ConnStatus.IDLE)
