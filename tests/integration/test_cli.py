"""``pgharbor check`` against real servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pgharbor.cli import app
from pgharbor.testing import PostgresServer

runner = CliRunner()


def test_check_reports_version_and_latency(pg_server: PostgresServer) -> None:
    """check prints the server version, TLS and latency, and exits 0."""
    result = runner.invoke(app, ["check", pg_server.conninfo(), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    (target,) = payload["targets"]
    assert target["version"].startswith(f"{pg_server.version.major}.")
    assert target["compatible"] is True and target["latency_ms"] > 0


def test_check_fails_and_hides_the_password() -> None:
    """An unreachable target fails with exit 1; its password is not printed."""
    secret = "Sup3r-secret-value"
    result = runner.invoke(
        app, ["check", f"postgresql://alice:{secret}@127.0.0.1:1/db", "--timeout", "2"]
    )
    assert result.exit_code == 1
    assert secret not in result.output
    assert "alice" in result.output


def test_check_redacts_unparsable_targets() -> None:
    """libpq's parse error echoes the password; check must not."""
    result = runner.invoke(app, ["check", "postgresql://alice:p%zzSECRET@h/db", "--json"])
    assert result.exit_code == 1
    assert "SECRET" not in result.output


@pytest.mark.slow
def test_check_without_target_runs_on_an_embedded_server() -> None:
    """With no target, check starts a temporary server, checks it, and cleans up."""
    proc = subprocess.run(
        [sys.executable, "-m", "pgharbor.cli", "check", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
