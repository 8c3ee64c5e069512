"""pgharbor.django: the test project's suite under Django's own test runner,
in a subprocess (Django's settings are process-wide), against real servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pgharbor.testing import PostgresServer

pytest.importorskip("django")

PROJECT = Path(__file__).parent / "django_project"


def run_django_tests(env: dict[str, str], *labels: str) -> str:
    """Run ``manage.py test`` for ``labels``; its output (fail on a failure)."""
    full = {
        **os.environ,
        **env,
        "DJANGO_SETTINGS_MODULE": "settings",
        "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "django", "test", "-v", "2", *labels],
        cwd=PROJECT,
        env=full,
        capture_output=True,
        text=True,
        timeout=110,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def ran(output: str) -> int:
    match = re.search(r"Ran (\d+) tests?", output)
    assert match, output
    return int(match.group(1))


def test_django_suite_on_a_pooled_backend(pg_server: PostgresServer, app_name: str) -> None:
    """Django's test runner creates the test database, migrates it and runs the
    app's tests (models, atomic rollback, threads, pool exhaustion) on
    ENGINE pgharbor.django; every test passes and no session is left."""
    output = run_django_tests(
        {"PGH_HOST": pg_server.host, "PGH_PORT": str(pg_server.port), "PGH_APP": app_name},
        "harborapp.tests.PooledTests",
    )
    assert ran(output) == 6
    assert "Applying harborapp.0001_initial... OK" in output
    assert pg_server.backends(app_name) == []


@pytest.mark.replica
def test_django_router_reads_from_a_replica_alias(
    pg_primary_replica: tuple[PostgresServer, PostgresServer], app_name: str
) -> None:
    """A second alias on the streaming replica (TEST MIRROR of default), chosen
    by a database router: reads run there, through its own pgharbor pool."""
    primary, replica = pg_primary_replica
    output = run_django_tests(
        {
            "PGH_HOST": primary.host,
            "PGH_PORT": str(primary.port),
            "PGH_REPLICA_PORT": str(replica.port),
            "PGH_APP": app_name,
        },
        "harborapp.tests.ReplicaTests",
    )
    assert ran(output) == 1
    assert "skipped" not in output
