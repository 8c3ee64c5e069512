"""A statement timeout is a contract even when the server stops answering
(source of the generated sync tests)."""

from __future__ import annotations

import os
from time import monotonic

import pytest

from pgharbor._async.database import AsyncDatabase
from pgharbor.drivers.queries_psycopg import CANCEL_GRACE
from pgharbor.testing import ChaosProxy

from .helpers import DRIVERS

SLACK = 1.0 * float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))


@pytest.mark.timing
@pytest.mark.parametrize("driver", DRIVERS)
async def test_statement_timeout_holds_against_a_silent_server(
    chaos_proxy: ChaosProxy, app_name: str, driver: str
) -> None:
    """With the network silent (the cancel request cannot get through either),
    a statement with timeout=T raises TimeoutError within T + CANCEL_GRACE;
    the cut connection is discarded and the next statement works."""
    url = f"host={chaos_proxy.host} port={chaos_proxy.port} user=postgres dbname=postgres"
    async with AsyncDatabase(
        url, driver=driver, min_size=1, max_size=2, application_name=app_name, sslmode="disable"
    ) as db:
        assert await db.fetchval("SELECT 1") == 1
        chaos_proxy.blackhole()
        started = monotonic()
        with pytest.raises(TimeoutError):
            await db.fetchval("SELECT 1", timeout=0.3)
        elapsed = monotonic() - started
        assert elapsed < 0.3 + CANCEL_GRACE + SLACK, elapsed
        chaos_proxy.heal()
        assert await db.fetchval("SELECT 2", timeout=5.0) == 2
