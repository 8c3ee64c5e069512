"""pgharbor.config: settings models, conninfo building, sources and profiles."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgharbor import ConfigError, Pool
from pgharbor.config import (
    PROFILES,
    BreakerSettings,
    DatabaseSettings,
    HarborSettings,
    RetrySettings,
    load_settings,
)

URL = "postgresql://app:pw-in-url@db.example:5433/orders?sslmode=require"


def final(params: dict[str, str]) -> dict[str, Any]:
    """What libpq sees after the params are joined into one string."""
    return conninfo_to_dict(make_conninfo("", **params))


def load(tmp_path: Path, env: dict[str, str] | None = None, **kw: Any) -> HarborSettings:
    """load_settings isolated from the real environment and working directory."""
    return load_settings(kw.pop("path", None), env=env or {}, dotenv=kw.pop("dotenv", None), **kw)


# -- one database ---------------------------------------------------------------


def test_defaults() -> None:
    """An empty DatabaseSettings means libpq defaults plus pgharbor's own."""
    db = DatabaseSettings()
    assert db.conninfo_params() == {"application_name": "pgharbor", "connect_timeout": "10"}
    options = db.pool_options()
    assert (options.min_size, options.max_size, options.timeout) == (5, 5, 30.0)
    assert db.retry == RetrySettings() and db.breaker == BreakerSettings()


def test_explicit_fields_override_the_url() -> None:
    """host/port/... given as fields win over the URL's."""
    db = DatabaseSettings(url=URL, host="other", port=6432, sslmode="verify-full")
    params = db.conninfo_params()
    assert params["host"] == "other" and params["port"] == "6432"
    assert params["sslmode"] == "verify-full" and params["dbname"] == "orders"
    assert params["password"] == "pw-in-url"


def test_url_application_name_kept_unless_set() -> None:
    """The default application_name does not override one in the URL."""
    url = "postgresql://h/db?application_name=from-url"
    assert DatabaseSettings(url=url).conninfo_params()["application_name"] == "from-url"
    db = DatabaseSettings(url=url, application_name="mine")
    assert db.conninfo_params()["application_name"] == "mine"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (5, "5000ms"),
        (0.25, "250ms"),
        ("250ms", "250ms"),
        ("2min", "120000ms"),
        ("1.5s", "1500ms"),
        ("1h", "3600000ms"),
        ("3", "3000ms"),
        (0, "0ms"),
    ],
)
def test_durations_normalised_to_milliseconds(given: Any, stored: str) -> None:
    """Seconds or PostgreSQL durations become '<n>ms' (a bare number is seconds)."""
    assert DatabaseSettings(statement_timeout=given).statement_timeout == stored


def test_session_settings_in_options() -> None:
    """Session settings travel as escaped -c pairs in the options parameter."""
    db = DatabaseSettings(
        statement_timeout="5s",
        lock_timeout=1,
        idle_in_transaction_session_timeout="1min",
        search_path=["app", "My Schema", "$user"],
        timezone="UTC",
        default_transaction_isolation="repeatable read",
        client_encoding="UTF8",
        server_settings={"work_mem": "64MB", "jit": False, "app.path": "C:\\x y"},
    )
    params = db.conninfo_params()
    assert params["client_encoding"] == "UTF8"
    assert params["options"] == (
        "-c statement_timeout=5000ms -c lock_timeout=1000ms"
        " -c idle_in_transaction_session_timeout=60000ms"
        ' -c search_path=app,"My\\ Schema",$user -c timezone=UTC'
        " -c default_transaction_isolation=repeatable\\ read"
        " -c work_mem=64MB -c jit=off -c app.path=C:\\\\x\\ y"
    )
    assert final(params)["options"] == params["options"]


def test_search_path_from_a_string() -> None:
    """A comma string is split; a double-quoted element is taken literally."""
    db = DatabaseSettings(search_path='a, "We""ird", b')
    assert db.search_path == ["a", 'We"ird', "b"]
    assert db.session_settings() == [("search_path", 'a,"We""ird",b')]


