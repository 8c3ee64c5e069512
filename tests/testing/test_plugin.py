"""The pytest plugin: fixtures and the leak guard."""

from __future__ import annotations

import os

import pytest
from psycopg.conninfo import make_conninfo

from pgharbor.testing import ChaosProxy, PostgresServer, TempDatabase, find_bindirs
from pgharbor.testing.plugin import app_name_for

_seen_databases: list[str] = []


def test_pg_database_is_fresh(pg_database: TempDatabase) -> None:
    """pg_database yields an empty database reachable through its conninfo."""
    import psycopg

    _seen_databases.append(pg_database.name)
    with psycopg.connect(pg_database.conninfo()) as conn:
        row = conn.execute(
            "SELECT current_database(), count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert row == (pg_database.name, 0)
    assert pg_database.url().endswith(f"/{pg_database.name}")


def test_pg_database_was_dropped(pg_server: PostgresServer) -> None:
    """The previous test's database is gone (tests run in file order)."""
    assert _seen_databases, "test_pg_database_is_fresh must run first"
    rows = pg_server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [_seen_databases[0]])
    assert rows == []


def test_pg_server_honours_requested_version(
    pg_server: PostgresServer, pytestconfig: pytest.Config
) -> None:
    """pg_server runs --pg-version, else $PGHARBOR_TEST_PG_VERSION, else the first found."""
    wanted = (
        pytestconfig.getoption("--pg-version")
        or os.environ.get("PGHARBOR_TEST_PG_VERSION")
        or find_bindirs()[0][0]
    )
    assert pg_server.version.major == int(wanted)


def test_app_name_is_unique_per_test(app_name: str, request: pytest.FixtureRequest) -> None:
    """app_name is short ASCII, derived from this test's node id only."""
    assert app_name == app_name_for(request.node.nodeid)
    assert app_name != app_name_for(request.node.nodeid + "x")
    assert app_name.isascii() and len(app_name) == 10


def test_chaos_proxy_forwards(chaos_proxy: ChaosProxy, app_name: str) -> None:
    """chaos_proxy forwards to pg_server until told otherwise."""
    import psycopg

    info = make_conninfo("", host=chaos_proxy.host, port=chaos_proxy.port, user="postgres")
    with psycopg.connect(info, application_name=app_name) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


INNER = """
import asyncio, threading, time
import psycopg
import pytest

_keep = []

def test_clean(pg_server, app_name):
    with psycopg.connect(pg_server.conninfo(application_name=app_name)):
        pass

def test_leaves_backend(pg_server, app_name):
    _keep.append(psycopg.connect(pg_server.conninfo(application_name=app_name)))

@pytest.mark.no_leak_check
def test_opted_out(pg_server, app_name):
    _keep.append(psycopg.connect(pg_server.conninfo(application_name=app_name)))

def test_leaves_thread(app_name):
    threading.Thread(target=time.sleep, args=(3,), name="sleeper").start()

@pytest.mark.asyncio
async def test_leaves_task(app_name):
    asyncio.get_running_loop().create_task(asyncio.sleep(10), name="dangling")
"""


def test_leak_guard_catches_leaks(pytester: pytest.Pytester) -> None:
    """Leftover sessions, threads and tasks fail a test that uses pgharbor's
    fixtures (the default scope of the guard); the marker opts out."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=INNER)
    # The first test checks the plugin starts no server (and imports no
    # psycopg-heavy module) for tests that do not ask for one.
    pytester.makepyfile(
        test_a_first="""
import sys
def test_no_server_imported():
    assert "pgharbor.testing.server" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=6, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_backend*",
            "*leak check: 1 session(s) with application_name=*",
            "*ERROR at teardown of test_leaves_thread*",
            "*leak check: 1 thread(s) still running: sleeper*",
            "*ERROR at teardown of test_leaves_task*",
            "*leak check: 1 asyncio task(s) still running: dangling*",
        ],
        consecutive=False,
    )


# A project that merely has pgharbor installed: its tests leave threads, tasks
# and open sockets behind, which is its own business.
FOREIGN = """
import asyncio, socket, threading, time
import pytest

_keep = []

@pytest.fixture
def worker():
    thread = threading.Thread(target=time.sleep, args=(3,), name="their-worker", daemon=True)
    thread.start()
    yield thread

def test_thread_left_running():
    threading.Thread(target=time.sleep, args=(3,), name="their-sleeper", daemon=True).start()

def test_fixture_thread_left_running(worker):
    assert worker.is_alive()

def test_socket_left_open():
    _keep.append(socket.socket())

@pytest.mark.asyncio
async def test_task_left_pending():
    asyncio.get_running_loop().create_task(asyncio.sleep(10), name="their-task")

@pytest.mark.pgharbor_leak_check
def test_opted_in():
    threading.Thread(target=time.sleep, args=(3,), name="opted-in", daemon=True).start()
"""

FOREIGN_INI = """[pytest]
asyncio_default_fixture_loop_scope = function
addopts = --strict-markers --strict-config
filterwarnings = error
"""


def test_foreign_suites_are_not_guarded(pytester: pytest.Pytester) -> None:
    """The plugin loads wherever pgharbor is installed; a project's tests that
    use none of its fixtures are not checked for leaks (only one that asks
    with the marker is), and nothing of the plugin warns or starts a server."""
    pytester.makeini(FOREIGN_INI)
    pytester.makepyfile(test_foreign=FOREIGN)
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_opted_in*",
            "*leak check: 1 thread(s) still running: opted-in*",
        ]
    )
    assert "their-" not in result.stdout.str()


def test_foreign_suite_fully_green_with_the_installed_plugin(pytester: pytest.Pytester) -> None:
    """Without the opt-in marker, such a suite is green as it is, with the
    plugin loaded from its entry point (as in any project)."""
    pytester.makeini(FOREIGN_INI)
    pytester.makepyfile(test_foreign=FOREIGN.split("@pytest.mark.pgharbor_leak_check")[0])
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*plugins:*pgharbor*"])


def test_guard_all_checks_every_test(pytester: pytest.Pytester) -> None:
    """``pgharbor_leak_guard = all`` (what pgharbor's own suite uses) checks
    every test; ``off`` none; an unknown value is a usage error."""
    pytester.makeini(FOREIGN_INI + "pgharbor_leak_guard = all\n")
    pytester.makepyfile(test_foreign=FOREIGN)
    result = pytester.runpytest_subprocess("-v")
    # Teardown errors count apart: 5 tests passed, 4 of them left a thread or a
    # task (the socket is no leak the guard counts).
    result.assert_outcomes(passed=5, errors=4)
    result.stdout.fnmatch_lines(["*leak check: 1 asyncio task(s) still running: their-task*"])
    pytester.makeini(FOREIGN_INI + "pgharbor_leak_guard = off\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=5)
    pytester.makeini(FOREIGN_INI + "pgharbor_leak_guard = some\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pgharbor_leak_guard*fixtures, all or off*"])


def test_own_suite_guards_every_test(pytestconfig: pytest.Config) -> None:
    """pgharbor's own suite keeps the guard on every test."""
    assert pytestconfig.getini("pgharbor_leak_guard") == "all"
