"""The bad-input catalogue (research/reliability.md §8, B1-B32) as config tests.

Rows about the running system (B8-B13, B15, B28, B31) are covered here only as
far as they are configuration: the settings are accepted (the failure belongs
to connect time) or the row is skipped with the reason.
"""

from __future__ import annotations

import logging
import math
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgharbor import ConfigError
from pgharbor.config import DatabaseSettings, HarborSettings, load_settings


def bad(match: str, **settings: Any) -> ConfigError:
    """Assert DatabaseSettings(**settings) fails with a message matching ``match``."""
    with pytest.raises(ConfigError, match=match) as info:
        DatabaseSettings(**settings)
    assert isinstance(info.value, ValueError)
    return info.value


def load(env: dict[str, str] | None = None, **overrides: Any) -> HarborSettings:
    """load_settings isolated from the real environment and working directory."""
    return load_settings(None, env=env or {}, dotenv=None, **overrides)


# -- connection strings -------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn", ["hello", "dbname=foo bar", "foo=bar", "password='x", "=value", "host=h port"]
)
def test_b1_malformed_keyword_dsn(dsn: str) -> None:
    """B1: a malformed keyword DSN is a ConfigError on the url field."""
    bad(r"^url: invalid connection string", url=dsn)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p%zzx@h/db",
        "postgresql://u:a%00b@h/db",
        "postgresql://u:pw@[::1/db",
        "postgresql://h/db?port=5432=x",
        "mysql://h/db",
    ],
)
def test_b2_malformed_uri(url: str) -> None:
    """B2: a malformed URI is a ConfigError on the url field."""
    bad(r"^url", url=url)


def test_b3_unknown_parameter() -> None:
    """B3: an unknown libpq parameter is named in the error."""
    bad('invalid connection option "passwrd"', url="host=h passwrd=x")
    bad("unknown setting", passwrd="x")


@pytest.mark.parametrize(
    "key", ["sslmode", "target_session_attrs", "channel_binding", "load_balance_hosts"]
)
def test_b4_invalid_enum(key: str) -> None:
    """B4: enum parameters are checked at construction, in URLs and fields."""
    bad(rf"^url\.{key}: must be one of", url=f"postgresql://h/db?{key}=bogus")
    if key in ("sslmode", "target_session_attrs"):
        bad(rf"^{key}: input should be", **{key: "bogus"})


@pytest.mark.parametrize("port", ["abc", "0", "-1", "99999", "65536", 0, 70000])
def test_b5_invalid_port(port: Any) -> None:
    """B5: ports outside 1..65535 fail, as field or in the URL."""
    bad(r"^port: must be an integer in 1\.\.65535", port=port)
    if isinstance(port, str) and port.lstrip("-").isdigit():
        bad(r"^url\.port: must be an integer", url=f"host=h port={port}")


def test_b5_port_bool_rejected() -> None:
    """B5: a bool is not a port."""
    bad("^port: must be a string", port=True)


def test_b6_host_port_mismatch() -> None:
    """B6: a port list must match the host list."""
    bad("could not match 3 port numbers to 2 hosts", host="a,b", port="1,2,3")
    bad("could not match 3 port numbers to 2 hosts", url="host=a,b port=1,2,3")
    assert DatabaseSettings(host="a,b", port="1,2").conninfo_params()["port"] == "1,2"


def test_b7_empty_endpoint() -> None:
    """B7: empty means libpq defaults; with ignore_libpq_env a host is required."""
    assert "host" not in DatabaseSettings(url="").conninfo_params()
    bad("^host: is required with ignore_libpq_env", ignore_libpq_env=True)


@pytest.mark.parametrize(
    "settings",
    [
        {"host": "127.0.0.1", "port": 1},  # B8 nothing listening
        {"host": "x.invalid"},  # B9 unresolvable
        {"host": "h", "password": "wrong", "user": "nobody"},  # B10
        {"host": "h", "dbname": "does_not_exist"},  # B11
    ],
)
def test_b8_to_b11_environment_errors_are_not_config_errors(settings: dict[str, Any]) -> None:
    """B8-B11: a wrong-but-valid endpoint is accepted; it fails at connect time."""
    assert DatabaseSettings(**settings).conninfo_params()["host"] == settings["host"]


