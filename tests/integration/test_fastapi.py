"""Rows in a FastAPI app against a real server: objects in JSON, with every
driver, with and without a response annotation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pgharbor import AsyncDatabase, Database, Row
from pgharbor.testing import TempDatabase

SQL = (
    "SELECT i AS id, 'user' || i AS name, i * 1.5 AS score, count(*) OVER () AS count, "
    "'2024-05-01 12:30:00+00'::timestamptz AS at FROM generate_series(1, 2) AS i ORDER BY i"
)
EXPECTED = [
    {"id": 1, "name": "user1", "count": 2, "at": "2024-05-01T12:30:00Z"},
    {"id": 2, "name": "user2", "count": 2, "at": "2024-05-01T12:30:00Z"},
]


def routes(app: FastAPI, fetch: Any, fetchrow: Any) -> None:
    """The same three endpoints for every app: no annotation, a return
    annotation, a response_model."""

    @app.get("/plain")
    async def plain() -> Any:
        return await fetch()

    @app.get("/annotated")
    async def annotated() -> list[Row]:
        rows: list[Row] = await fetch()
        return rows

    @app.get("/one", response_model=Row)
    async def one() -> Any:
        return await fetchrow()


def check(client: TestClient) -> None:
    for path in ("/plain", "/annotated"):
        body = client.get(path).json()
        for got in body:
            got["at"] = got["at"].replace("+00:00", "Z")
            assert float(got.pop("score")) in (1.5, 3.0)
        assert body == EXPECTED, path
    one = client.get("/one").json()
    assert one["id"] == 1 and one["name"] == "user1"
    schema = client.get("/openapi.json").json()
    assert schema["paths"]["/one"]["get"]["responses"]["200"]


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_async_app_returns_rows_as_objects(
    pg_database: TempDatabase, app_name: str, driver: str
) -> None:
    """An async app returning Database rows gives JSON objects (psycopg, asyncpg)."""
    db = AsyncDatabase(
        pg_database.conninfo(), driver=driver, min_size=1, max_size=2, application_name=app_name
    )

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with db:
            yield

    app = FastAPI(lifespan=lifespan)

    async def fetch() -> list[Row]:
        return await db.fetch(SQL)

    async def fetchrow() -> Row | None:
        return await db.fetchrow(SQL)

    routes(app, fetch, fetchrow)
    with TestClient(app) as client:
        check(client)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sync_app_returns_rows_as_objects(
    pg_database: TempDatabase, app_name: str, driver: str
) -> None:
    """A sync Database behind FastAPI gives JSON objects too (psycopg, psycopg2)."""
    db = Database(
        pg_database.conninfo(), driver=driver, min_size=1, max_size=2, application_name=app_name
    )

    @contextmanager
    def opened() -> Iterator[None]:
        with db:
            yield

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        with opened():
            yield

    app = FastAPI(lifespan=lifespan)

    async def fetch() -> list[Row]:
        return db.fetch(SQL)

    async def fetchrow() -> Row | None:
        return db.fetchrow(SQL)

    routes(app, fetch, fetchrow)
    with TestClient(app) as client:
        check(client)