def test_url_options_come_first() -> None:
    """Options already in the URL are kept, ours follow (and win on the server)."""
    db = DatabaseSettings(url="host=h options='-c geqo=off'", lock_timeout="1s")
    assert db.conninfo_params()["options"] == "-c geqo=off -c lock_timeout=1000ms"


def test_hostile_values_cannot_inject_parameters() -> None:
    """Quoting by make_conninfo keeps every hostile value inside its own field."""
    db = DatabaseSettings(
        host="evil sslmode=disable",
        dbname="db' port='1",
        user="u target_session_attrs=any",
        application_name="x' sslmode='disable",
        port=5432,
        sslmode="verify-full",
        target_session_attrs="read-write",
        server_settings={"app.x": "y -c search_path=evil"},
    )
    seen = final(db.conninfo_params())
    assert seen["sslmode"] == "verify-full"
    assert seen["host"] == "evil sslmode=disable"
    assert seen["port"] == "5432"
    assert seen["target_session_attrs"] == "read-write"
    assert seen["application_name"] == "x' sslmode='disable"
    assert seen["options"] == "-c app.x=y\\ -c\\ search_path=evil"
    # The pool's own string is built the same way.
    assert conninfo_to_dict(db.pool_kwargs()["conninfo"])["sslmode"] == "verify-full"


def test_pool_kwargs_build_a_pool() -> None:
    """pool_kwargs() is accepted by Pool; the password is its own argument."""
    db = DatabaseSettings(url=URL, max_size=8, pgbouncer=True, leak_threshold=30)
    kwargs = db.pool_kwargs(name="orders")
    assert kwargs["password"] == "pw-in-url"
    assert "pw-in-url" not in kwargs["conninfo"]
    assert kwargs["prepared_statements"] is False
    assert (kwargs["min_size"], kwargs["max_size"]) == (5, 8)
    pool = Pool(**kwargs)
    assert repr(pool) == "<Pool 'orders' new size=0/8 idle=0 waiting=0>"


def test_sslpassword_travels_in_kwargs() -> None:
    """sslpassword from a DSN is kept out of the conninfo string."""
    kwargs = DatabaseSettings(url="host=h sslpassword=keypass").pool_kwargs()
    assert kwargs["kwargs"] == {"sslpassword": "keypass"}
    assert "keypass" not in kwargs["conninfo"]


@pytest.mark.parametrize(
    ("given", "sizes"),
    [({}, (5, 5)), ({"max_size": 3}, (3, 3)), ({"min_size": 8}, (8, 8)), ({"min_size": 0}, (0, 5))],
)
def test_one_bound_never_contradicts_the_other(given: dict[str, int], sizes: Any) -> None:
    """Setting only min_size or max_size resolves the other like the pool does."""
    options = DatabaseSettings(**given).pool_options()
    assert (options.min_size, options.max_size) == sizes


def test_masked_repr_and_dumps_hide_secrets() -> None:
    """masked(), to_dict(), repr, str and pydantic dumps never show a secret."""
    db = DatabaseSettings(
        url=URL, password="pw-field", replicas=["postgresql://r:pw-replica@r1/orders"]
    )
    masked = db.masked()
    assert masked["password"] == "***"
    assert masked["url"] == "postgresql://app:***@db.example:5433/orders?sslmode=require"
    assert masked["replicas"] == ["postgresql://r:***@r1/orders"]
    assert db.to_dict() == masked
    for text in (repr(db), str(db), str(db.model_dump()), db.model_dump_json(), json.dumps(masked)):
        assert "pw-" not in text
    assert "db.example" in repr(db)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after validation."""
    db = DatabaseSettings()
    with pytest.raises(ValueError):
        db.max_size = 3


def test_ignore_libpq_env_passes_every_connection_field() -> None:
    """With ignore_libpq_env, nothing is left for PG* variables to fill in."""
    params = DatabaseSettings(host="h", user="u", ignore_libpq_env=True).conninfo_params()
    for key in ("host", "port", "user", "dbname", "sslmode", "target_session_attrs", "options"):
        assert key in params


def test_tls_files_checked(tmp_path: Path) -> None:
    """An existing root certificate is accepted with verify-full."""
    root = tmp_path / "root.crt"
    root.write_text("-----BEGIN CERTIFICATE-----\n")
    db = DatabaseSettings(host="h", sslmode="verify-full", sslrootcert=str(root))
    assert db.conninfo_params()["sslrootcert"] == str(root)
    assert DatabaseSettings(sslrootcert="system").conninfo_params()["sslrootcert"] == "system"


def test_unicode_round_trips() -> None:
    """Non-ASCII passwords and names reach libpq unchanged."""
    db = DatabaseSettings(host="h", dbname="☃db", password="pässwörd☃")
    seen = final(db.conninfo_params())
    assert (seen["dbname"], seen["password"]) == ("☃db", "pässwörd☃")


# -- many databases, sources and profiles ------------------------------------------

TOML = """
profile = "production"

