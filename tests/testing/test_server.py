"""PostgresServer: lifecycle, SQL helpers and fault controls against real servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from pgharbor.testing import PostgresNotFound, PostgresServer, find_bindirs
from pgharbor.testing._cleanup import is_alive

BINDIRS = find_bindirs()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A server this module may stop, kill and pause without disturbing others."""
    hba = ["host all alice 127.0.0.1/32 scram-sha-256"]
    with PostgresServer(hba=hba) as pg:
        yield pg


@pytest.fixture
def running(server: PostgresServer) -> PostgresServer:
    """The module server, started again if an earlier test left it down."""
    if not server.is_running:
        server.start()
    return server


@pytest.mark.parametrize("bindir", [b for _, b in BINDIRS], ids=[f"pg{m}" for m, _ in BINDIRS])
def test_lifecycle_leaves_nothing_behind(bindir: str) -> None:
    """Each installed version starts, serves conninfo and url, and is fully removed."""
    with PostgresServer(bindir=bindir) as pg:
        pid, root = pg.pid, pg.root_dir
        with psycopg.connect(pg.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(pg.url()) as conn:
            assert conn.info.port == pg.port
        assert pg.version.major == dict((b, m) for m, b in BINDIRS)[bindir]
        assert pg.version.num // 10000 == pg.version.major
    assert not is_alive(pid)
    assert not os.path.exists(root)


def test_versions_15_and_18_are_available() -> None:
    """The machine offers at least PostgreSQL 15 and 18 for the matrix."""
    assert {15, 18} <= {m for m, _ in BINDIRS}


def test_unknown_version_names_what_exists() -> None:
    """Asking for a missing version raises PostgresNotFound listing the found ones."""
    with pytest.raises(PostgresNotFound, match=r"PostgreSQL 3 not found.*15 at"):
        PostgresServer(version=3)


def test_failed_start_raises_with_log_tail() -> None:
    """A server that cannot start raises RuntimeError quoting its log."""
    pg = PostgresServer(settings={"shared_buffers": "bogus"})
    try:
        with pytest.raises(RuntimeError, match="shared_buffers"):
            pg.start()
    finally:
        pg.cleanup()


def test_conninfo_quotes_hostile_values(running: PostgresServer) -> None:
    """A value with spaces and '=' stays one parameter instead of injecting another."""
    info = conninfo_to_dict(running.conninfo(application_name="x sslmode=disable"))
    assert info["application_name"] == "x sslmode=disable"
    assert "sslmode" not in info


def test_url_quotes_user_and_password(running: PostgresServer) -> None:
    """url() percent-encodes credentials so they survive '@' and ':'."""
    assert running.url(user="a@b", password="p:w/").startswith(
        "postgresql://a%40b:p%3Aw%2F@127.0.0.1:"
    )


def test_execute_and_create_database(running: PostgresServer) -> None:
    """execute() returns rows; create_database() makes a usable database."""
    assert running.execute("SELECT %s::int + 1", [41]) == [(42,)]
    running.create_database("made_here")
    assert running.execute("SELECT current_database()", dbname="made_here") == [("made_here",)]
    running.drop_database("made_here")
    assert running.execute("SELECT 1 FROM pg_database WHERE datname='made_here'") == []


def test_scram_role_checks_password(running: PostgresServer) -> None:
    """An hba scram-sha-256 line rejects a wrong password and accepts the right one."""
    running.create_role("alice", password="s3cret'pw")
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        psycopg.connect(running.conninfo(user="alice", password="wrong")).close()
    with psycopg.connect(running.conninfo(user="alice", password="s3cret'pw")) as c:
        assert c.execute("SELECT current_user").fetchone() == ("alice",)


def test_restart_drops_sessions(running: PostgresServer, app_name: str) -> None:
    """restart() ends open sessions; new connections work on the same port."""
    port = running.port
    with psycopg.connect(running.conninfo(application_name=app_name)) as conn:
        running.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert running.port == port
    assert running.execute("SELECT 1") == [(1,)]


@pytest.mark.parametrize("mode", ["smart", "fast", "immediate"])
def test_stop_modes(running: PostgresServer, mode: str) -> None:
    """Every stop mode shuts the server down and start() brings it back."""
    running.stop(mode)  # type: ignore[arg-type]
    assert not running.is_running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(running.conninfo(connect_timeout=2)).close()
    running.start()
    assert running.execute("SELECT 1") == [(1,)]


def test_kill_then_start(running: PostgresServer) -> None:
    """kill() SIGKILLs the whole server; start() recovers it with its data."""
    # The server runs with synchronous_commit=off: only a synchronous commit
    # is guaranteed to be in the WAL when the SIGKILL lands.
    info = running.conninfo(options="-c synchronous_commit=on")
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survives (x int)")
    pid = running.pid
    running.kill()
    assert not is_alive(pid)
    running.start()
    assert running.execute("SELECT count(*) FROM survives") == [(0,)]


@pytest.mark.timing
def test_pause_blocks_connects_until_resume(running: PostgresServer) -> None:
    """A paused server accepts TCP but never answers; resume() makes it work."""
    running.pause()
    try:
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(running.conninfo(connect_timeout=2)).close()
        assert time.monotonic() - t0 >= 1.9
    finally:
        running.resume()
    assert running.execute("SELECT 1") == [(1,)]


def test_terminate_backends_by_application_name(running: PostgresServer, app_name: str) -> None:
    """terminate_backends(name) ends only the sessions carrying that name."""
    other = app_name + "-other"
    with (
        psycopg.connect(running.conninfo(application_name=app_name)) as mine,
        psycopg.connect(running.conninfo(application_name=other)) as theirs,
    ):
        assert running.backends(app_name) == [mine.info.backend_pid]
        assert running.terminate_backends(app_name) == 1
        assert running.backends(app_name) == []
        with pytest.raises(psycopg.OperationalError):
            mine.execute("SELECT 1")
        assert theirs.execute("SELECT 1").fetchone() == (1,)


def test_set_changes_setting_for_new_sessions(running: PostgresServer) -> None:
    """set() applies through ALTER SYSTEM and reload; reset() undoes it."""
    try:
        running.set("work_mem", "7MB")
        assert running.execute("SHOW work_mem") == [("7MB",)]
        running.set("log_line_prefix", "it's %m ")
        assert running.execute("SHOW log_line_prefix") == [("it's %m ",)]
    finally:
        running.reset()
    assert running.execute("SHOW work_mem") == [("4MB",)]


EXIT_SCRIPT = """
import sys
from pgharbor.testing import PostgresServer
pg = PostgresServer()
pg.start()
print(pg.pid, pg.root_dir, flush=True)
sys.modules["__main__"].kept = pg  # still referenced at exit: only atexit helps
raise SystemExit(3)
"""


def test_interpreter_exit_cleans_up() -> None:
    """A server never cleaned up explicitly dies with the interpreter, dir included."""
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    pid_text, root = proc.stdout.split()
    assert not is_alive(int(pid_text))
    assert not os.path.exists(root)


def test_keep_preserves_directory_for_debugging() -> None:
    """keep=True stops the server on cleanup but leaves its directory and log."""
    pg = PostgresServer(keep=True)
    try:
        pg.start()
        pid, root = pg.pid, pg.root_dir
        pg.cleanup()
        assert not is_alive(pid)
        assert os.path.exists(os.path.join(root, "postgres.log"))
    finally:
        shutil.rmtree(pg.root_dir, ignore_errors=True)


def test_conninfo_host_and_port_can_be_overridden(pg_server: PostgresServer) -> None:
    """conninfo(host=..., port=...) points elsewhere (e.g. at a ChaosProxy)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(pg_server.conninfo(host="127.0.0.9", port=1234, sslmode="disable"))
    assert (params["host"], params["port"], params["sslmode"]) == ("127.0.0.9", "1234", "disable")
    assert params["dbname"] == "postgres"
