"""``pgharbor check`` against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgharbor.cli import app
from pgharbor.testing import PostgresServer, TempDatabase

runner = CliRunner()
SLACK = float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))


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
    # A table it may not read is no obstacle to a schema diff; an unreadable
    # catalogue is.
    pg_server.execute(
        "CREATE TABLE public.secret_stuff (x int); REVOKE ALL ON secret_stuff FROM PUBLIC;"
        " REVOKE SELECT ON pg_catalog.pg_trigger FROM PUBLIC",
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
    (missing,) = by_name["target"]["privileges_missing"]
    assert "pg_catalog.pg_trigger" in missing and "secret_stuff" not in missing


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


def _refused_url() -> str:
    from pgharbor.testing._cleanup import free_port

    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


@pytest.mark.timing
def test_check_fails_fast_against_a_refused_port_with_the_cause_first() -> None:
    """Nothing listens: check answers within about one attempt (not after its
    10 s timeout), and the report leads with the refusal, not CircuitOpen."""
    start = time.monotonic()
    result = runner.invoke(app, ["check", _refused_url()], env={"COLUMNS": "200"})
    elapsed = time.monotonic() - start
    assert result.exit_code == 1
    assert elapsed < 3.0 * SLACK, f"{elapsed:.1f} s"
    text = " ".join(result.output.split())  # cells fold long lines
    error = text[text.index("error") :]
    assert error.startswith("error ConnectionFailed") and "refused" in error.lower()
    assert "CircuitOpen" not in text


@pytest.mark.timing
@pytest.mark.slow
def test_top_is_idle_while_its_node_is_down() -> None:
    """The live view against a node that refuses connections: well under 5 %
    of a core (the breaker used to make it spin)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgharbor.cli", "top", _refused_url(), "-n", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "120"},
    )

    def cpu() -> float:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        time.sleep(3.0)  # started, first frames drawn, breaker open
        before, since = cpu(), time.monotonic()
        time.sleep(5.0)
        share = (cpu() - before) / (time.monotonic() - since)
    finally:
        proc.terminate()
        proc.wait(10)
    assert share < 0.05, f"{share:.1%} of a core"


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
