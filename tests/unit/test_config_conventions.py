"""pgharbor.config and the conventions users bring: DATABASE_URL, ${VAR} in
TOML values, ``pgharbor --version`` (real files in temporary directories)."""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pgharbor
from pgharbor import ConfigError, DatabaseManager
from pgharbor.config import DatabaseSettings, load_settings

SECRET = "Secret-Zq7"  # never in a message or a log line


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No PGHARBOR_*/POSTGRES_*/DATABASE_URL variable of the machine running the tests."""
    import os

    for key in list(os.environ):
        if key.upper().startswith(("PGHARBOR_", "POSTGRES_")) or key.upper() == "DATABASE_URL":
            monkeypatch.delenv(key)
    return monkeypatch


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "pgharbor.config")


# -- DATABASE_URL ---------------------------------------------------------------


def test_database_url_is_the_url_of_default() -> None:
    """DATABASE_URL alone configures the database 'default' (from_env finds it)."""
    env = {"DATABASE_URL": f"postgresql://app:{SECRET}@db.example:5433/orders"}
    db = DatabaseSettings.from_env(env=env)
    params = db.conninfo_params()
    assert (params["host"], params["port"], params["dbname"]) == ("db.example", "5433", "orders")
    assert params["user"] == "app" and params["password"] == SECRET
    assert list(load_settings(env=env, dotenv=None).databases) == ["default"]


def test_database_url_supersedes_the_postgres_endpoint_variables(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With DATABASE_URL set, POSTGRES_HOST/PORT/DB/USER/PASSWORD/SSL_MODE are
    ignored (named in the log, never their values); the pool sizes and the
    connect timeout still apply."""
    env = {
        "DATABASE_URL": "postgresql://app@db.example/orders",
        "POSTGRES_HOST": "elsewhere.example",
        "POSTGRES_PORT": "6000",
        "POSTGRES_DB": "superuser_db",
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": SECRET,
        "POSTGRES_SSL_MODE": "disable",
        "POSTGRES_POOL_SIZE": "3",
        "POSTGRES_MAX_OVERFLOW": "2",
        "POSTGRES_CONNECT_TIMEOUT": "4",
    }
    caplog.set_level(logging.INFO, logger="pgharbor.config")
    db = load_settings(env=env, dotenv=None).database()
    params = db.conninfo_params()
    assert (params["host"], params["dbname"], params["user"]) == ("db.example", "orders", "app")
    assert "port" not in params and "password" not in params and "sslmode" not in params
    assert (db.min_size, db.max_size, params["connect_timeout"]) == (3, 5, "4")
    message = _messages(caplog)
    ignored = message.split("ignored, as DATABASE_URL is set:", 1)[1]
    for name in ("POSTGRES_HOST", "POSTGRES_PASSWORD", "POSTGRES_SSL_MODE"):
        assert name in ignored, message
    assert "POSTGRES_POOL_SIZE" not in ignored
    for value in (SECRET, "elsewhere", "superuser_db"):
        assert value not in message, message


def test_without_database_url_the_postgres_variables_still_apply() -> None:
    """POSTGRES_* keep their meaning when DATABASE_URL is unset or empty (an
    .env template's ``DATABASE_URL=``)."""
    for env in (
        {"POSTGRES_HOST": "pg", "POSTGRES_DB": "app"},
        {"POSTGRES_HOST": "pg", "POSTGRES_DB": "app", "DATABASE_URL": " "},
    ):
        db = DatabaseSettings.from_env(env=env)
        assert (db.host, db.dbname, db.url) == ("pg", "app", None)


def test_pgharbor_default_url_wins_over_database_url() -> None:
    """PGHARBOR_DEFAULT__URL is more specific than DATABASE_URL: it wins;
    a PGHARBOR_DEFAULT__<FIELD> overrides the URL's part as any field does."""
    env = {
        "DATABASE_URL": "postgresql://app@generic.example/orders",
        "PGHARBOR_DEFAULT__URL": "postgresql://app@specific.example/orders",
        "PGHARBOR_DEFAULT__DBNAME": "reports",
    }
    params = DatabaseSettings.from_env(env=env).conninfo_params()
    assert (params["host"], params["dbname"]) == ("specific.example", "reports")


def test_database_url_in_dotenv_supersedes_postgres_variables_in_the_environment(
    tmp_path: Path,
) -> None:
    """The rule holds across sources: DATABASE_URL in .env makes the
    environment's POSTGRES_HOST ignored."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("DATABASE_URL=postgresql://app@from-dotenv.example/orders\n")
    settings = load_settings(env={"POSTGRES_HOST": "from-env.example"}, dotenv=dotenv)
    assert settings.database().conninfo_params()["host"] == "from-dotenv.example"


def test_a_file_takes_database_url_only_for_its_own_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a file, DATABASE_URL adds no database: it is ignored unless the
    file defines 'default', whose url it then overrides."""
    caplog.set_level(logging.INFO, logger="pgharbor.config")
    env = {"DATABASE_URL": f"postgresql://app:{SECRET}@heroku.example/orders"}
    named = tmp_path / "named.toml"
    named.write_text('[databases.source]\nhost = "127.0.0.1"\n')
    settings = load_settings(named, env=env, dotenv=None)
    assert list(settings.databases) == ["source"]
    message = _messages(caplog)
    assert "defines no such database: DATABASE_URL" in message and SECRET not in message
    own = tmp_path / "own.toml"
    own.write_text('[databases.default]\nurl = "postgresql://app@file.example/orders"\n')
    db = load_settings(own, env=env, dotenv=None).database()
    assert db.conninfo_params()["host"] == "heroku.example"


