"""A unique password fed through every error path is found nowhere: not in
exceptions (or their chains), repr, stats, info, logs or warnings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from pgharbor import AsyncDatabase, AuthenticationFailed, ConfigError, Database, PoolTimeout
from pgharbor.testing import PostgresServer

SECRET = "Zx9-unique-S3cr3t-pw"


@pytest.fixture(scope="module")
def scram_server() -> Iterator[PostgresServer]:
    """A server where role 'alice' must authenticate with scram-sha-256."""
    with PostgresServer(hba=["host all alice 127.0.0.1/32 scram-sha-256"]) as server:
        server.create_role("alice", password=SECRET)
        yield server


def texts_of(exc: BaseException) -> str:
    """Every text an exception carries, following its chain."""
    parts = []
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 20:
        parts += [str(current), repr(current), *map(str, current.args)]
        parts += getattr(current, "__notes__", [])
        current = current.__cause__ or current.__context__
        seen += 1
    return "\n".join(parts)


def test_wrong_and_right_password(
    scram_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong scram password fails fast as AuthenticationFailed; the right one
    works; the password appears in no message, log, repr or stats."""
    caplog.set_level(logging.DEBUG)
    wrong = scram_server.conninfo(user="alice", password=SECRET + "-wrong")
    db = Database(wrong, name="wrongpw", min_size=1, max_size=1, connect_timeout=3)
    try:
        with pytest.raises(AuthenticationFailed) as info:
            db.open(timeout=10)
        assert info.value.reason == "auth"
        with pytest.raises((AuthenticationFailed, PoolTimeout)) as again:
            db.fetchval("SELECT 1")
        leaked = texts_of(info.value) + texts_of(again.value) + repr(db) + str(db.stats())
    finally:
        db.close()
    right = scram_server.conninfo(user="alice", password=SECRET)
    with Database(right, name="rightpw", min_size=1, max_size=1) as good:
        assert good.fetchval("SELECT current_user") == "alice"
        leaked += repr(good) + str(good.info()) + str(good.stats()) + repr(good.pool)
    leaked += "\n".join(r.getMessage() for r in caplog.records)
    leaked += "\n".join(str(r.exc_info) for r in caplog.records if r.exc_info)
    assert SECRET not in leaked
    assert "wrongpw" in leaked or "alice" in leaked  # the messages do say *who*


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://alice:{SECRET}%zz@127.0.0.1/db",  # bad percent-escape
        f"postgresql://alice:{SECRET}@[::1/db",  # unterminated IPv6 bracket
        f"postgresql://alice:{SECRET}%00x@127.0.0.1/db",  # NUL
        f"host=127.0.0.1 password={SECRET} sslmode=bogus",  # bad enum
        f"host=127.0.0.1 password='{SECRET}",  # unterminated quote
    ],
)
def test_malformed_urls_never_echo_the_password(url: str) -> None:
    """libpq echoes the password in some parse errors; pgharbor's never do."""
    with pytest.raises(ConfigError) as info:
        Database(url)
    assert SECRET not in texts_of(info.value)


def test_async_wrong_password_is_redacted(scram_server: PostgresServer) -> None:
    """The async path redacts too (psycopg async and asyncpg)."""

    async def run(driver: str) -> str:
        wrong = scram_server.url(user="alice", password=SECRET + "x")
        db = AsyncDatabase(wrong, driver=driver, min_size=1, max_size=1, connect_timeout=3)
        try:
            with pytest.raises(AuthenticationFailed) as info:
                await db.open(timeout=10)
            return texts_of(info.value) + repr(db)
        finally:
            await db.close()

    for driver in ("psycopg", "asyncpg"):
        assert SECRET not in asyncio.run(run(driver))
