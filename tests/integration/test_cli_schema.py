"""``pgharbor schema`` and ``pgharbor diff`` against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgharbor.cli import app
from pgharbor.schema import SchemaSnapshot
from pgharbor.testing import PostgresServer, TempDatabase

runner = CliRunner()

SHOP = """
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE "Orders" (id int PRIMARY KEY, customer int REFERENCES customers);
"""


@pytest.fixture
def other(pg_server: PostgresServer) -> Iterator[TempDatabase]:
    """A second fresh database."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    yield TempDatabase(pg_server, name)
    pg_server.drop_database(name, force=True)


@pytest.fixture
def pair(pg_database: TempDatabase, other: TempDatabase) -> tuple[TempDatabase, TempDatabase]:
    """Two databases with the same small schema."""
    for db in (pg_database, other):
        db.server.execute(SHOP, dbname=db.name)
    return pg_database, other


def test_schema_prints_a_snapshot(pair: tuple[TempDatabase, TempDatabase]) -> None:
    """--json is the snapshot's JSON; the text lists tables and columns."""
    db, _ = pair
    result = runner.invoke(app, ["schema", db.conninfo(), "--json"])
    assert result.exit_code == 0, result.output
    snap = SchemaSnapshot.from_json(result.stdout)
    assert [t.qualified_name for t in snap.tables] == ['public."Orders"', "public.customers"]
    text = runner.invoke(app, ["schema", db.url(), "--schema", "public"])
    assert text.exit_code == 0, text.output
    assert 'table public."Orders"' in text.stdout
    assert "email text not null" in text.stdout


def test_diff_of_equal_schemas_exits_0(pair: tuple[TempDatabase, TempDatabase]) -> None:
    """Two databases with the same schema: exit 0 and says so."""
    a, b = pair
    result = runner.invoke(app, ["diff", a.conninfo(), b.url()])
    assert result.exit_code == 0, result.output
    assert "the schemas are the same" in result.stdout
    as_json = runner.invoke(app, ["diff", a.conninfo(), b.conninfo(), "--json"])
    payload = json.loads(as_json.stdout)
    assert (payload["equal"], payload["error"], payload["differences"]) == (True, None, [])
    assert [d["name"] for d in payload["databases"]] == ["source", "target"]


def test_diff_from_a_config_file_reports_and_exits_1(
    pair: tuple[TempDatabase, TempDatabase], tmp_path: Path
) -> None:
    """The config's source and target are compared; the report is grouped
    by schema and table; --ignore-default-names matches a renamed default
    index by definition."""
    a, b = pair
    b.server.execute(
        'ALTER TABLE customers ADD COLUMN phone text; CREATE INDEX ON "Orders" (customer);'
        ' CREATE INDEX ON "Orders" (customer); DROP INDEX "Orders_customer_idx"',
        dbname=b.name,
    )
    a.server.execute('CREATE INDEX ON "Orders" (customer)', dbname=a.name)
    config = tmp_path / "pgharbor.toml"
    config.write_text(
        f'[databases.source]\nurl = "{a.url()}"\n\n[databases.target]\nurl = "{b.url()}"\n'
    )
    result = runner.invoke(app, ["diff", "--config", str(config)])
    assert result.exit_code == 1, result.output
    # The text: grouped by schema, then table, parts beneath their table.
    text = result.stdout
    order = ["schema public", '  public."Orders"', "- index", "+ index", "  public.customers"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions), text
    assert "+ column phone  text" in text
    assert text.rstrip().endswith("3 difference(s): 2 added, 1 removed")
    payload = json.loads(
        runner.invoke(app, ["diff", "source", "target", "-c", str(config), "--json"]).stdout
    )
    assert [(d["change"], d["kind"], d["table"], d["name"]) for d in payload["differences"]] == [
        ("removed", "index", 'public."Orders"', '"Orders_customer_idx"'),
        ("added", "index", 'public."Orders"', '"Orders_customer_idx1"'),
        ("added", "column", "public.customers", "phone"),
    ]
    loose = runner.invoke(app, ["diff", "-c", str(config), "--ignore-default-names", "--json"])
    assert loose.exit_code == 1
    assert [d["name"] for d in json.loads(loose.stdout)["differences"]] == ["phone"]


def test_diff_errors_exit_2_without_secrets(pg_database: TempDatabase) -> None:
    """An unreachable target, or only one of SOURCE and TARGET: exit 2; the
    password is never printed."""
    secret = "Sup3r-secret-value"
    result = runner.invoke(
        app,
        [
            "diff",
            pg_database.conninfo(),
            f"postgresql://alice:{secret}@127.0.0.1:1/db",
            "--timeout",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 2, result.output
    assert secret not in result.output
    payload = json.loads(result.stdout)
    assert payload["equal"] is None and "checks failed" in payload["error"]
    assert "target" in payload["error"]
    assert runner.invoke(app, ["diff", pg_database.conninfo()]).exit_code == 2
    bad = runner.invoke(app, ["schema", f"postgresql://alice:{secret}@127.0.0.1:1/db",
                              "--timeout", "2"])  # fmt: skip
    assert bad.exit_code == 2 and secret not in bad.output


def test_diff_checks_privileges_first(
    pair: tuple[TempDatabase, TempDatabase], pg_server: PostgresServer
) -> None:
    """A role that may not read a catalogue the snapshot needs fails the
    checks: exit 2 with what is missing, before any snapshot."""
    a, b = pair
    role = f"r_{uuid.uuid4().hex[:8]}"
    pg_server.create_role(role)
    try:
        pg_server.execute("REVOKE SELECT ON pg_catalog.pg_index FROM PUBLIC", dbname=b.name)
        result = runner.invoke(
            app, ["diff", a.conninfo(), b.conninfo(user=role), "--json", "--timeout", "5"]
        )
        assert result.exit_code == 2, result.output
        payload = json.loads(result.stdout)
        by_name = {d["name"]: d for d in payload["checks"]["databases"]}
        assert by_name["source"]["ok"] and not by_name["target"]["ok"]
        (missing,) = by_name["target"]["privileges_missing"]
        assert "pg_catalog.pg_index" in missing
        text = runner.invoke(app, ["diff", a.conninfo(), b.conninfo(user=role)])
        assert text.exit_code == 2 and "pg_catalog.pg_index" in text.stdout
    finally:
        pg_server.execute(f"DROP ROLE {role}")


@pytest.mark.slow
def test_diff_without_target_compares_two_sample_databases() -> None:
    """With no target, diff starts a temporary server with two sample
    databases a few migrations apart, read by a role that may only connect,
    and reports exactly those migrations (exit 1)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pgharbor.cli", "diff", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr
    payload = json.loads(proc.stdout)
    assert {d["user"] for d in payload["databases"]} == {"pgharbor_reader"}
    assert [(d["change"], d["kind"], d["table"] or d["name"]) for d in payload["differences"]] == [
        ("added", "column", "public.customers"),
        ("changed", "function", "public.order_total(customer bigint)"),
        ("changed", "constraint", "public.orders"),
        ("added", "index", "public.orders"),
        ("removed", "index", "public.orders"),
        ("added", "table", "public.refunds"),
        ("changed", "type", "public.status"),
    ]