@pytest.mark.parametrize("version", [12, 9, 0, 100])
def test_b12_minimum_version(version: int) -> None:
    """B12: minimum_version below the supported 13 (or absurd) is rejected."""
    bad("^minimum_version: must be a PostgreSQL major version", minimum_version=version)
    assert DatabaseSettings(minimum_version=16).minimum_version == 16


def test_b13_non_postgres_server_is_not_config() -> None:
    """B13: a port that speaks HTTP is a connect-time failure, not config."""
    assert DatabaseSettings(host="localhost", port=80).conninfo_params()["port"] == "80"


@pytest.mark.parametrize("mode", ["verify-full", "verify-ca"])
def test_b14_missing_root_certificate(mode: str, tmp_path: Path) -> None:
    """B14: verifying against a root certificate file that is missing fails."""
    missing = str(tmp_path / "nonexistent.crt")
    bad("^sslrootcert: file not found", sslmode=mode, sslrootcert=missing)
    bad("^sslrootcert: file not found", url=f"host=h sslmode={mode} sslrootcert={missing}")
    bad("^sslcert: file not found", sslcert=missing)
    bad("^sslkey: file not found", sslkey=missing)
    bad(
        "^sslrootcert: 'system' requires sslmode verify-full",
        sslmode="require",
        sslrootcert="system",
    )


def test_b15_sslmode_disable_is_honoured_but_never_chosen_for_you() -> None:
    """B15: an explicit disable is passed as given (the server refuses it at connect);
    the production profile never picks a weaker mode than require."""
    assert DatabaseSettings(sslmode="disable").conninfo_params()["sslmode"] == "disable"
    assert (
        load(profile="production", databases={"x": {"host": "h"}}).database().sslmode == "require"
    )


# -- pool sizing and timing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_size": -1}, "^min_size: must be >= 0"),
        ({"max_size": 0}, "^max_size: must be >= 1"),
        ({"min_size": 6, "max_size": 5}, r"^min_size: must be <= max_size \(5\)"),
        ({"min_size": 0, "max_size": 0}, "^max_size: must be >= 1"),
        ({"max_waiting": -1}, "^max_waiting: must be >= 0"),
        ({"max_uses": 0}, "^max_uses: must be >= 1"),
    ],
)
def test_b16_sizes(settings: dict[str, int], message: str) -> None:
    """B16: impossible pool sizes are rejected by PoolOptions' rules."""
    bad(message, **settings)


def test_b16_sizes_from_the_environment_name_the_database() -> None:
    """B16: the dotted path names the database the bad size belongs to."""
    with pytest.raises(ConfigError, match=r"^databases\.source\.max_size: must be >= 1"):
        load({"PGHARBOR_SOURCE__MAX_SIZE": "0"})


@pytest.mark.parametrize("size", [10**6, 2**63])
def test_b17_huge_sizes(size: int) -> None:
    """B17: max_size above the hard cap (10 000) is rejected."""
    bad("^max_size: must be <= 10000", max_size=size)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", -1),
        ("timeout", 0),
        ("connect_timeout", -5),
        ("connect_timeout", 0),
        ("max_idle", -1),
        ("max_lifetime", 0),
        ("check_timeout", 0),
        ("keepalive", -1),
        ("leak_threshold", 0),
        ("reconnect_timeout", -1),
        ("check_window", -0.1),
        ("statement_timeout", -1),
        ("lock_timeout", "-5s"),
    ],
)
def test_b18_negative_or_zero_timeouts(field: str, value: Any) -> None:
    """B18: negative timeouts fail; 0 fails where it is not documented as "off"."""
    bad(f"^{field}: must be", **{field: value})


def test_b18_zero_means_off_where_documented() -> None:
    """B18: 0 turns session timeouts off and check_window pings every checkout."""
    db = DatabaseSettings(statement_timeout=0, check_window=0)
    assert db.statement_timeout == "0ms" and db.pool_options().check_window == 0