def test_manager_from_env_reads_database_url(clean_env: pytest.MonkeyPatch) -> None:
    """DatabaseManager.from_env() builds 'default' from DATABASE_URL (not opened)."""
    clean_env.setenv("DATABASE_URL", "postgresql://app@127.0.0.1:1/orders")
    manager = DatabaseManager.from_env(dotenv=None)
    try:
        assert list(manager) == ["default"]
        assert manager["default"].pool.target == "127.0.0.1:1/orders as app"
    finally:
        manager.close()


# -- ${VAR} in TOML values ------------------------------------------------------

EXPANDING = """
profile = "${PROFILE:-test}"

[databases.orders]
url = "postgresql://app@${DB_HOST:-localhost}:${DB_PORT}/orders"
password = "${ORDERS_PASSWORD}"
max_size = "${POOL_MAX:-7}"
application_name = "literal-$${NOT_A_VAR}-and-$-sign"
search_path = ["${SCHEMA}", "public"]

[databases.orders.server_settings]
work_mem = "${WORK_MEM:-4MB}"
"""


def test_variables_expand_in_string_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """${VAR} takes the variable; ${VAR:-default} the default when unset or
    empty; $${ is a literal ${; expanded text is parsed as text (a number);
    lists and nested tables are expanded; the log names variables, never values."""
    path = tmp_path / "pgharbor.toml"
    path.write_text(EXPANDING)
    env = {"DB_PORT": "6432", "ORDERS_PASSWORD": SECRET, "SCHEMA": "app", "DB_HOST": ""}
    caplog.set_level(logging.INFO, logger="pgharbor.config")
    settings = load_settings(path, env=env, dotenv=None)
    db = settings.database("orders")
    assert settings.profile == "test"
    params = db.conninfo_params()
    assert (params["host"], params["port"], params["password"]) == ("localhost", "6432", SECRET)
    assert db.max_size == 7 and db.search_path == ["app", "public"]
    assert db.application_name == "literal-${NOT_A_VAR}-and-$-sign"
    assert db.server_settings == {"work_mem": "4MB"}
    message = _messages(caplog)
    assert "variables: DB_PORT, ORDERS_PASSWORD, SCHEMA" in message, message
    assert "defaults for unset: DB_HOST, POOL_MAX, PROFILE, WORK_MEM" in message, message
    assert SECRET not in message and "6432" not in message


def test_a_value_is_taken_literally_never_expanded_again(tmp_path: Path) -> None:
    """A variable whose value contains ${...} is used as it is (one pass)."""
    path = tmp_path / "pgharbor.toml"
    path.write_text('[databases.x]\npassword = "${PW}"\n')
    db = load_settings(path, env={"PW": "a${HOME}b$${c"}, dotenv=None).database()
    assert db.password is not None and db.password.get_secret_value() == "a${HOME}b$${c"


def test_the_environment_comes_before_the_dotenv_file(tmp_path: Path) -> None:
    """Variables come from the environment, else from the .env file (any
    name there, not only pgharbor's)."""
    path = tmp_path / "pgharbor.toml"
    path.write_text('[databases.x]\nhost = "${DB_HOST}"\ndbname = "${DB_NAME}"\n')
    dotenv = tmp_path / ".env"
    dotenv.write_text("DB_HOST=from-dotenv\nDB_NAME=from-dotenv\n")
    db = load_settings(path, env={"DB_HOST": "from-env"}, dotenv=dotenv).database()
    assert (db.host, db.dbname) == ("from-env", "from-dotenv")


@pytest.mark.parametrize(
    ("value", "field", "rule"),
    [
        ('password = "${ORDERS_PASSWORD}"', "databases.x.password", "ORDERS_PASSWORD is not set"),
        ('replicas = ["postgresql://r/db", "${R2}"]', "databases.x.replicas.1", "R2 is not set"),
        ('host = "${DB HOST}"', "databases.x.host", r"malformed \$\{\.\.\.\}"),
        ('host = "${DB_HOST"', "databases.x.host", r"unterminated \$\{"),
        ('host = "${A:-${B}}"', "databases.x.host", "defaults do not nest"),
        ('host = "${A:=b}"', "databases.x.host", r"malformed \$\{\.\.\.\}"),
    ],
)
def test_a_bad_reference_names_the_field_and_the_variable(
    tmp_path: Path, value: str, field: str, rule: str
) -> None:
    """An unset variable without a default, or a malformed reference, is a
    ConfigError naming the field (and the variable); no value is quoted."""
    path = tmp_path / "pgharbor.toml"
    path.write_text(f"[databases.x]\n{value}\n")
    with pytest.raises(ConfigError, match=rule) as info:
        load_settings(path, env={"A": SECRET}, dotenv=None)
    assert info.value.field == field
    assert str(path) in str(info.value) and SECRET not in str(info.value)


# -- pgharbor --version ---------------------------------------------------------


def test_version_option_prints_the_installed_version() -> None:
    """``pgharbor --version`` prints the version the package metadata has."""
    from pgharbor.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"pgharbor {pgharbor.__version__}\n"
    assert pgharbor.__version__ == version("pgharbor")
