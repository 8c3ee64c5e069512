"""A pool's ``kwargs``: libpq keywords travel as text and are checked at
construction; the driver's own connect arguments (a row factory, a statement
cache size...) reach its connect as they are (source of the generated sync
tests)."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.rows import dict_row

from pgharbor._async.pool import AsyncPool
from pgharbor.errors import ConfigError
from pgharbor.testing import PostgresServer


def _driver_kwargs(driver: str) -> dict[str, Any]:
    """Non-text connect arguments of each driver, and a libpq keyword."""
    if driver == "psycopg":
        return {"row_factory": dict_row, "prepare_threshold": 0}
    if driver == "asyncpg":
        return {
            "statement_cache_size": 0,
            "command_timeout": 5.0,
            "server_settings": {"search_path": "pg_catalog"},
        }
    import psycopg2.extras

    return {"cursor_factory": psycopg2.extras.RealDictCursor}


async def _row(conn: Any, driver: str) -> Any:
    """``SELECT 1 AS one`` as the connection's own row type."""
    if driver == "psycopg":
        cur = await conn.execute("SELECT 1 AS one")
        return await cur.fetchone()
    if driver == "asyncpg":
        return dict(await conn.fetchrow("SELECT 1 AS one"))
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        return cur.fetchone()


async def test_driver_arguments_reach_connect_as_they_are(
    pg_server: PostgresServer, app_name: str, driver: str
) -> None:
    """Non-text ``kwargs`` the driver's connect takes are passed unchanged,
    beside libpq keywords (the application name still arrives)."""
    kwargs = {"application_name": app_name, **_driver_kwargs(driver)}
    async with AsyncPool(pg_server.conninfo(), driver=driver, min_size=1, kwargs=kwargs) as pool:
        async with pool.connection() as conn:
            assert await _row(conn, driver) == {"one": 1}
            if driver == "psycopg":
                assert conn.prepare_threshold == 0
                assert conn.autocommit  # still pgharbor's autocommit connection
            elif driver == "asyncpg":
                assert await conn.fetchval("SHOW search_path") == "pg_catalog"
                assert await conn.fetchval("SHOW application_name") == app_name
        assert pool.stats()["connections_created"] == 1


async def test_unknown_and_bad_kwargs_fail_at_construction(driver: str) -> None:
    """A key that is neither a libpq keyword nor one of the driver's connect
    arguments, or a bad libpq value beside good driver arguments, raises
    ConfigError naming it before anything is opened."""
    with pytest.raises(ConfigError, match="aplication_name") as info:
        AsyncPool("", driver=driver, kwargs={"aplication_name": "x"})
    assert "did you mean 'application_name'" in str(info.value)
    assert f"{driver} driver's connect" in str(info.value)
    good = _driver_kwargs(driver)
    with pytest.raises(ConfigError, match="sslmode"):
        AsyncPool("", driver=driver, kwargs={"sslmode": "sometimes", **good})
    with pytest.raises(ConfigError, match="keepalives_idle"):
        AsyncPool("", driver=driver, kwargs={"keepalives_idle": [30], **good})
    # Another driver's arguments are not this one's.
    other = {"psycopg": "statement_cache_size"}.get(driver, "row_factory")
    with pytest.raises(ConfigError, match=other):
        AsyncPool("", driver=driver, kwargs={other: 0})


async def test_autocommit_is_not_a_pool_kwarg() -> None:
    """pgharbor's psycopg connections are in autocommit mode: ``autocommit``
    in ``kwargs`` is refused rather than silently overridden."""
    with pytest.raises(ConfigError, match="autocommit"):
        AsyncPool("", kwargs={"autocommit": False})
