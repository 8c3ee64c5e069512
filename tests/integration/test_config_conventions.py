"""DATABASE_URL and ${VAR} in TOML against a real server: what users of
Heroku-style platforms and docker-compose files write reaches the database."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pgharbor import Database, DatabaseManager
from pgharbor.cli import app
from pgharbor.testing import TempDatabase


def test_database_url_reaches_the_server(pg_database: TempDatabase, app_name: str) -> None:
    """Database.from_env() connects where DATABASE_URL says, not where the
    superseded POSTGRES_* variables point (a refused port)."""
    env = {
        "DATABASE_URL": pg_database.url(application_name=app_name),
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "1",
        "POSTGRES_POOL_SIZE": "1",
    }
    with Database.from_env(env=env) as db:
        assert db.fetchval("SELECT current_database()") == pg_database.name
        assert db.stats()["max_size"] == 1


def test_check_uses_database_url(pg_database: TempDatabase) -> None:
    """``pgharbor check`` with no target checks the database DATABASE_URL names."""
    result = CliRunner().invoke(
        app, ["check", "--json"], env={"DATABASE_URL": pg_database.url(), "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    (db,) = json.loads(result.stdout)["databases"]
    assert db["name"] == "default" and db["ok"] is True


def test_toml_variables_reach_the_server(
    pg_database: TempDatabase, app_name: str, tmp_path: Path
) -> None:
    """A TOML file whose url and application_name come from ${VAR} connects
    with them; a default fills the unset one."""
    config = tmp_path / "pgharbor.toml"
    config.write_text(
        '[databases.orders]\nurl = "${ORDERS_URL}"\n'
        'application_name = "${APP_NAME:-unset}"\nmin_size = "${MIN:-1}"\n'
    )
    env = {"ORDERS_URL": pg_database.url(), "APP_NAME": app_name}
    with DatabaseManager.from_config(str(config), env=env, dotenv=None) as mgr:
        db = mgr["orders"]
        assert db.fetchval("SELECT current_database()") == pg_database.name
        assert db.fetchval("SELECT current_setting('application_name')") == app_name
