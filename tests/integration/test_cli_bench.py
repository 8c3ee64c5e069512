"""``pgharbor bench`` against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pgharbor._conninfo import describe, parse_conninfo
from pgharbor.cli import app
from pgharbor.testing import PostgresServer

runner = CliRunner()

# Short steps: these tests check behaviour, not speed.
_QUICK = ["--duration", "0.3", "-w", "1", "-w", "4", "--pool-size", "2"]


def _bench_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["bench", *args, *_QUICK, "--json"])
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def _assert_sane(step: dict[str, Any]) -> None:
    assert step["ops"] > 0 and step["errors"] == 0 and step["first_error"] is None
    assert step["ops_per_s"] > 0
    assert 0 < step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"] <= step["max_ms"]
    assert sum(p["ops"] for p in step["timeline"]) == step["ops"]
    for point in step["timeline"]:
        assert 0 < point["p50_ms"] <= point["p99_ms"] <= step["max_ms"]


def test_bench_json_reports_every_step(pg_server: PostgresServer) -> None:
    """--json prints the target, the driver, the server version and, per
    worker count, ops, percentiles in order, pool waits and a timeline."""
    payload = _bench_json(pg_server.conninfo())
    assert payload["target"] == describe(parse_conninfo(pg_server.conninfo()))
    assert payload["driver"] == "psycopg" and payload["mode"] == "asyncio"
    assert payload["server_version"].startswith(f"{pg_server.version.major}.")
    assert payload["pool_size"] == 2 and payload["query"] == "SELECT 1"
    assert [s["workers"] for s in payload["steps"]] == [1, 4]
    for step in payload["steps"]:
        _assert_sane(step)
        assert step["seconds"] >= 0.3
        assert [p["t"] for p in step["timeline"]] == sorted(p["t"] for p in step["timeline"])
    # Four workers on two connections: some acquisitions had to wait.
    w4 = payload["steps"][1]
    assert w4["waited"] > 0 and w4["wait_ms"] > 0


@pytest.mark.parametrize(
    ("args", "driver", "mode"),
    [
        (["--sync"], "psycopg", "threads"),
        (["--driver", "asyncpg"], "asyncpg", "asyncio"),
        (["--driver", "psycopg2"], "psycopg2", "threads"),
    ],
    ids=["psycopg-sync", "asyncpg", "psycopg2"],
)
def test_bench_runs_on_every_driver(
    pg_server: PostgresServer, args: list[str], driver: str, mode: str
) -> None:
    """Every driver runs the load: asyncpg on asyncio, psycopg2 and --sync on threads."""
    payload = _bench_json(pg_server.url(password="not-needed"), *args)
    assert (payload["driver"], payload["mode"]) == (driver, mode)
    assert "not-needed" not in json.dumps(payload)
    for step in payload["steps"]:
        _assert_sane(step)


def test_bench_prints_a_table(pg_server: PostgresServer) -> None:
    """Without --json, a header and one table row per worker count."""
    result = runner.invoke(app, ["bench", pg_server.conninfo(), *_QUICK])
    assert result.exit_code == 0, result.output
    assert "pgharbor bench" in result.stdout and "ops/s" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [r[0] for r in rows if r and r[0].isdigit()] == ["1", "4"]


def test_bench_plot_writes_a_png_with_every_series(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """--plot writes a PNG whose metadata names the throughput line, the
    p50/p99 per worker count, a p50 and p99 line per worker count over time,
    and where workers first exceed the pool size (4 workers, 2 connections)."""
    from PIL import Image

    path = tmp_path / "bench.png"
    result = runner.invoke(app, ["bench", pg_server.conninfo(), *_QUICK, "--plot", str(path)])
    assert result.exit_code == 0, result.output
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1100, 840)
        text = dict(image.text)  # type: ignore[attr-defined]
    assert text["Title"] == "pgharbor bench"
    description = json.loads(text["Description"])
    assert description["series"] == [
        *("throughput", "p50", "p99"),
        *("p50 W=1", "p99 W=1", "p50 W=4", "p99 W=4"),
    ]
    assert (description["pool_size"], description["workers_over_pool_from"]) == (2, 4)
    assert description["target"].startswith(f"{pg_server.host}:{pg_server.port}/")


def test_bench_counts_query_errors_and_fails_when_all_fail(pg_server: PostgresServer) -> None:
    """A failing query is counted, not fatal; a step with nothing but errors
    exits 1 and names the first error."""
    result = runner.invoke(
        app, ["bench", pg_server.conninfo(), *_QUICK, "--query", "SELECT 1/0", "--json"]
    )
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    for step in payload["steps"]:
        assert step["ops"] == 0 and step["errors"] > 0
        assert "division by zero" in step["first_error"]
    assert "operations failed" in result.stderr


def test_bench_unreachable_target_exits_1_without_the_password() -> None:
    """An unreachable target: exit 1, a one-line error naming the target,
    never its password."""
    result = runner.invoke(
        app,
        ["bench", "postgresql://u:secretpw@127.0.0.1:1/x", *_QUICK, "--timeout", "1"],
    )
    assert result.exit_code == 1, result.output
    assert "secretpw" not in result.output
    assert "127.0.0.1:1/x as u" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["-w", "0"], "--workers"),
        (["--duration", "0"], "--duration"),
        (["--duration", "-1"], "--duration"),
        (["--pool-size", "0"], "--pool-size"),
        (["--driver", "mysql"], "--driver"),
        (["--driver", "asyncpg", "--sync"], "--sync"),
        (["--plot", "out.jpg"], "--plot"),
        (["--plot", "/no/such/dir/out.png"], "--plot"),
        (["--query", " "], "--query"),
    ],
)
def test_bench_bad_input_exits_2_naming_the_option(args: list[str], option: str) -> None:
    """Bad options fail before any server is started, naming the option."""
    result = runner.invoke(app, ["bench", "postgresql://u:secretpw@127.0.0.1:1/x", *args])
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "secretpw" not in result.output


def test_bench_bad_target_exits_2_without_the_password() -> None:
    """A malformed target is a usage error; libpq's message is redacted."""
    result = runner.invoke(app, ["bench", "postgresql://alice:p%zzSECRET@h/db"])
    assert result.exit_code == 2, result.output
    assert "SECRET" not in result.output and "TARGET" in result.output


def test_bench_without_target_runs_on_an_embedded_server(tmp_path: Path) -> None:
    """With no target, bench starts a temporary server, runs, and cleans up."""
    proc = subprocess.run(
        [sys.executable, "-m", "pgharbor.cli", "bench", "-d", "0.3", "-w", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "temporary PostgreSQL server" in proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["target"].startswith("127.0.0.1:")
    (step,) = payload["steps"]
    _assert_sane(step)
