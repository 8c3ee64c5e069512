"""pytest plugin: server fixtures and a leak guard (backends, threads, tasks).

Registered through the ``pytest11`` entry point, so it loads in every pytest
run of an environment with pgharbor installed. Hence it imports nothing heavy
at module level, starts no server until a fixture asks for one, and by default
guards only the tests that use its fixtures: other projects' tests, which may
leave threads and tasks behind on purpose, are not its business.

The ``pgharbor_leak_guard`` ini option sets the scope: ``fixtures`` (default:
tests that use ``pg_server``, ``pg_database``, ``pg_primary_replica``,
``pgbouncer``, ``chaos_proxy`` or ``app_name``, directly or through another
fixture), ``all`` (every test; pgharbor's own suite) or ``off``. The markers
``pgharbor_leak_check`` and ``no_leak_check`` opt one test in or out.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgharbor.testing.pgbouncer import PgBouncer
    from pgharbor.testing.proxy import ChaosProxy
    from pgharbor.testing.server import PostgresServer, TempDatabase

__all__ = [
    "FIXTURES",
    "app_name",
    "app_name_for",
    "chaos_proxy",
    "pg_database",
    "pg_primary_replica",
    "pg_server",
    "pgbouncer",
]

# The session server, once some test asked for it; the leak guard looks here
# instead of requesting the fixture, which would start a server for every test.
_SERVER_KEY = pytest.StashKey["PostgresServer"]()
_CALL_FAILED_KEY = pytest.StashKey[bool]()

# Threads that legitimately outlive a test: our own helpers (the chaos
# proxy's loop thread is torn down by its fixture, but a session-scoped one
# may exist) and an event loop's default executor, which lives as long as the
# loop (pytest-asyncio shuts it down with the loop, not with the test).
_IGNORED_THREAD_PREFIXES = ("pgharbor-testing", "asyncio_")
_GRACE = 1.0

#: The fixtures whose users the leak guard checks by default.
FIXTURES = frozenset(
    {"pg_server", "pg_database", "pg_primary_replica", "pgbouncer", "chaos_proxy", "app_name"}
)
_SCOPES = ("fixtures", "all", "off")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgharbor")
    group.addoption(
        "--pg-version",
        type=int,
        default=None,
        help="PostgreSQL major version for the pg_server fixtures "
        "(default: $PGHARBOR_TEST_PG_VERSION, else the first one found)",
    )
    parser.addini(
        "pgharbor_leak_guard",
        "which tests pgharbor's leak guard checks: fixtures (those using pgharbor's "
        "fixtures; default), all, or off",
        default="fixtures",
    )


def pytest_configure(config: pytest.Config) -> None:
    scope = config.getini("pgharbor_leak_guard")
    if scope not in _SCOPES:
        raise pytest.UsageError(
            f"pgharbor_leak_guard = {scope!r}: must be one of {', '.join(_SCOPES[:-1])} or off"
        )
    config.addinivalue_line(
        "markers",
        "no_leak_check: skip pgharbor's leak guard (server backends, threads, "
        "asyncio tasks) for this test",
    )
    config.addinivalue_line(
        "markers",
        "pgharbor_leak_check: apply pgharbor's leak guard to this test although it "
        "uses none of pgharbor's fixtures",
    )


def _guarded(item: pytest.Item) -> bool:
    """Whether the leak guard checks ``item`` (see the module docstring)."""
    if item.get_closest_marker("no_leak_check"):
        return False
    scope = item.config.getini("pgharbor_leak_guard")
    if scope == "off":
        return False
    if scope == "all" or item.get_closest_marker("pgharbor_leak_check"):
        return True
    # The closure: a project fixture built on pg_server counts too.
    return not FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def _pg_version(config: pytest.Config) -> int | None:
    option = config.getoption("--pg-version", default=None)
    if option is not None:
        return int(option)
    env = os.environ.get("PGHARBOR_TEST_PG_VERSION")
    return int(env) if env else None


def app_name_for(nodeid: str) -> str:
    """The ``application_name`` the ``app_name`` fixture gives test *nodeid*.

    Short, ASCII and stable, so server-side counting is exact even when many
    test processes share one server.
    """
    return "t-" + hashlib.sha1(nodeid.encode()).hexdigest()[:8]


# -- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A PostgreSQL server shared by the whole session (started on first use).

    Tests that change its settings should undo them (``reset()``), tests that
    stop it should start it again.
    """
    from pgharbor.testing.server import PostgresServer

    server = PostgresServer(version=_pg_version(request.config))
    try:
        server.start()
        request.config.stash[_SERVER_KEY] = server
        yield server
    finally:
        if _SERVER_KEY in request.config.stash:
            del request.config.stash[_SERVER_KEY]
        server.cleanup()


