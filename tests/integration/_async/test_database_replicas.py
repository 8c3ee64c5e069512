"""AsyncDatabase with a primary and a streaming replica (source of the sync twin)."""

from __future__ import annotations

import pytest

from pgharbor._async.database import AsyncDatabase
from pgharbor.testing import PostgresServer

from .helpers import DRIVERS

pytestmark = pytest.mark.replica


@pytest.mark.parametrize("driver", DRIVERS)
async def test_writes_to_primary_reads_where_asked(
    pg_primary_replica: tuple[PostgresServer, PostgresServer], app_name: str, driver: str
) -> None:
    """execute and transactions reach the primary; route="replica" and
    read-only transactions reach the replica; the default read is the primary."""
    primary, replica = pg_primary_replica
    async with AsyncDatabase(
        primary=primary.url(),
        replicas=[replica.url()],
        driver=driver,
        application_name=app_name,
        min_size=1,
        max_size=2,
        name="shop",
    ) as db:
        in_recovery = "SELECT pg_is_in_recovery()"
        assert await db.fetchval(in_recovery) is False
        assert await db.fetchval(in_recovery, route="replica") is True
        await db.execute("CREATE TABLE IF NOT EXISTS routed (x int)")
        async with db.transaction() as tx:
            assert await tx.fetchval(in_recovery) is False
            await tx.execute("INSERT INTO routed VALUES (1)")
        async with db.transaction(read_only=True) as tx:
            assert await tx.fetchval(in_recovery) is True
        assert db.topology is not None
        roles = {n["name"]: n["role"] for n in db.topology.nodes()}
        assert roles == {"primary": "primary", "replica1": "standby"}
        assert "shop" in repr(db)