def test_b19_tiny_and_huge_timeouts() -> None:
    """B19: tiny pool timeouts are allowed, inf is rejected (None means no limit),
    and so are waits the runtime cannot make (OverflowError from every lock wait
    past threading.TIMEOUT_MAX, every ping failing past poll()'s int32 ms) and
    background periods short enough to spin; session durations below 1 ms or
    above int32 ms are rejected."""
    assert DatabaseSettings(timeout=1e-9, max_idle=1e7).pool_options().timeout == 1e-9
    bad(r"^timeout: must be <= 1e\+06 seconds", timeout=9.3e9)
    bad(r"^check_timeout: must be <= 1e\+06 seconds", check_timeout=1e10)
    bad(r"^max_idle: must be <= 1e\+07 seconds", max_idle=1e12)
    bad(r"^keepalive: must be >= 0.01 seconds", keepalive=1e-9)
    bad("^timeout: must be finite", timeout=math.inf)
    bad("^max_lifetime: must be finite", max_lifetime=math.inf)
    assert DatabaseSettings(max_lifetime=None).max_lifetime is None
    bad(r"^statement_timeout: must be 0 \(off\) or at least 1ms", statement_timeout=1e-6)
    bad("^statement_timeout: must be at most", statement_timeout="30d")
    bad("^statement_timeout: must be finite", statement_timeout=math.inf)
    # Refused, never clamped silently (it used to become 2**31 - 1).
    bad(r"^connect_timeout: must be <= 1e\+06 seconds", connect_timeout=1e12)


@pytest.mark.parametrize(
    "field",
    [
        "timeout",
        "max_lifetime",
        "max_idle",
        "check_window",
        "check_timeout",
        "keepalive",
        "leak_threshold",
        "connect_timeout",
        "reconnect_timeout",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
    ],
)
def test_b20_nan_anywhere(field: str) -> None:
    """B20: NaN is rejected by every numeric setting."""
    bad(f"^{field}: must be finite", **{field: math.nan})


@pytest.mark.parametrize("field", ["initial_delay", "max_delay", "multiplier", "jitter"])
def test_b20_nan_in_policies(field: str) -> None:
    """B20: NaN is rejected inside the retry and breaker sections too."""
    bad(rf"^retry\.{field}: must be finite", retry={field: math.nan})
    bad(r"^breaker\.reset_timeout: must be finite", breaker={"reset_timeout": math.nan})


def test_b20_nan_from_text() -> None:
    """B20: 'nan' and 'inf' written as text are rejected as well."""
    with pytest.raises(ConfigError, match=r"^databases\.x\.timeout: must be finite"):
        load({"PGHARBOR_X__TIMEOUT": "nan"})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_size", "5", "must be an integer, got str"),
        ("max_size", True, "must be an integer, got bool"),
        ("max_size", 5.0, "must be an integer, got float"),
        ("max_size", Decimal(5), "must be an integer, got Decimal"),
        ("timeout", Decimal("1.5"), "must be a number, got Decimal"),
        ("timeout", "30", "must be a number, got str"),
        ("timeout", False, "must be a number, got bool"),
        ("timeout", None, "input should be a valid number"),
        ("pgbouncer", 1, "must be true or false, got int"),
        ("retry", {"max_attempts": True}, "must be an integer, got bool"),
        ("breaker", {"failure_threshold": "3"}, "must be an integer, got str"),
    ],
)
def test_b21_wrong_types(field: str, value: Any, message: str) -> None:
    """B21: Python values are strict: no text numbers, bools, Decimals or None."""
    bad(message, **{field: value})


def test_b21_text_is_parsed_from_text_sources() -> None:
    """B21: the same values written in the environment are parsed (lax), but a
    float for an integer still fails."""
    db = load({"PGHARBOR_X__MAX_SIZE": "5", "PGHARBOR_X__PGBOUNCER": "on"}).database()
    assert db.max_size == 5 and db.pgbouncer is True
    with pytest.raises(
        ConfigError, match=r"^databases\.x\.max_size: input should be a valid integer"
    ):
        load({"PGHARBOR_X__MAX_SIZE": "5.5"})


