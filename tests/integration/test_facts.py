"""Server facts, the sizing lint and the version check against a real server."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import sql

from pgharbor.errors import UnsupportedServerVersion
from pgharbor.facts import (
    FACTS_QUERY,
    ServerFacts,
    check_version,
    parse_facts,
    read_facts_async,
    read_facts_sync,
    sizing_warnings,
    to_dollar,
)
from pgharbor.version import MINIMUM_SUPPORTED, ServerVersion


def facts_via_psycopg(conninfo: str) -> ServerFacts:
    """Open, read the facts, close."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return read_facts_sync(lambda q, p: conn.execute(q, p).fetchall())


@pytest.fixture
def role(pg_server: Any) -> Iterator[str]:
    """A plain LOGIN role, dropped afterwards."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    pg_server.create_role(name)
    try:
        yield name
    finally:
        pg_server.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_facts_match_show(pg_database: Any, app_name: str) -> None:
    """Every fact agrees with SHOW and the functions it comes from."""
    info = pg_database.conninfo(
        application_name=app_name,
        options="-c statement_timeout=5min -c idle_in_transaction_session_timeout=1500",
    )
    with psycopg.connect(info, autocommit=True) as conn:
        (row,) = conn.execute(FACTS_QUERY.sql, FACTS_QUERY.params).fetchall()
        facts = parse_facts(row)

        def show(name: str) -> str:
            return str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0])  # type: ignore[index]

        assert facts.version.num == int(show("server_version_num"))
        assert facts.max_connections == int(show("max_connections"))
        assert facts.superuser_reserved_connections == int(show("superuser_reserved_connections"))
        assert facts.server_encoding == show("server_encoding")
        assert facts.timezone == show("TimeZone")
        ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert facts.tls is bool(ssl and ssl[0])
    assert (facts.database, facts.user, facts.superuser) == (pg_database.name, "postgres", True)
    assert facts.statement_timeout_ms == 300_000
    assert facts.idle_in_transaction_session_timeout_ms == 1500
    assert facts.idle_session_timeout_ms is None  # 0 = off by default
    assert facts.in_recovery is False
    assert facts.role_connection_limit is None and facts.database_connection_limit is None
    assert facts.database_backends == 1
    assert facts.backends >= 1
    assert facts.to_dict()["version"] == str(facts.version)


def test_backends_are_counted(pg_database: Any, app_name: str) -> None:
    """Two more sessions on the fresh database show in both counts."""
    info = pg_database.conninfo(application_name=app_name)
    with psycopg.connect(info), psycopg.connect(info):
        facts = facts_via_psycopg(info)
    assert facts.database_backends == 3
    assert facts.backends >= 3


async def test_asyncpg_reads_the_same_facts(
    pg_server: Any, pg_database: Any, app_name: str
) -> None:
    """read_facts_async over asyncpg (with to_dollar) agrees with psycopg."""
    conn = await asyncpg.connect(
        host=pg_server.host,
        port=pg_server.port,
        user="postgres",
        database=pg_database.name,
        server_settings={"application_name": app_name},
    )
    try:
        via_asyncpg = await read_facts_async(lambda q, p: conn.fetch(to_dollar(q), *p))
    finally:
        await conn.close()
    via_psycopg = facts_via_psycopg(pg_database.conninfo(application_name=app_name))
    # Session counts move between the two reads; everything else must match.
    assert dataclasses.replace(via_asyncpg, backends=0, database_backends=0) == (
        dataclasses.replace(via_psycopg, backends=0, database_backends=0)
    )


def test_idle_session_timeout_is_linted(pg_server: Any, app_name: str) -> None:
    """With idle_session_timeout=1s the lint warns about pooled idle connections."""
    if not pg_server.version.major >= 14:
        pytest.skip("idle_session_timeout is PostgreSQL 14+")
    pg_server.set("idle_session_timeout", "1s")
    try:
        facts = facts_via_psycopg(pg_server.conninfo(application_name=app_name))
    finally:
        pg_server.reset("idle_session_timeout")
    assert facts.idle_session_timeout_ms == 1000
    (warning,) = sizing_warnings(facts, max_size=5, max_idle=600.0)
    assert "idle_session_timeout is 1s" in warning
    assert sizing_warnings(facts, 5, 0.5, keepalive=0.5, min_size=2) == []


def test_max_connections_is_linted(pg_server: Any, app_name: str) -> None:
    """Pools asking for more than max_connections minus reserves are flagged."""
    facts = facts_via_psycopg(pg_server.conninfo(application_name=app_name))
    assert sizing_warnings(facts, max_size=2, max_idle=600.0) == []
    (warning,) = sizing_warnings(facts, max_size=facts.max_connections, max_idle=None, pools=2)
    assert f"max_connections={facts.max_connections}" in warning


def test_connection_limits_are_read_and_linted(
    pg_server: Any, pg_database: Any, role: str, app_name: str
) -> None:
    """CONNECTION LIMIT on the role and the database show up and are linted."""
    pg_server.execute(
        sql.SQL("ALTER ROLE {} CONNECTION LIMIT 3").format(sql.Identifier(role)),
    )
    pg_server.execute(
        sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 4").format(sql.Identifier(pg_database.name)),
    )
    facts = facts_via_psycopg(pg_database.conninfo(user=role, application_name=app_name))
    assert (facts.user, facts.superuser) == (role, False)
    assert (facts.role_connection_limit, facts.database_connection_limit) == (3, 4)
    warnings = sizing_warnings(facts, max_size=5, max_idle=None)
    assert [w.split("CONNECTION LIMIT ")[1] for w in warnings] == [
        f"3 of role {role!r}",
        f"4 of database {pg_database.name!r}",
    ]


def test_version_check(pg_server: Any, app_name: str) -> None:
    """The test server passes the version check; a 12.22 is refused by name."""
    facts = facts_via_psycopg(pg_server.conninfo(application_name=app_name))
    assert facts.version.num == pg_server.version.num
    assert check_version(facts.version) is facts.version
    assert facts.version.is_compatible(MINIMUM_SUPPORTED)
    with pytest.raises(UnsupportedServerVersion) as info:
        check_version(ServerVersion(120022))
    assert str(info.value) == "PostgreSQL 12.22 is older than the minimum supported 13"
    assert facts.version.has("idle_session_timeout") is (facts.version.major >= 14)