[databases.source]
url = "postgresql://reader@src.example/app"
max_size = 4
statement_timeout = "30s"

[databases.target]
host = "dst.example"
dbname = "app"
sslmode = "verify-full"
sslrootcert = "system"
search_path = ["app", "public"]

[databases.target.retry]
max_attempts = 5
"""


def test_toml_file(tmp_path: Path) -> None:
    """A TOML file with [databases.<name>] sections and a top-level profile."""
    path = tmp_path / "pgharbor.toml"
    path.write_text(TOML)
    settings = load(tmp_path, path=path)
    assert settings.profile == "production"
    source, target = settings.database("source"), settings.database("TARGET")
    assert source.max_size == 4 and source.statement_timeout == "30000ms"
    assert source.sslmode == "require"  # the production floor, TLS set nowhere
    assert target.sslmode == "verify-full" and target.retry.max_attempts == 5
    assert target.leak_threshold == 60.0


def test_precedence(tmp_path: Path) -> None:
    """TOML < .env < environment < keyword arguments."""
    path = tmp_path / "pgharbor.toml"
    path.write_text("[databases.Main]\nmax_size = 2\ntimeout = 2\nmax_waiting = 2\nmax_uses = 2\n")
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "PGHARBOR_MAIN__TIMEOUT=3\nPGHARBOR_MAIN__MAX_WAITING=3\nPGHARBOR_MAIN__MAX_USES=3\n"
    )
    env = {"PGHARBOR_MAIN__MAX_WAITING": "4", "PGHARBOR_MAIN__MAX_USES": "4"}
    settings = load(tmp_path, env, path=path, dotenv=dotenv, databases={"main": {"max_uses": 5}})
    assert list(settings.databases) == ["Main"]  # names match ignoring case
    db = settings.database("main")
    assert (db.max_size, db.timeout, db.max_waiting, db.max_uses) == (2, 3.0, 4, 5)


def test_missing_dotenv_is_ignored(tmp_path: Path) -> None:
    """A .env file that does not exist is skipped."""
    assert load(tmp_path, dotenv=tmp_path / "nope.env").databases == {}


def test_environment_scheme(tmp_path: Path) -> None:
    """PGHARBOR_<NAME>__<SETTING>, nested tables, JSON and lists; others ignored."""
    env = {
        "PGHARBOR_PROFILE": "test",
        "PGHARBOR_SOURCE__URL": "postgresql://u:pw@h/src",
        "PGHARBOR_SOURCE__MAX_SIZE": "7",
        "PGHARBOR_SOURCE__IGNORE_LIBPQ_ENV": "true",
        "PGHARBOR_SOURCE__RETRY__MAX_ATTEMPTS": "4",
        "PGHARBOR_SOURCE__SERVER_SETTINGS": '{"work_mem": "64MB"}',
        "PGHARBOR_SOURCE__SEARCH_PATH": "a,b",
        "PGHARBOR_SOURCE__REPLICAS": "postgresql://r1/src postgresql://r2/src",
        "PGHARBOR_SOURCE__LEAK_THRESHOLD": "none",
        "PGHARBOR_TIMING_SLACK": "3",  # not a setting: no __
    }
    settings = load(tmp_path, env)
    db = settings.database()
    assert settings.profile == "test"
    assert (db.max_size, db.ignore_libpq_env, db.retry.max_attempts) == (7, True, 4)
    assert db.server_settings == {"work_mem": "64MB"} and db.search_path == ["a", "b"]
    assert len(db.replicas) == 2 and db.leak_threshold is None
    assert db.timeout == PROFILES["test"]["timeout"]


def test_postgres_variables(tmp_path: Path) -> None:
    """The original POSTGRES_* names configure the database 'default'."""
    env = {
        "POSTGRES_HOST": "pg",
        "POSTGRES_PORT": "5433",
        "POSTGRES_DB": "app",
        "POSTGRES_USER": "me",
        "POSTGRES_PASSWORD": "pw",
        "POSTGRES_SSL_MODE": "require",
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "6",
        "POSTGRES_CONNECT_TIMEOUT": "7",
        "POSTGRES_INITDB_ARGS": "--foo",  # the docker image's own: ignored
        "PGHARBOR_DEFAULT__MAX_WAITING": "9",
    }
    db = DatabaseSettings.from_env(env=env)
    params = db.conninfo_params()
    assert params["host"] == "pg" and params["port"] == "5433" and params["dbname"] == "app"
    assert params["sslmode"] == "require" and params["connect_timeout"] == "7"
    assert (db.min_size, db.max_size, db.max_waiting) == (4, 10, 9)


def test_from_env_by_name(tmp_path: Path) -> None:
    """from_env(name) picks one database; an unknown name is a ConfigError."""
    env = {"PGHARBOR_A__HOST": "a", "PGHARBOR_B__HOST": "b"}
    assert DatabaseSettings.from_env("b", env=env).host == "b"
    with pytest.raises(ConfigError, match="databases: name the database"):
        DatabaseSettings.from_env(env=env)
    with pytest.raises(ConfigError, match=r"databases\.c: is not configured"):
        DatabaseSettings.from_env("c", env=env)


@pytest.mark.parametrize("profile", ["development", "test", "production"])
def test_profile_sizes(tmp_path: Path, profile: str) -> None:
    """Each profile's pool sizes apply when neither bound is set."""
    db = load(tmp_path, profile=profile, databases={"x": {}}).database()
    assert (db.min_size, db.max_size) == (
        PROFILES[profile]["min_size"],
        PROFILES[profile]["max_size"],
    )