def test_b22_inconsistent_combinations() -> None:
    """B22: contradictions between values the user chose are rejected."""
    bad(r"^max_idle: must be <= max_lifetime \(60\.0\)", max_idle=120, max_lifetime=60)
    bad(r"^reconnect_timeout: must be >= connect_timeout", connect_timeout=30, reconnect_timeout=10)
    bad(r"^retry\.max_delay: must be >= initial_delay", retry={"initial_delay": 5, "max_delay": 1})
    # A chosen value never clashes with a default.
    assert DatabaseSettings(max_lifetime=60).pool_options().max_idle == 600


# -- names, text and encoding --------------------------------------------------------


@pytest.mark.parametrize("field", ["host", "dbname", "user", "password", "url", "timezone"])
def test_b23_nul_surrogates_bytes(field: str) -> None:
    """B23: NUL, lone surrogates and bytes are rejected in every text field."""
    bad(f"^{field}: must not contain NUL", **{field: "a\x00b"})
    bad(f"^{field}: must be valid Unicode", **{field: "a\udcffb"})
    bad(f"^{field}: must be a string, got bytes", **{field: b"abc"})


def test_b23_long_values() -> None:
    """B23: names longer than 63 bytes (which the server truncates) and
    megabyte-sized values are rejected."""
    bad("^dbname: must be at most 63 bytes", dbname="d" * 64)
    bad("^user: must be at most 63 bytes", user="☃" * 22)
    bad("^password: must be at most 65535 bytes", password="p" * 10**6)
    bad("^search_path: schema names must be at most 63 bytes", search_path=["s" * 64])


@pytest.mark.parametrize("name", ["tab\there", "bell\x07", "snow☃", "x" * 64])
def test_b24_application_name(name: str) -> None:
    """B24: application_name must reach the server intact: printable ASCII, <= 63."""
    bad("^application_name: must be", application_name=name)


@pytest.mark.parametrize("encoding", ["klingon", "utf-9", ""])
def test_b25_client_encoding(encoding: str) -> None:
    """B25: an encoding PostgreSQL does not know is rejected at construction."""
    bad("^client_encoding: must be an encoding PostgreSQL supports", client_encoding=encoding)
    for ok in ("UTF8", "utf-8", "LATIN1", "win1252", "SQL_ASCII"):
        assert DatabaseSettings(client_encoding=ok).client_encoding == ok


def test_b26_name_collisions() -> None:
    """B26: database names are identifiers, unique ignoring case; a replica may
    not be a primary (its own or another database's), nor listed twice."""
    with pytest.raises(ConfigError, match="duplicate name"):
        HarborSettings(databases={"Main": {}, "main": {}})
    with pytest.raises(ConfigError, match="names are letters, digits"):
        HarborSettings(databases={"bad name": {}})
    with pytest.raises(
        ConfigError, match=r"^databases\.b\.replicas\.0: is the primary of database 'a'"
    ):
        HarborSettings(
            databases={"a": {"host": "h1"}, "b": {"host": "h2", "replicas": ["postgresql://h1"]}}
        )
    bad(r"^replicas\.0: is the same server as the primary", host="h", replicas=["host=h"])
    bad(r"^replicas\.1: is the same server as replicas\.0", replicas=["host=r", "host=r port=5432"])
    bad(
        r"^server_settings: 'search_path' has its own setting", server_settings={"search_path": "x"}
    )
    bad("^server_settings: invalid setting name", server_settings={"x; drop": "1"})


def test_b27_replica_reads_without_replicas() -> None:
    """B27: reads='replica' with no replica listed is rejected."""
    bad("^reads: 'replica' needs at least one entry in replicas", reads="replica")
    db = DatabaseSettings(reads="replica", replicas=["postgresql://r1/db"])
    assert db.reads == "replica"
    bad(r"^replicas\.0: invalid connection string", replicas=["nonsense"])


