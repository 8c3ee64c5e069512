"""Pool behaviour with no async counterpart: threads and fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pgharbor import ConfigError, Pool, PoolClosed
from pgharbor.testing import PostgresServer


@pytest.fixture(params=["psycopg", "psycopg2"])
def pool(
    request: pytest.FixtureRequest, pg_server: PostgresServer, app_name: str
) -> Iterator[Pool]:
    with Pool(
        pg_server.conninfo(application_name=app_name),
        driver=request.param,
        min_size=3,
        max_size=3,
    ) as pool:
        yield pool


def _select_one(conn: Any) -> None:
    if hasattr(conn, "execute"):
        conn.execute("SELECT 1")
    else:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")


def test_many_threads_keep_the_books_straight(pool: Pool) -> None:
    """16 threads churning on 3 connections: no error, nothing lost."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(100):
                with pool.connection(timeout=10) as conn:
                    _select_one(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    stats = pool.stats()
    assert stats["in_use"] == 0 and stats["size"] == 3 and stats["waiting"] == 0
    assert stats["acquired"] >= 1600


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_process_never_touches_parent_connections(pool: Pool) -> None:
    """After fork the child opens its own connections; the parent's keep working."""
    with pool.connection() as conn:
        parent_pid = conn.info.backend_pid if hasattr(conn, "info") else conn.get_backend_pid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            with pool.connection(timeout=10) as conn:
                pid = conn.info.backend_pid if hasattr(conn, "info") else conn.get_backend_pid()
                code = 0 if pid != parent_pid else 2
            pool.close()
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    status = os.read(read, 1)
    os.close(read)
    os.waitpid(child, 0)
    assert status == b"\x00"
    for _ in range(5):
        with pool.connection() as conn:
            _select_one(conn)
    assert pool.stats()["connections_lost"] == 0


@pytest.mark.parametrize("field", ["configure", "reset", "reconnect_failed"])
def test_an_async_callback_is_refused_by_the_sync_pool(field: str) -> None:
    """A coroutine function (or an object whose __call__ is one) cannot run
    in a sync pool: refused at construction instead of never running."""

    async def coroutine_function(conn: Any) -> None:
        pass

    class AsyncCallable:
        async def __call__(self, conn: Any) -> None:
            pass

    callbacks: list[Any] = [coroutine_function, AsyncCallable()]
    for callback in callbacks:
        kwargs: dict[str, Any] = {field: callback}
        with pytest.raises(ConfigError, match=f"^{field}: must be a plain function"):
            Pool("host=127.0.0.1 port=1 dbname=x", **kwargs)


def test_lifecycle_calls_on_a_closed_pool_raise(pool: Pool) -> None:
    """resize, check and drain on a closed pool raise PoolClosed."""
    pool.close()
    calls: list[Any] = [lambda: pool.resize(1, 2), pool.check, pool.drain]
    for call in calls:
        with pytest.raises(PoolClosed):
            call()
