"""Every DatabaseSettings field, given a bad value, fails naming that field and the rule.

The table below has at least one bad value for each field (a test checks that
no field is missing), and each case runs twice: on `DatabaseSettings` itself
and nested in `HarborSettings`, where the path gains ``databases.x.``. A
mis-report (``max_size = -1`` blamed on ``min_size``) or a crash with another
error type (``AttributeError``) fails the sweep.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pgharbor import ConfigError
from pgharbor.config import DatabaseSettings, HarborSettings, load_settings

REPLICA = {"replicas": ["postgresql://r1.example/db"]}
MISSING = "/nonexistent/pgharbor-sweep.pem"

# (field, settings, expected field path, rule regex)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("url", {"url": 5}, "url", "must be a string, got int"),
    ("url", {"url": "nonsense"}, "url", "invalid connection string"),
    ("url", {"url": "postgresql://h:99999/db"}, "url.port", r"must be an integer in 1\.\.65535"),
    ("url", {"url": "postgresql://h/db?sslmode=bogus"}, "url.sslmode", "must be one of"),
    ("host", {"host": 5}, "host", "must be a string, got int"),
    ("host", {"host": "a\x00b"}, "host", "must not contain NUL"),
    ("port", {"port": "abc"}, "port", r"must be an integer in 1\.\.65535"),
    ("port", {"port": -1}, "port", r"must be an integer in 1\.\.65535"),
    ("port", {"port": 1.5}, "port", "must be a string, got float"),
    ("dbname", {"dbname": "d" * 64}, "dbname", "must be at most 63 bytes"),
    ("user", {"user": ["u"]}, "user", "must be a string, got list"),
    ("password", {"password": 5}, "password", "must be a string, got int"),
    ("sslmode", {"sslmode": "bogus"}, "sslmode", "input should be 'disable'"),
    (
        "sslrootcert",
        {"sslmode": "verify-full", "sslrootcert": MISSING},
        "sslrootcert",
        "file not found",
    ),
    ("sslcert", {"sslcert": MISSING}, "sslcert", "file not found"),
    ("sslkey", {"sslkey": MISSING}, "sslkey", "file not found"),
    ("service", {"service": 5}, "service", "must be a string, got int"),
    ("target_session_attrs", {"target_session_attrs": "x"}, "target_session_attrs", "input should"),
    ("connect_timeout", {"connect_timeout": -1}, "connect_timeout", "must be > 0"),
    ("connect_timeout", {"connect_timeout": math.nan}, "connect_timeout", "must be finite"),
    ("ignore_libpq_env", {"ignore_libpq_env": "yes"}, "ignore_libpq_env", "must be true or false"),
    ("primary", {"primary": "nonsense"}, "primary", "invalid connection string"),
    ("primary", {"primary": 5}, "primary", "must be a string, got int"),
    ("replicas", {"replicas": ["nonsense"]}, "replicas.0", "invalid connection string"),
    ("replicas", {"replicas": "postgresql://r/db"}, "replicas", "list"),
    ("reads", {"reads": "bogus"}, "reads", "input should be 'primary'"),
    ("reads", {"reads": "replica"}, "reads", "needs at least one entry in replicas"),
    ("probe_interval", {**REPLICA, "probe_interval": 0}, "probe_interval", "must be > 0"),
    ("probe_interval", {"probe_interval": 2.0}, "probe_interval", "applies to a database with"),
    ("probe_timeout", {**REPLICA, "probe_timeout": -1}, "probe_timeout", "must be > 0"),
    ("max_replica_lag", {**REPLICA, "max_replica_lag": -1}, "max_replica_lag", "must be >= 0"),
    (
        "max_replica_lag_bytes",
        {**REPLICA, "max_replica_lag_bytes": -1},
        "max_replica_lag_bytes",
        "must be >= 0",
    ),
    (
        "fallback_to_primary",
        {**REPLICA, "fallback_to_primary": 1},
        "fallback_to_primary",
        "must be true or false",
    ),
    ("ban_time", {**REPLICA, "ban_time": -1}, "ban_time", "must be >= 0"),
    ("read_your_writes", {**REPLICA, "read_your_writes": -1}, "read_your_writes", "must be >= 0"),
    ("balance", {**REPLICA, "balance": "random"}, "balance", "input should be 'round_robin'"),
    ("application_name", {"application_name": "snow☃"}, "application_name", "printable ASCII"),
    ("statement_timeout", {"statement_timeout": -1}, "statement_timeout", "must be >= 0"),
    ("lock_timeout", {"lock_timeout": "5 parsecs"}, "lock_timeout", "must be seconds or a"),
    (
        "idle_in_transaction_session_timeout",
        {"idle_in_transaction_session_timeout": "30d"},
        "idle_in_transaction_session_timeout",
        "must be at most",
    ),
    ("search_path", {"search_path": [""]}, "search_path", "must not be empty"),
    ("search_path", {"search_path": 5}, "search_path", "must be a list of schema names"),
    ("timezone", {"timezone": " "}, "timezone", "must not be empty"),
    (
        "default_transaction_isolation",
        {"default_transaction_isolation": "chaos"},
        "default_transaction_isolation",
        "input should be 'read committed'",
    ),
    ("client_encoding", {"client_encoding": "klingon"}, "client_encoding", "must be an encoding"),
    ("server_settings", {"server_settings": ["a"]}, "server_settings", "must be a table"),
    ("server_settings", {"server_settings": {"a b": "1"}}, "server_settings", "invalid setting"),
    ("min_size", {"min_size": -1}, "min_size", "must be >= 0"),
    ("min_size", {"min_size": 7, "max_size": 6}, "min_size", r"must be <= max_size \(6\)"),
    ("max_size", {"max_size": -1}, "max_size", "must be >= 1"),
    ("max_size", {"max_size": 0}, "max_size", "must be >= 1"),
    ("max_size", {"min_size": 0, "max_size": -1}, "max_size", "must be >= 1"),
    ("max_size", {"max_size": 10**6}, "max_size", "must be <= 10000"),
    ("max_size", {"max_size": 2.0}, "max_size", "must be an integer, got float"),
    ("timeout", {"timeout": 0}, "timeout", "must be > 0"),
    ("max_waiting", {"max_waiting": -1}, "max_waiting", "must be >= 0"),
    ("max_lifetime", {"max_lifetime": -1}, "max_lifetime", "must be > 0"),
    ("max_idle", {"max_idle": 0}, "max_idle", "must be > 0"),
    ("max_idle", {"max_idle": 90, "max_lifetime": 60}, "max_idle", "must be <= max_lifetime"),
    ("max_uses", {"max_uses": 0}, "max_uses", "must be >= 1"),
    ("check_window", {"check_window": -1}, "check_window", "must be >= 0"),
    ("check_timeout", {"check_timeout": 0}, "check_timeout", "must be > 0"),
    ("keepalive", {"keepalive": -1}, "keepalive", "must be > 0"),
    ("leak_threshold", {"leak_threshold": 0}, "leak_threshold", "must be > 0"),
    ("reconnect_timeout", {"reconnect_timeout": 0}, "reconnect_timeout", "must be > 0"),
    (
        "reconnect_timeout",
        {"connect_timeout": 20, "reconnect_timeout": 5},
        "reconnect_timeout",
        "must be >= connect_timeout",
    ),
    ("driver", {"driver": "mysql"}, "driver", "input should be 'psycopg'"),
    ("pgbouncer", {"pgbouncer": "yes"}, "pgbouncer", "must be true or false"),
    ("guard", {"guard": 5}, "guard", "must be a pgharbor.Guard or a table of its options"),
    ("guard", {"guard": {"max_rows": -1}}, "guard.max_rows", "must be a whole number >= 1"),
    (
        "pgbouncer_prepared_statements",
        {"pgbouncer_prepared_statements": True},
        "pgbouncer_prepared_statements",
        "applies with pgbouncer = true",
    ),
    ("minimum_version", {"minimum_version": 12}, "minimum_version", "PostgreSQL major version"),
    ("retry", {"retry": {"max_attempts": 0}}, "retry.max_attempts", "must be >= 1"),
    ("retry", {"retry": [3]}, "retry", "input should be a valid dictionary"),
    ("breaker", {"breaker": {"reset_timeout": 0}}, "breaker.reset_timeout", "must be > 0"),
    ("breaker", {"breaker": {"tripwire": 1}}, "breaker.tripwire", "unknown setting"),
    (
        "autoscale",
        {"min_size": 4, "max_size": 4, "autoscale": True},
        "autoscale",
        r"max_size \(4\) must be above min_size",
    ),
    ("autoscale", {"autoscale": 3}, "autoscale", "input should be a valid dictionary"),
    (
        "autoscale",
        {"max_size": 9, "autoscale": {"shrink_after": 0.1}},
        "autoscale.shrink_after",
        r"must be >= grow_after \(0.5 s\)",
    ),
    ("autoscale", {"autoscale": {"headroom": 20}}, "autoscale.headroom", r"in \[0, 10\]"),
    ("autoscale", {"autoscale": {"interval": 0}}, "autoscale.interval", "must be > 0"),
    ("autoscale", {"autoscale": {"enabled": "yes"}}, "autoscale.enabled", "true or false"),
    ("slow_query", {"slow_query": -1}, "slow_query", "must be >= 0"),
    ("log_parameters", {"log_parameters": "no"}, "log_parameters", "must be true or false"),
]


def test_the_sweep_covers_every_field() -> None:
    """Each DatabaseSettings field has at least one bad value in the sweep."""
    assert set(DatabaseSettings.model_fields) == {field for field, *_ in CASES}


@pytest.mark.parametrize(("field", "settings", "path", "rule"), CASES, ids=lambda v: str(v)[:40])
def test_a_bad_value_names_its_field_and_rule(
    field: str, settings: dict[str, Any], path: str, rule: str
) -> None:
    """The first problem reported is the bad field, with the rule it breaks."""
    with pytest.raises(ConfigError) as info:
        DatabaseSettings(**settings)
    assert info.value.field == path, str(info.value)
    assert _matches(rule, str(info.value).splitlines()[0]), str(info.value)
    with pytest.raises(ConfigError) as nested:
        HarborSettings(databases={"x": settings})
    assert nested.value.field == f"databases.x.{path}", str(nested.value)
    assert _matches(rule, str(nested.value).splitlines()[0]), str(nested.value)


def _matches(rule: str, line: str) -> bool:
    import re

    return re.search(rule, line, re.IGNORECASE) is not None


@pytest.mark.parametrize(
    ("toml", "path", "rule"),
    [
        ("max_size = -1", "databases.x.max_size", "must be >= 1, got -1"),
        ("max_size = -1\nmin_size = 0", "databases.x.max_size", "must be >= 1, got -1"),
        ("min_size = -3", "databases.x.min_size", "must be >= 0, got -3"),
        ('kwargs = ["sslmode=require"]', "databases.x.kwargs", "unknown setting"),
        ("max_size = 2.5", "databases.x.max_size", "must be an integer, got float"),
        ('max_size = "many"', "databases.x.max_size", "input should be a valid integer"),
        ("probe_interval = -1\nreplicas = ['host=r']", "databases.x.probe_interval", "> 0"),
    ],
)
def test_toml_values_are_blamed_on_the_right_field(
    tmp_path: Path, toml: str, path: str, rule: str
) -> None:
    """Values from a TOML file are reported with their own dotted path."""
    file = tmp_path / "s.toml"
    file.write_text(f"[databases.x]\n{toml}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(file, env={}, dotenv=None)
    assert info.value.field == path, str(info.value)
    assert rule in str(info.value).splitlines()[0]
