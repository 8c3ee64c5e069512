"""A unique password fed through every error path is found nowhere: not in
exceptions (or their chains), repr, stats, info, logs or warnings."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from pgharbor import (
    AsyncDatabase,
    AuthenticationFailed,
    ConfigError,
    Database,
    PoolClosed,
    PoolTimeout,
)
from pgharbor.cli import app
from pgharbor.config import DatabaseSettings
from pgharbor.metrics.prometheus import PrometheusSink
from pgharbor.testing import PostgresServer

SECRET = "Zx9-unique-S3cr3t-pw"
#: Bob's password holds every character a URL gives a meaning to; its pieces
#: (three or more plain characters) must show nowhere.
RAW = "Kq7x@Zq9eta Vq8ox:Lq6um/Oq5rb#Nq4yx%Pq3yr"
PIECES = ["Kq7x", "Zq9eta", "Vq8ox", "Lq6um", "Oq5rb", "Nq4yx", "Pq3yr"]


@pytest.fixture(scope="module")
def scram_server(pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    """A server (of the version the suite runs) where roles 'alice' and 'bob'
    must authenticate with scram-sha-256."""
    wanted = pytestconfig.getoption("--pg-version") or os.environ.get("PGHARBOR_TEST_PG_VERSION")
    hba = ["host all alice,bob 127.0.0.1/32 scram-sha-256"]
    with PostgresServer(version=int(wanted) if wanted else None, hba=hba) as server:
        server.create_role("alice", password=SECRET)
        server.create_role("bob", password=RAW)
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
        # A database that failed to open is closed.
        with pytest.raises((AuthenticationFailed, PoolTimeout, PoolClosed)) as again:
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


def raw_url(server: PostgresServer, password: str) -> str:
    """A URL with ``password`` written as people write it: not percent-encoded
    (but for '%' itself, which must be written %25)."""
    return f"postgresql://bob:{password.replace('%', '%25')}@127.0.0.1:{server.port}/postgres"


def assert_no_piece(text: str) -> None:
    """No part of bob's password is in ``text``."""
    for piece in PIECES:
        assert piece not in text, f"{piece!r} leaked in: {text[:2000]}"


def test_an_unencoded_password_in_a_url_connects_and_shows_nowhere(
    scram_server: PostgresServer, caplog: pytest.LogCaptureFixture, app_name: str
) -> None:
    """``postgresql://bob:<password with @ : / # % and a space>@127.0.0.1/...``
    authenticates as bob on 127.0.0.1 (nothing of it taken for the host), and
    no piece of it shows in the target, repr, health, settings, the Prometheus
    endpoint label or the logs."""
    caplog.set_level(logging.DEBUG)
    url = raw_url(scram_server, RAW)
    registry = CollectorRegistry()
    with Database(
        url,
        name="rawpw",
        min_size=1,
        max_size=1,
        metrics=PrometheusSink(registry),
        application_name=app_name,
    ) as db:
        assert db.fetchval("SELECT current_user") == "bob"
        assert db.pool.target == f"127.0.0.1:{scram_server.port}/postgres as bob"
        exported = generate_latest(registry).decode()
        assert f'endpoint="127.0.0.1:{scram_server.port}"' in exported
        shown = [repr(db), repr(db.pool), str(db.health()), str(db.stats()), exported]
    settings = DatabaseSettings(url=url)
    shown += [repr(settings), str(settings.masked()), settings.pool_kwargs()["conninfo"]]
    shown += [r.getMessage() for r in caplog.records]
    for text in shown:
        assert_no_piece(text)
    assert settings.pool_kwargs()["password"] == RAW


def test_a_wrong_unencoded_password_fails_without_showing_it(
    scram_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password written the same way fails as AuthenticationFailed on
    127.0.0.1; neither it nor its pieces are in the error chain or the logs."""
    caplog.set_level(logging.DEBUG)
    wrong = RAW.replace("Pq3yr", "Pq3yr-Wq2rong")
    db = Database(raw_url(scram_server, wrong), name="rawwrong", min_size=1, connect_timeout=3)
    try:
        with pytest.raises(AuthenticationFailed) as info:
            db.open(timeout=10)
        shown = texts_of(info.value) + repr(db) + str(db.health())
    finally:
        db.close()
    assert f"127.0.0.1:{scram_server.port}" in shown
    assert_no_piece(shown + "\n".join(r.getMessage() for r in caplog.records))


def test_cli_check_with_an_unencoded_password(scram_server: PostgresServer) -> None:
    """``pgharbor check URL --json`` with the raw password: checked as bob on
    127.0.0.1 and nothing of the password in the output; with a wrong one,
    exit 1 and still nothing of it."""
    runner = CliRunner()
    result = runner.invoke(app, ["check", raw_url(scram_server, RAW), "--json", "--timeout", "5"])
    assert result.exit_code in (0, 1), result.output  # 1: bob may lack privileges
    (db,) = json.loads(result.stdout)["databases"]
    assert db["reachable"] is True and db["user"] == "bob", db
    assert db["target"] == f"127.0.0.1:{scram_server.port}/postgres as bob"
    assert_no_piece(result.output)
    wrong = raw_url(scram_server, RAW + "-Wq2rong")
    result = runner.invoke(app, ["check", wrong, "--json", "--timeout", "5"])
    assert result.exit_code == 1
    (db,) = json.loads(result.stdout)["databases"]
    assert db["reachable"] is False and db["error"], db
    assert_no_piece(result.output)


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg", "psycopg2"])
async def test_every_driver_authenticates_with_the_unencoded_url(
    scram_server: PostgresServer, driver: str, app_name: str
) -> None:
    """Each driver gets the password split off the URL (not a re-built URL) and
    authenticates as bob on 127.0.0.1."""
    url = raw_url(scram_server, RAW)
    if driver == "psycopg2":
        with Database(url, driver=driver, min_size=1, application_name=app_name) as db:
            assert db.fetchval("SELECT current_user") == "bob"
            shown = repr(db) + str(db.health())
    else:
        async with AsyncDatabase(url, driver=driver, min_size=1, application_name=app_name) as adb:
            assert await adb.fetchval("SELECT current_user") == "bob"
            shown = repr(adb) + str(adb.health())
    assert_no_piece(shown)