def test_production_respects_explicit_tls(tmp_path: Path) -> None:
    """production adds sslmode=require only where TLS was configured nowhere."""
    settings = load(
        tmp_path,
        profile="production",
        databases={
            "plain": {"host": "h"},
            "explicit": {"host": "h", "sslmode": "disable"},
            "in_url": {"url": "postgresql://h/db?sslmode=verify-ca"},
            "service": {"service": "mydb"},
            "small": {"max_size": 2},
        },
    )
    assert settings.database("plain").sslmode == "require"
    assert settings.database("explicit").sslmode == "disable"
    assert settings.database("in_url").conninfo_params()["sslmode"] == "verify-ca"
    assert settings.database("service").sslmode is None
    assert settings.database("small").pool_options().min_size == 2


def test_harbor_pool_kwargs_names_the_pool() -> None:
    """HarborSettings.pool_kwargs names the pool after its database."""
    settings = HarborSettings(databases={"Source": DatabaseSettings(host="h")})
    assert settings.pool_kwargs("source")["name"] == "Source"
    assert settings.masked()["databases"]["Source"]["host"] == "h"
    assert settings.to_dict() == settings.masked()


def test_model_instances_layer_with_other_sources(tmp_path: Path) -> None:
    """A DatabaseSettings passed to load_settings overrides only what it set."""
    env = {"PGHARBOR_MAIN__HOST": "from-env", "PGHARBOR_MAIN__MAX_SIZE": "9"}
    settings = load(tmp_path, env, databases={"main": DatabaseSettings(max_size=3)})
    db = settings.database()
    assert (db.host, db.max_size) == ("from-env", 3)


