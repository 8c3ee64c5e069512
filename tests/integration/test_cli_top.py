"""``pgharbor top`` against real servers: one frame, replicas, errors, an
80-column terminal, and the live view read off a pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pyte
import pytest
from typer.testing import CliRunner

from pgharbor.cli import app
from pgharbor.testing import PostgresServer, TempDatabase

runner = CliRunner()
# Wide enough that no cell of a test target is folded onto a second line.
WIDE = {"COLUMNS": "200"}

Table = list[dict[str, str]]


def _tables(lines: list[str]) -> dict[str, Table]:
    """The Clients and Nodes tables of a frame, as one dict per row (cells
    folded onto continuation lines, whose last cell is empty, are joined back)."""
    tables: dict[str, Table] = {}
    title = ""
    header: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line in ("Nodes", "Clients (pg_stat_activity)"):
            title = line.split()[0]
            tables[title] = []
        elif line.startswith("┃") and title:
            header = [c.strip() for c in line.strip("┃").split("┃")]
        elif line.startswith("│") and title and header:
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows = tables[title]
            if rows and not cells[-1]:
                for key, cell in zip(header, cells, strict=False):
                    rows[-1][key] += cell
            else:
                rows.append(dict(zip(header, cells, strict=False)))
    return tables


def _row(rows: Table, **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, rows)
    return found[0]


@contextlib.contextmanager
def _clients(conninfo: str, app_name: str, n: int, idle_in_tx: int = 0) -> Iterator[None]:
    """``n`` sessions named ``app_name``, the first ``idle_in_tx`` of them idle
    in a transaction."""
    with contextlib.ExitStack() as stack:
        for i in range(n):
            conn = stack.enter_context(
                psycopg.connect(conninfo, application_name=app_name, autocommit=i >= idle_in_tx)
            )
            conn.execute("SELECT 1")  # opens the transaction when not autocommit
        yield


def test_once_shows_the_pool_and_the_clients_the_server_sees(
    pg_server: PostgresServer, app_name: str
) -> None:
    """--once prints one frame: the pool row (primary, sizes) and, from
    pg_stat_activity, another app's 3 sessions, 1 idle in transaction."""
    with _clients(pg_server.conninfo(), app_name, 3, idle_in_tx=1):
        result = runner.invoke(app, ["top", "--once", pg_server.conninfo()], env=WIDE)
    assert result.exit_code == 0, result.output
    tables = _tables(result.output.splitlines())
    pool = _row(tables["Nodes"], database="db")
    assert pool["role"] == "primary" and pool["breaker"] == "closed"
    assert int(pool["size"]) >= 1 and pool["waiting"] == "0"
    assert pool["rtt ms p50/p99"] != "ERROR"
    client = _row(tables["Clients"], application=app_name)
    assert client["conns"] == "3" and client["idle in tx"] == "1"
    assert client["idle"] == "2" and client["oldest xact"] != "-"
    # top's own sessions are not clients.
    assert not [r for r in tables["Clients"] if r["application"] == "pgharbor-top"]