@pytest.mark.skip(reason="B28: callbacks are pool arguments, not settings (pool tests cover them)")
def test_b28_callbacks() -> None:
    """B28: wrong-kind callbacks (not configuration)."""


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"max_attempts": 0}, r"^retry\.max_attempts: must be >= 1"),
        ({"max_attempts": -1}, r"^retry\.max_attempts: must be >= 1"),
        ({"multiplier": 0.5}, r"^retry\.multiplier: must be >= 1"),
        ({"jitter": 1.5}, r"^retry\.jitter: must be in \[0, 1\)"),
        ({"jitter": 1}, r"^retry\.jitter: must be in \[0, 1\)"),
        ({"initial_delay": -1}, r"^retry\.initial_delay: must be >= 0"),
        ({"initial_delay": 2, "max_delay": 1}, r"^retry\.max_delay: must be >= initial_delay"),
    ],
)
def test_b29_retry_policy(retry: dict[str, Any], message: str) -> None:
    """B29: retry policy nonsense is rejected."""
    bad(message, retry=retry)


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        ({"failure_threshold": 0}, r"^breaker\.failure_threshold: must be >= 1"),
        ({"reset_timeout": -1}, r"^breaker\.reset_timeout: must be > 0"),
        ({"reset_timeout": 0}, r"^breaker\.reset_timeout: must be > 0"),
        ({"half_open_max": 0}, r"^breaker\.half_open_max: must be >= 1"),
    ],
)
def test_b30_breaker_policy(breaker: dict[str, Any], message: str) -> None:
    """B30: breaker nonsense is rejected."""
    bad(message, breaker=breaker)


@pytest.mark.skip(reason="B31: pool lifecycle (use after close), not configuration")
def test_b31_lifecycle() -> None:
    """B31: pool lifecycle misuse (not configuration)."""


def test_b32_environment_cannot_weaken_explicit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """B32: PGSSLMODE, PGHOST, PGOPTIONS and PGHARBOR_* pollution never change
    what was configured explicitly: explicit values are always passed to libpq."""
    monkeypatch.setenv("PGSSLMODE", "disable")
    monkeypatch.setenv("PGHOST", "evil.example")
    monkeypatch.setenv("PGOPTIONS", "-c search_path=evil")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "0")
    monkeypatch.setenv("PGHARBOR_MAIN__SSLMODE", "disable")
    db = DatabaseSettings(host="good", sslmode="verify-full", search_path=["app"])
    seen = conninfo_to_dict(make_conninfo("", **db.conninfo_params()))
    assert seen["sslmode"] == "verify-full" and seen["host"] == "good"
    assert seen["options"] == "-c search_path=app" and seen["connect_timeout"] == "10"
    settings = load_settings(None, dotenv=None, databases={"main": {"sslmode": "verify-full"}})
    assert settings.database("main").sslmode == "verify-full"


# -- secrets never leak ----------------------------------------------------------------

SECRET = f"S3cr3t-{uuid.uuid4().hex}"


def _texts(exc: BaseException | None) -> list[str]:
    """Everything an exception shows, down its whole chain."""
    out: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out += [str(exc), repr(exc), *map(repr, exc.args), repr(vars(exc))]
        exc = exc.__cause__ or exc.__context__
    return out


def _toml(tmp_path: Path) -> HarborSettings:
    path = tmp_path / "s.toml"
    path.write_text(f'[databases.x]\nurl = "postgresql://u:{SECRET}@h:99999/db"\n')
    return load_settings(path, env={}, dotenv=None)