def test_text_is_parsed_only_from_text_sources(tmp_path: Path) -> None:
    """'5' is accepted from the environment, rejected from Python."""
    assert load(tmp_path, {"PGHARBOR_X__MAX_SIZE": "5"}).database().max_size == 5
    with pytest.raises(ConfigError, match=r"databases\.x\.max_size: must be an integer, got str"):
        load(tmp_path, databases={"x": {"max_size": "5"}})
    with pytest.raises(ConfigError, match="max_size: must be an integer, got str"):
        DatabaseSettings(max_size="5")


def test_toml_file_errors(tmp_path: Path) -> None:
    """A missing or malformed TOML file is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="settings file not found"):
        load(tmp_path, path=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[databases.x\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(tmp_path, path=bad)


def test_unknown_keys_suggest_a_name(tmp_path: Path) -> None:
    """Unknown keys fail with a did-you-mean hint at every level."""
    with pytest.raises(
        ConfigError, match=r"databases\.x\.max_sise: unknown setting \(did you mean 'max_size'\?\)"
    ):
        load(tmp_path, {"PGHARBOR_X__MAX_SISE": "3"})
    with pytest.raises(
        ConfigError, match=r"retry\.max_attempt: unknown setting \(did you mean 'max_attempts'"
    ):
        DatabaseSettings(retry={"max_attempt": 3})
    with pytest.raises(ConfigError, match=r"profil: unknown setting \(did you mean 'profile'"):
        load(tmp_path, profil="test")


def test_all_problems_listed_one_per_line() -> None:
    """Every problem is reported at once, one line each; .field is the first."""
    with pytest.raises(ConfigError) as info:
        DatabaseSettings(max_size=True, timeout=float("nan"), sslmode="bogus")
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {"max_size", "timeout", "sslmode"}
    assert info.value.field in {"max_size", "timeout", "sslmode"}


def test_pgbouncer_refuses_session_settings_it_cannot_carry() -> None:
    """With pgbouncer=True, a session setting needing `options` is a ConfigError
    naming it; application_name (tracked by PgBouncer) is fine."""
    with pytest.raises(ConfigError) as info:
        DatabaseSettings(url="host=h dbname=d user=u", pgbouncer=True, statement_timeout=5)
    assert info.value.field == "statement_timeout"
    assert "ALTER ROLE" in str(info.value)
    params = DatabaseSettings(
        url="host=h dbname=d user=u", pgbouncer=True, application_name="app"
    ).conninfo_params()
    assert "options" not in params and params["application_name"] == "app"


def test_profiles_leave_pgbouncer_databases_without_session_settings() -> None:
    """A profile's session-setting defaults are not forced on a PgBouncer database."""
    settings = load_settings(
        None,
        env={},
        dotenv=None,
        profile="test",
        databases={"a": {"url": "host=h dbname=d user=u", "pgbouncer": True}},
    )
    assert "options" not in settings.databases["a"].conninfo_params()


def test_pgbouncer_prepared_statements_is_an_explicit_opt_in() -> None:
    """PgBouncer mode turns prepared statements off unless the user says their
    PgBouncer (>= 1.22, max_prepared_statements set) keeps them; psycopg then
    needs libpq >= 17, psycopg2 has none to keep, and it needs pgbouncer=True."""
    from psycopg import pq

    url = "host=h dbname=d user=u"
    off = DatabaseSettings(url=url, pgbouncer=True).pool_kwargs()
    assert off["prepared_statements"] is False
    on = DatabaseSettings(
        url=url, pgbouncer=True, pgbouncer_prepared_statements=True, driver="asyncpg"
    )
    assert on.pool_kwargs()["prepared_statements"] is True
    if pq.version() >= 170000:
        settings = DatabaseSettings(url=url, pgbouncer=True, pgbouncer_prepared_statements=True)
        assert settings.pool_kwargs()["prepared_statements"] is True
    with pytest.raises(ConfigError, match="pgbouncer_prepared_statements: applies with"):
        DatabaseSettings(url=url, pgbouncer_prepared_statements=True)
    with pytest.raises(ConfigError, match="psycopg2 prepares no statements"):
        DatabaseSettings(
            url=url, pgbouncer=True, pgbouncer_prepared_statements=True, driver="psycopg2"
        )