def test_once_fits_80_columns_clients_first_target_in_the_header(
    pg_database: TempDatabase, app_name: str
) -> None:
    """At 80 columns no line is wider than the terminal, the target is a
    header line, the server-side clients come before top's own nodes, and
    the columns that matter most are kept (short headings, a long
    application name folded)."""
    conninfo = pg_database.conninfo()
    long_name = f"{app_name}-billing-service-worker"
    with _clients(conninfo, app_name, 2, idle_in_tx=1), _clients(conninfo, long_name, 1):
        result = runner.invoke(app, ["top", "--once", conninfo], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    target = f"{pg_database.server.host}:{pg_database.server.port}/{pg_database.name} as "
    (header,) = [i for i, line in enumerate(lines) if target in line]
    titles = [line.strip() for line in lines]
    clients, nodes = titles.index("Clients (pg_stat_activity)"), titles.index("Nodes")
    assert header < clients < nodes
    tables = _tables(lines)
    client = _row(tables["Clients"], application=app_name)
    assert (client["conns"], client["active"], client["in tx"]) == ("2", "0", "1")
    assert client["oldest"] != "-" and client["locks"] == "0"
    assert _row(tables["Clients"], application=long_name)["conns"] == "1"
    node = _row(tables["Nodes"], database="db")
    assert node["role"] == "primary" and node["rtt p50/99"] != "ERROR"
    assert "target" not in node  # in the header, not a column


@pytest.mark.replica
def test_once_shows_primary_and_replica_from_a_config_file(
    pg_primary_replica: tuple[PostgresServer, PostgresServer], app_name: str, tmp_path: Path
) -> None:
    """A config database with replicas gets one row per node, with its role
    and, for the replica, its lag; clients are listed per node."""
    primary, replica = pg_primary_replica
    config = tmp_path / "pgharbor.toml"
    config.write_text(
        f'[databases.app]\nprimary = "{primary.url()}"\nreplicas = ["{replica.url()}"]\n'
    )
    with _clients(replica.conninfo(), app_name, 2):
        result = runner.invoke(app, ["top", "--once", "--config", str(config)], env=WIDE)
    assert result.exit_code == 0, result.output
    tables = _tables(result.output.splitlines())
    first = _row(tables["Nodes"], **{"database/node": "app/primary"})
    second = _row(tables["Nodes"], **{"database/node": "app/replica1"})
    assert first["role"] == "primary" and first["lag"] == "-"
    assert second["role"] == "replica" and " / " in second["lag"]
    clients = _row(tables["Clients"], **{"database/node": "app/replica1", "application": app_name})
    assert clients["conns"] == "2"


def test_once_unreachable_target_is_an_error_row_without_the_password() -> None:
    """An unreachable target is an error row; --once exits 1; the password
    never shows."""
    started = time.monotonic()
    result = runner.invoke(
        app, ["top", "--once", "postgresql://u:secretpw@127.0.0.1:1/x"], env=WIDE
    )
    assert result.exit_code == 1, result.output
    assert "secretpw" not in result.output
    assert time.monotonic() - started < 8
    row = _row(_tables(result.output.splitlines())["Nodes"], database="db")
    assert row["role"] == "unknown" and row["rtt ms p50/p99"] == "ERROR"
    assert "error:" in result.output and "127.0.0.1:1/x as u" in result.output


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_bad_interval_is_a_usage_error(value: str) -> None:
    """A non-positive --interval exits 2 naming the option (before connecting)."""
    result = runner.invoke(app, ["top", "--once", f"--interval={value}", "postgresql://h/x"])
    assert result.exit_code == 2
    assert "--interval" in result.output


# -- the live view -------------------------------------------------------------


class _Terminal:
    """A child process on a pseudo-terminal, and the screen it draws."""

    def __init__(self, argv: list[str], columns: int = 160, lines: int = 50) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {**os.environ, "COLUMNS": str(columns), "LINES": str(lines)}
        env["TERM"] = "xterm-256color"
        env.pop("NO_COLOR", None)
        try:
            self.proc = subprocess.Popen(
                argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
            )
        finally:
            os.close(slave)

    def read(self, timeout: float) -> None:
        """Feed whatever the child writes within ``timeout`` to the screen."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            self.stream.feed(data)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> list[str]:
        """Read until the screen satisfies ``predicate``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read(0.05)
            if predicate(self.screen.display):
                return list(self.screen.display)
            if self.proc.poll() is not None:
                break
        pytest.fail("screen never matched:\n" + "\n".join(self.screen.display).rstrip())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


def _conns(lines: list[str], app_name: str) -> str | None:
    """The app's connection count, once the whole frame is drawn (the Nodes
    table, last, has its row and bottom rule): a frame arrives in chunks."""
    if not any(line.startswith("└") for line in lines[_last_title(lines, "Nodes") :]):
        return None
    rows = _tables(lines).get("Clients", [])
    found = [r for r in rows if r.get("application") == app_name]
    return found[0].get("conns") if found else None


def _last_title(lines: list[str], title: str) -> int:
    titles = [i for i, line in enumerate(lines) if line.strip() == title]
    return titles[-1] if titles else len(lines)


def test_live_view_updates_and_exits_cleanly_on_sigint(
    pg_server: PostgresServer, app_name: str
) -> None:
    """Under a pseudo-terminal the view redraws with new sessions as they
    come, and Ctrl-C (SIGINT) ends it with status 0."""
    argv = [sys.executable, "-m", "pgharbor.cli", "top", pg_server.conninfo()]
    term = _Terminal([*argv, "--interval", "0.3"])
    try:
        with _clients(pg_server.conninfo(), app_name, 2, idle_in_tx=1):
            term.wait_for(lambda lines: _conns(lines, app_name) == "2", timeout=8)
            with _clients(pg_server.conninfo(), app_name, 2):
                screen = term.wait_for(lambda lines: _conns(lines, app_name) == "4", timeout=4)
        assert any("pgharbor top" in line and "every 0.3 s" in line for line in screen)
        assert _row(_tables(screen)["Nodes"], database="db")["role"] == "primary"
        term.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 5
        while term.proc.poll() is None and time.monotonic() < deadline:
            term.read(0.05)
        assert term.proc.poll() == 0, "\n".join(term.screen.display).rstrip()
    finally:
        term.close()
