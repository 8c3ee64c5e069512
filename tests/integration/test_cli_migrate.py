"""``pgharbor migrate`` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pgharbor.cli import app
from pgharbor.testing import PostgresServer, TempDatabase

runner = CliRunner()

FILES = {
    "0001_orders.sql": (
        "-- migrate:up\nCREATE TABLE orders (id int, status text);\n"
        "-- migrate:down\nDROP TABLE orders;\n"
    ),
    "0002_index.sql": (
        "-- migrate:up\nCREATE INDEX CONCURRENTLY orders_status ON orders (status);\n"
        "-- migrate:down\nDROP INDEX CONCURRENTLY orders_status;\n"
    ),
}


def migrations(tmp_path: Path, files: dict[str, str] = FILES) -> str:
    directory = tmp_path / "migrations"
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return str(directory)


def test_plan_up_status_down(pg_database: TempDatabase, tmp_path: Path) -> None:
    """plan shows the steps and the one outside a transaction; up applies
    them; status lists them applied; down rolls back one; JSON everywhere."""
    url, d = pg_database.url(), migrations(tmp_path)
    result = runner.invoke(app, ["migrate", "plan", url, "--dir", d])
    assert result.exit_code == 0, result.output
    assert "2 migration(s) to apply" in result.output
    assert "0002_index" in result.output and "no transaction" in result.output
    assert "CREATE INDEX CONCURRENTLY at line 2" in result.output

    result = runner.invoke(app, ["migrate", "up", url, "--dir", d])
    assert result.exit_code == 0, result.output
    assert "applying 0001_orders" in result.output and "at version 2" in result.output

    result = runner.invoke(app, ["migrate", "status", url, "--dir", d, "--json"])
    assert result.exit_code == 0, result.output
    assert [(s["version"], s["state"]) for s in json.loads(result.stdout)] == [
        (1, "applied"),
        (2, "applied"),
    ]

    result = runner.invoke(app, ["migrate", "down", url, "--dir", d, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [s["version"] for s in payload["steps"]] == [2] and payload["target"] == 1

    result = runner.invoke(app, ["migrate", "up", url, "--dir", d, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "1 migration(s) to apply" in result.output and "would be at version 2" in result.output


def test_config_file_and_database_name(
    pg_server: PostgresServer, pg_database: TempDatabase, tmp_path: Path
) -> None:
    """--config and --database pick the database; a missing name is exit 2."""
    config = tmp_path / "pgharbor.toml"
    config.write_text(
        f'[databases.app]\nurl = "{pg_database.url()}"\n\n'
        f'[databases.other]\nurl = "{pg_server.url(dbname="postgres")}"\n'
    )
    d = migrations(tmp_path)
    result = runner.invoke(app, ["migrate", "up", "--config", str(config), "--dir", d])
    assert result.exit_code == 2 and "one of app, other" in result.output
    result = runner.invoke(
        app, ["migrate", "up", "-c", str(config), "-d", "app", "--dir", d, "--to", "1"]
    )
    assert result.exit_code == 0, result.output
    applied = pg_server.execute(
        "SELECT version FROM pgharbor_migrations ORDER BY version", dbname=pg_database.name
    )
    assert applied == [(1,)]
    result = runner.invoke(app, ["migrate", "status", "-c", str(config), "-d", "nope"])
    assert result.exit_code == 2 and "no database 'nope'" in result.output


def test_failure_names_the_file_and_line_and_hides_the_password(
    pg_server: PostgresServer, pg_database: TempDatabase, tmp_path: Path
) -> None:
    """A failing statement exits 1 naming file and line; the status then
    shows what needs attention; the password is never printed."""
    pg_server.execute("DROP ROLE IF EXISTS migrator")
    pg_server.create_role("migrator", password="Sup3r-secret-value", superuser=True)
    url = pg_database.url(user="migrator", password="Sup3r-secret-value")
    files = {**FILES, "0003_broken.sql": "ALTER TABLE orders\n  ADD COLUMN total nosuchtype;\n"}
    d = migrations(tmp_path, files)
    result = runner.invoke(app, ["migrate", "up", url, "--dir", d])
    assert result.exit_code == 1
    assert "0003_broken.sql:2:" in result.output and "nosuchtype" in result.output
    assert "stays at version 2" in result.output
    assert "Sup3r-secret-value" not in result.output

    edited = FILES["0001_orders.sql"].replace("status text", "status varchar")
    (Path(d) / "0001_orders.sql").write_text(edited)
    result = runner.invoke(app, ["migrate", "status", url, "--dir", d])
    assert result.exit_code == 1 and "changed" in result.output
    result = runner.invoke(app, ["migrate", "up", url, "--dir", d])
    assert result.exit_code == 1 and "--allow-drift" in result.output
    result = runner.invoke(app, ["migrate", "repair", url, "--dir", d])
    assert result.exit_code == 0 and "0001_orders: checksum now the file's" in result.output


def test_bad_options_exit_2(pg_database: TempDatabase, tmp_path: Path) -> None:
    """Contradictory or invalid options exit 2 before connecting."""
    url = pg_database.url()
    result = runner.invoke(app, ["migrate", "down", url, "--to", "1", "--steps", "1"])
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(app, ["migrate", "up", url, "--lock-timeout", "0"])
    assert result.exit_code == 2 and "--lock-timeout" in result.output
    result = runner.invoke(app, ["migrate", "status", url, "--dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no such migrations directory" in result.output