# -- an explicit file decides which databases exist (issue 11, item 9) -------------

DIFF_TOML = """
[databases.source]
host = "127.0.0.1"
dbname = "src"

[databases.target]
host = "127.0.0.1"
dbname = "dst"
"""

# A docker-compose style .env, as found in many project directories.
COMPOSE_ENV = """
POSTGRES_USER=compose_user
POSTGRES_PASSWORD=compose-Secret-Qx
POSTGRES_DB=compose_db
PGHARBOR_SOURCE__PASSWORD=source-Secret-Qx
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No PGHARBOR_*/POSTGRES_* variable of the machine running the tests."""
    import os

    for key in list(os.environ):
        if key.upper().startswith(("PGHARBOR_", "POSTGRES_")):
            monkeypatch.delenv(key)
    return monkeypatch


def test_env_and_dotenv_override_but_never_add_databases_to_a_file(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With an explicit file, a stray .env (POSTGRES_*) and environment variables
    for other names add no database; they override the file's databases, and
    the log says which sources contributed, by name, never by value."""
    from pgharbor import DatabaseManager

    (tmp_path / "diff.toml").write_text(DIFF_TOML)
    (tmp_path / ".env").write_text(COMPOSE_ENV)
    clean_env.chdir(tmp_path)
    clean_env.setenv("PGHARBOR_TARGET__MAX_SIZE", "3")
    clean_env.setenv("PGHARBOR_STRAY__HOST", "stray.example")
    clean_env.setenv("POSTGRES_HOST", "compose.example")
    caplog.set_level(logging.INFO, logger="pgharbor.config")
    manager = DatabaseManager.from_config("diff.toml")
    try:
        assert sorted(manager) == ["source", "target"]
    finally:
        manager.close()
    settings = load_settings("diff.toml")
    assert sorted(settings.databases) == ["source", "target"]
    source, target = settings.database("source"), settings.database("target")
    assert source.password is not None
    assert source.password.get_secret_value() == "source-Secret-Qx"
    assert (source.host, target.max_size, target.dbname) == ("127.0.0.1", 3, "dst")
    (record, *_) = [r for r in caplog.records if r.name == "pgharbor.config"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    for name in ("diff.toml", ".env", "PGHARBOR_SOURCE__PASSWORD", "PGHARBOR_TARGET__MAX_SIZE"):
        assert name in message, message
    # The ignored variables are named as ignored, so a user can tell why.
    ignored = message.split("ignored", 1)[1]
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_HOST"):
        assert name in ignored, message
    assert "PGHARBOR_STRAY__HOST" in ignored
    for value in ("Secret-Qx", "compose_user", "compose_db", "stray.example", "3,"):
        assert value not in message, message


def test_without_a_file_the_environment_names_the_databases(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a file (from_env), .env and the environment still define
    databases: POSTGRES_* makes 'default', as documented."""
    (tmp_path / ".env").write_text(COMPOSE_ENV)
    clean_env.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="pgharbor.config")
    settings = load_settings()
    assert sorted(settings.databases) == ["default", "source"]
    assert settings.database("default").dbname == "compose_db"
    assert "POSTGRES_DB" in caplog.text and "compose_db" not in caplog.text


def test_a_file_defining_default_takes_the_postgres_variables(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """POSTGRES_* override the file's own database 'default' (any case)."""
    (tmp_path / "app.toml").write_text('[databases.Default]\nhost = "127.0.0.1"\n')
    clean_env.setenv("POSTGRES_DB", "app")
    settings = load_settings(tmp_path / "app.toml", dotenv=None)
    assert list(settings.databases) == ["Default"]
    assert settings.database().dbname == "app"
