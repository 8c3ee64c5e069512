"""Graceful shutdown on SIGTERM, and drain, against a real server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from pgharbor import Database
from pgharbor.testing import PostgresServer, TempDatabase

SYNC_APP = """
import os, signal, threading, time
from pgharbor import Database
from pgharbor.shutdown import close_on_signals
db = Database({conninfo!r}, application_name={app!r}, min_size=2, max_size=2)
db.open()
close_on_signals(db, timeout=5)
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
with db.connection():
    time.sleep(30)  # interrupted by SIGTERM
"""

ASYNC_APP = """
import asyncio, os, signal
from pgharbor import AsyncDatabase
from pgharbor.shutdown import aclose_on_signals
async def main():
    async with AsyncDatabase({conninfo!r}, application_name={app!r}, min_size=2, max_size=2) as db:
        aclose_on_signals(db, timeout=5)
        asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)
try:
    asyncio.run(main())
except asyncio.CancelledError:
    raise SystemExit(0)
"""


@pytest.mark.parametrize(("app", "code"), [(SYNC_APP, 143), (ASYNC_APP, 0)])
def test_sigterm_closes_everything_and_exits(
    pg_database: TempDatabase, pg_server: PostgresServer, app_name: str, app: str, code: int
) -> None:
    """SIGTERM: the program exits promptly, leaving no session on the server."""
    script = textwrap.dedent(app).format(conninfo=pg_database.conninfo(), app=app_name)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, proc.stderr
    assert time.monotonic() - start < 15
    deadline = time.monotonic() + 2
    while pg_server.backends(application_name=app_name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pg_server.backends(application_name=app_name) == []


def test_drain_replaces_every_connection(pg_database: TempDatabase, app_name: str) -> None:
    """drain() replaces the connections gracefully; the database keeps working."""
    with Database(pg_database.conninfo(), application_name=app_name, min_size=2, max_size=2) as db:
        before = db.fetchval("SELECT pg_backend_pid()")
        db.drain()
        db.pool.wait(timeout=5)
        assert db.fetchval("SELECT pg_backend_pid()") != before
        assert db.stats()["connections_expired"] >= 2