LEAKS: list[Any] = [
    {"url": f"postgresql://u:{SECRET}@[::1/db"},
    {"url": f"postgresql://u:p%zz{SECRET}@h/db"},
    {"url": f"postgresql://u:{SECRET}%00x@h/db"},
    {"url": f"host=h password={SECRET} passwrd=x"},
    {"url": f"host=h password='{SECRET}"},
    {"url": f"postgresql://u@h/db?password={SECRET}&sslmode=bogus"},
    {"url": f"postgresql://u:{SECRET}@h:99999/db"},
    {"url": f"host=h sslpassword={SECRET} sslmode=bogus"},
    {"password": SECRET + "\x00"},
    {"password": SECRET + "\udcff"},
    {"password": SECRET, "max_size": 0},
    {"pasword": SECRET},
    {"primary": f"postgresql://u:{SECRET}@[bad"},
    {"replicas": [f"postgresql://u:{SECRET}@h:0/db"]},
    {"url": f"postgresql://u:{SECRET}@h/db", "host": "h", "replicas": ["host=h"]},
    {"env": {"PGHARBOR_A__PASSWORD": SECRET, "PGHARBOR_A__MAX_SIZE": "-1"}},
    {"env": {"PGHARBOR_A__URL": f"postgresql://u:{SECRET}@h/db", "PGHARBOR_A__PASWORD": "x"}},
    {"env": {"PGHARBOR_A__REPLICAS": f'["postgresql://u:{SECRET}@h/db"'}},
    {"env": {"POSTGRES_PASSWORD": SECRET, "POSTGRES_PORT": "abc"}},
    "toml",
]


@pytest.mark.parametrize("case", range(len(LEAKS)))
def test_secret_never_in_errors_or_logs(
    case: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """§7: a unique password fed through every error path appears nowhere in the
    exception text, its chain, its repr, or the log records."""
    caplog.set_level(logging.DEBUG)
    given = LEAKS[case]
    with pytest.raises(ConfigError) as info:
        if given == "toml":
            _toml(tmp_path)
        elif "env" in given:
            load(given["env"])
        else:
            DatabaseSettings(**given)
    for text in _texts(info.value):
        assert SECRET not in text
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_secret_never_in_valid_settings(caplog: pytest.LogCaptureFixture) -> None:
    """§7: valid settings holding secrets never show them: repr, str, dumps,
    masked, the pool's conninfo string, or the loader's debug log."""
    caplog.set_level(logging.DEBUG)
    env = {
        "PGHARBOR_A__URL": f"postgresql://u:{SECRET}@h/db?sslpassword={SECRET}",
        "PGHARBOR_A__REPLICAS": f"postgresql://u:{SECRET}@r/db",
        "PGHARBOR_B__PASSWORD": SECRET,
    }
    settings = load(env)
    a = settings.database("a")
    texts = [
        repr(settings),
        str(settings),
        repr(a),
        str(a),
        str(a.model_dump()),
        a.model_dump_json(),
        settings.model_dump_json(),
        str(settings.masked()),
        str(a.to_dict()),
        a.pool_kwargs()["conninfo"],
        caplog.text,
    ]
    assert "settings loaded" in caplog.text
    for text in texts:
        assert SECRET not in text
    assert a.pool_kwargs()["password"] == SECRET
    assert settings.database("b").conninfo_params()["password"] == SECRET


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, "5", True])
async def test_b18_per_call_timeouts_are_checked_before_anything_happens(value: Any) -> None:
    """B18: a per-call timeout (connection, acquire, open, wait, close) is
    checked at the call, naming it: a NaN deadline would never expire, and a
    string would fail only once the caller had queued. Nothing is started."""
    from pgharbor import AsyncPool, Pool

    apool = AsyncPool("host=127.0.0.1 port=1", name="calls")
    with pytest.raises(ConfigError, match=r"^timeout: must be"):
        apool.connection(timeout=value)
    with pytest.raises(ConfigError, match=r"^timeout: must be"):
        await apool.acquire(timeout=value)
    with pytest.raises(ConfigError, match=r"^timeout: must be"):
        await apool.open(timeout=value)
    assert repr(apool).startswith("<AsyncPool 'calls' new ")  # open() did not start
    with pytest.raises(ConfigError, match=r"^timeout: must be"):
        await apool.close(timeout=value)
    pool = Pool("host=127.0.0.1 port=1", name="calls")
    with pytest.raises(ConfigError, match=r"^timeout: must be"):
        pool.connection(timeout=value)
    with pytest.raises(ConfigError, match=r"^timeout: must be"):
        pool.wait(timeout=value)
    await apool.close()
    pool.close()
    assert apool.connection(timeout=0) is not None  # 0: do not wait (valid)
