"""``pgharbor check`` against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgharbor.cli import app
from pgharbor.testing import PostgresServer, TempDatabase

runner = CliRunner()


def test_check_reports_version_latency_and_privileges(pg_server: PostgresServer) -> None:
    """check prints version, TLS, latency and privileges, and exits 0."""
    result = runner.invoke(app, ["check", pg_server.conninfo(), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    (db,) = payload["databases"]
    assert db["version"].startswith(f"{pg_server.version.major}.")
    assert db["compatible"] is True and db["latency_ms"] > 0
    assert db["privileges_sufficient"] is True
    assert db["max_connections"] > 0


def test_check_fails_and_hides_the_password() -> None:
    """An unreachable target fails with exit 1; its password is not printed."""
    secret = "Sup3r-secret-value"
    result = runner.invoke(
        app, ["check", f"postgresql://alice:{secret}@127.0.0.1:1/db", "--timeout", "2"]
    )
    assert result.exit_code == 1
    assert secret not in result.output
    assert "alice" in result.output and "FAIL" in result.output


def test_check_redacts_unparsable_targets() -> None:
    """libpq's parse error echoes the password; check must not."""
    result = runner.invoke(app, ["check", "postgresql://alice:p%zzSECRET@h/db", "--json"])
    assert result.exit_code == 1
    assert "SECRET" not in result.output


def test_check_named_databases_from_a_config_file(
    pg_server: PostgresServer, pg_database: TempDatabase, tmp_path: Path
) -> None:
    """--config checks every named database; a role missing privileges fails
    with what is missing named."""
    pg_server.execute("DROP ROLE IF EXISTS cli_reader")
    pg_server.create_role("cli_reader")
    pg_server.execute(
        "CREATE TABLE public.secret_stuff (x int); REVOKE ALL ON secret_stuff FROM PUBLIC",
        dbname=pg_database.name,
    )
    config = tmp_path / "pgharbor.toml"
    config.write_text(
        f"""
[databases.source]
url = "{pg_database.url()}"

[databases.target]
url = "{pg_database.url(user="cli_reader")}"
"""
    )
    result = runner.invoke(app, ["check", "--config", str(config), "--json", "--timeout", "5"])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    by_name = {d["name"]: d for d in payload["databases"]}
    assert by_name["source"]["ok"] is True
    assert by_name["target"]["ok"] is False
    assert any("secret_stuff" in m for m in by_name["target"]["privileges_missing"])


@pytest.mark.slow
def test_check_without_target_runs_on_an_embedded_server() -> None:
    """With no target, check starts a temporary server with a source and a
    target database and a restricted role, checks both, and cleans up."""
    proc = subprocess.run(
        [sys.executable, "-m", "pgharbor.cli", "check", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["ok"] is True
    assert [d["name"] for d in payload["databases"]] == ["source", "target"]
    assert {d["user"] for d in payload["databases"]} == {"pgharbor_reader"}


def test_mcp_without_databases_says_how_to_give_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pgharbor mcp` with no URL, config or environment exits 2 with a hint,
    and writes nothing on stdout (the protocol channel)."""
    for key in list(os.environ):
        if key == "POSTGRES_HOST" or key.startswith("PGHARBOR_"):
            monkeypatch.delenv(key)
    result = runner.invoke(app, ["mcp"])
    assert result.exit_code == 2
    assert "pass URLs, --config FILE" in result.stderr
    assert result.stdout == ""