@pytest.fixture
def pg_database(pg_server: PostgresServer) -> Iterator[TempDatabase]:
    """A fresh, empty database on ``pg_server``, dropped after the test."""
    from pgharbor.testing.server import TempDatabase

    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    try:
        yield TempDatabase(pg_server, name)
    finally:
        if pg_server.is_running:
            pg_server.drop_database(name, force=True)


@pytest.fixture(scope="module")
def pg_primary_replica(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and its streaming replica, fresh for each test module."""
    from pgharbor.testing.server import PostgresServer

    primary = PostgresServer(version=_pg_version(request.config))
    try:
        primary.start()
        yield primary, primary.add_replica()
    finally:
        primary.cleanup()  # takes the replica with it


@pytest.fixture
def pgbouncer(pg_server: PostgresServer) -> Iterator[PgBouncer]:
    """A transaction-mode PgBouncer in front of ``pg_server``.

    Skips the test when the ``pgbouncer`` binary is not installed.
    """
    from pgharbor.testing.pgbouncer import PgBouncer, pgbouncer_available

    if not pgbouncer_available():
        pytest.skip("pgbouncer binary not found")
    with PgBouncer(pg_server, pool_mode="transaction") as bouncer:
        yield bouncer


@pytest.fixture
def chaos_proxy(pg_server: PostgresServer) -> Iterator[ChaosProxy]:
    """A fault-injecting TCP proxy in front of ``pg_server``."""
    from pgharbor.testing.proxy import ChaosProxy

    with ChaosProxy(pg_server.host, pg_server.port) as proxy:
        yield proxy


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    """A unique ``application_name`` for this test; the leak guard counts it."""
    return app_name_for(request.node.nodeid)


# -- leak guard ---------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        # A failed test has already said what is wrong; leaks that follow
        # from the failure would only bury the message.
        item.stash[_CALL_FAILED_KEY] = report.failed
    return report


@pytest.fixture
def _pgharbor_leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test (at teardown) that leaves sessions or threads behind.

    Placed first in a guarded test's fixtures (see
    `pytest_collection_modifyitems`), so it runs after every other
    function-scoped fixture has been torn down: a pool fixture that closes its
    connections is not counted as a leak.
    """
    threads_before = set(threading.enumerate())
    yield
    failed = request.node.stash.get(_CALL_FAILED_KEY, False)
    problems: list[str] = []

    server = request.config.stash.get(_SERVER_KEY, None)
    if server is not None and server.is_running:
        name = app_name_for(request.node.nodeid)
        pids = _settled_backends(server, name)
        if pids:
            problems.append(
                f"{len(pids)} session(s) with application_name={name!r} still "
                f"open on {server!r}: pids {pids}"
            )
            # Free the server for the next test whatever the verdict.
            server.terminate_backends(name)

    leftover = _settled_threads(threads_before)
    if leftover:
        names = ", ".join(sorted(t.name for t in leftover))
        problems.append(f"{len(leftover)} thread(s) still running: {names}")

    if problems and not failed:
        pytest.fail("leak check: " + "; ".join(problems), pytrace=False)


def _settled_backends(server: PostgresServer, name: str) -> list[int]:
    """Poll for up to the grace period: closing sessions exit asynchronously."""
    import psycopg

    deadline = time.monotonic() + _GRACE
    while True:
        try:
            pids = server.backends(name)
        except psycopg.Error:
            return []  # the test left the server unreachable (paused, ...)
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.02)


def _settled_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    deadline = time.monotonic() + _GRACE
    leftover = []
    for thread in threading.enumerate():
        if thread in before or thread.name.startswith(_IGNORED_THREAD_PREFIXES):
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leftover.append(thread)
    return leftover


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The guards are fixtures placed first in each guarded test's fixtures, so
    # unguarded tests (other projects') do not even see them. Tasks are
    # checked by an async fixture placed before the thread and session guard
    # in coroutine tests: it is torn down after the test's own fixtures (a
    # pool fixture closing its pool is no leak) and before the event loop
    # closes (which would cancel leftover tasks and hide them).
    for item in items:
        if not isinstance(item, pytest.Function) or not _guarded(item):
            continue
        item.fixturenames.insert(0, "_pgharbor_leak_guard")
        if _task_guard is not None and inspect.iscoroutinefunction(item.obj):
            item.fixturenames.insert(0, "_pgharbor_task_guard")


async def _guard_tasks() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    before = asyncio.all_tasks(loop)
    yield
    me = asyncio.current_task()
    deadline = loop.time() + _GRACE
    while left := asyncio.all_tasks(loop) - before - {me}:
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.01)
    if left:
        # Cancel them so the loop can close cleanly, then report.
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=_GRACE)
        names = ", ".join(sorted(t.get_name() for t in left))
        pytest.fail(
            f"leak check: {len(left)} asyncio task(s) still running: {names}",
            pytrace=False,
        )


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the guard needs pytest-asyncio
    _task_guard = None
else:
    _task_guard = pytest_asyncio.fixture(name="_pgharbor_task_guard")(_guard_tasks)
