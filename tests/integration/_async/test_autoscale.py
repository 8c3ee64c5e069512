"""A pool that sizes itself, against real PostgreSQL servers: the step load
(shortened), the server's connection limits as a cap, and `Database`'s
setting (source of the generated sync tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pgharbor._acompat import ajoin, asleep, aspawn
from pgharbor._async.database import AsyncDatabase
from pgharbor._async.pool import AsyncPool
from pgharbor._policy.autoscale import Autoscale
from pgharbor.errors import ConfigError
from pgharbor.metrics import Event
from pgharbor.testing import PostgresServer

from .helpers import query, wait_until

# Short periods, so the step load takes seconds, not minutes.
QUICK = Autoscale(window=0.5, interval=0.25, grow_after=0.25, shrink_after=0.75)


class StepLoad:
    """Workers (tasks; threads in the sync flavour) that each loop: acquire,
    ``SELECT pg_sleep(0.005)``, release; their number changes in steps."""

    def __init__(self, pool: AsyncPool) -> None:
        self.pool = pool
        self.wanted = 0
        self.workers: list[Any] = []
        self.group: set[Any] = set()
        self.errors: list[BaseException] = []

    async def step(self, n: int) -> None:
        """Run ``n`` workers from now on (the extra ones finish their loop)."""
        self.wanted = n
        while len(self.workers) < n:
            i = len(self.workers)
            self.workers.append(aspawn(self._work, i, name=f"worker{i}", group=self.group))
        keep = []
        for i, worker in enumerate(self.workers):
            if i < n:
                keep.append(worker)
            else:
                await ajoin(worker, 10.0)
        self.workers = keep

    async def _work(self, i: int) -> None:
        try:
            while i < self.wanted:
                async with self.pool.connection() as conn:
                    await query(conn, "SELECT pg_sleep(0.005)")
        except Exception as exc:  # the test looks at them
            self.errors.append(exc)


@pytest.fixture
async def step_load() -> AsyncIterator[list[StepLoad]]:
    """Step loads, stopped after the test."""
    loads: list[StepLoad] = []
    yield loads
    for load in loads:
        await load.step(0)


@pytest.mark.slow
async def test_a_step_load_grows_the_pool_fast_and_shrinks_it_slowly(
    pg_server: PostgresServer, app_name: str, driver: str, step_load: list[StepLoad]
) -> None:
    """2 -> 16 -> 2 -> 0 workers on a pool of min 2, max 16: it grows to 16
    soon after the step up (every connection opened at once), keeps them
    while the load lasts, shrinks after the load falls, says why each time,
    and stops sampling once idle at its floor; the server sees exactly the
    pool's connections throughout."""
    events: list[Event] = []
    async with AsyncPool(
        pg_server.conninfo(),
        driver=driver,
        min_size=2,
        max_size=16,
        autoscale=QUICK,
        name="auto",
        kwargs={"application_name": app_name},
    ) as pool:
        pool.on("resize", events.append)
        load = StepLoad(pool)
        step_load.append(load)
        await load.step(2)
        await asleep(0.5)
        assert pool.stats()["size"] == 2 and not events  # two workers fit in two

        await load.step(16)
        await wait_until(lambda: pool.stats()["size"] == 16, 10.0, "grown to 16")
        assert events[0].reason == "demand" and events[0].size is not None
        assert events[0].size > 2 and "demand" in (events[0].detail or "")
        assert len(pg_server.backends(application_name=app_name)) == 16
        await asleep(1.0)  # the load lasts: nothing is given back meanwhile
        assert pool.stats()["size"] == 16 and [e.reason for e in events] == ["demand"] * len(events)

        await load.step(2)
        await wait_until(lambda: pool.stats()["target_size"] <= 3, 10.0, "shrunk")
        assert events[-1].reason == "quiet" and "for 0.75 s" in (events[-1].detail or "")
        await wait_until(lambda: pool.stats()["size"] <= 3, 5.0, "connections closed")
        await wait_until(
            lambda: len(pg_server.backends(application_name=app_name)) == pool.stats()["size"],
            5.0,
            "the server sees the pool's connections",
        )

        await load.step(0)
        await wait_until(lambda: pool.stats()["target_size"] == 2, 10.0, "back at the floor")
        status = pool.autoscale
        assert status is not None
        await wait_until(lambda: not pool.autoscale.sampling, 5.0, "sampling stops")  # type: ignore[union-attr]
        samples = pool.autoscale.samples  # type: ignore[union-attr]
        await asleep(1.0)
        assert pool.autoscale.samples == samples  # type: ignore[union-attr]
        stats = pool.stats()
        assert stats["timeouts"] == 0 and stats["connections_failed"] == 0
        assert stats["autoscale_resizes"] == len(events)
        assert not load.errors
    assert pg_server.backends(application_name=app_name) == []


async def test_the_servers_connection_limit_caps_the_pool(
    pg_server: PostgresServer, app_name: str, driver: str, step_load: list[StepLoad]
) -> None:
    """A role with CONNECTION LIMIT 5 under a load of 12 workers: the pool
    (max 20) grows to the 5 sessions the server leaves it, never tries a
    sixth, and says the server capped it."""
    role = f"r_{app_name.replace('-', '_')}"
    pg_server.create_role(role)
    pg_server.execute(f"ALTER ROLE {role} CONNECTION LIMIT 5")
    try:
        events: list[Event] = []
        async with AsyncPool(
            pg_server.conninfo(user=role),
            driver=driver,
            min_size=1,
            max_size=20,
            autoscale=QUICK,
            kwargs={"application_name": app_name},
        ) as pool:
            pool.on("resize", events.append)
            load = StepLoad(pool)
            step_load.append(load)
            await load.step(12)
            await wait_until(lambda: bool(events), 10.0, "a resize")
            await asleep(1.0)
            stats = pool.stats()
            assert stats["target_size"] == 5 and stats["autoscale_cap"] == 5
            assert stats["connections_failed"] == 0
            assert "capped at 5 (the server leaves 5)" in (events[0].detail or "")
            # Readings taken while siblings were still opening never made it
            # cap itself lower than that.
            assert [e.reason for e in events] == ["demand"], [e.detail for e in events]
            status = pool.autoscale
            assert status is not None and status.room == 5
            await load.step(0)
            assert not load.errors
    finally:
        pg_server.execute(f"DROP ROLE IF EXISTS {role}")


async def test_a_server_that_refuses_as_full_caps_the_pool(
    pg_server: PostgresServer, app_name: str, driver: str, step_load: list[StepLoad]
) -> None:
    """Without reading the server's room (server_room=False), connection
    attempts refused with too_many_connections cap the target at the size
    the pool reached, and no further attempt is made meanwhile."""
    role = f"r_{app_name.replace('-', '_')}"
    pg_server.create_role(role)
    pg_server.execute(f"ALTER ROLE {role} CONNECTION LIMIT 4")
    blind = Autoscale(
        window=0.5, interval=0.25, grow_after=0.25, shrink_after=0.75, server_room=False
    )
    try:
        events: list[Event] = []
        async with AsyncPool(
            pg_server.conninfo(user=role),
            driver=driver,
            min_size=1,
            max_size=20,
            autoscale=blind,
            kwargs={"application_name": app_name},
        ) as pool:
            pool.on("resize", events.append)
            load = StepLoad(pool)
            step_load.append(load)
            await load.step(12)
            await wait_until(lambda: any(e.reason == "server_room" for e in events), 10.0, "capped")
            capped = next(e for e in events if e.reason == "server_room")
            assert capped.size == 4 and "refused a connection as full" in (capped.detail or "")
            # Attempts already on their way when the cap came may still fail;
            # none starts after.
            await wait_until(lambda: pool.stats()["connecting"] == 0, 5.0, "attempts settled")
            failed = pool.stats()["connections_failed"]
            await asleep(1.0)
            stats = pool.stats()
            assert stats["size"] == 4 and stats["target_size"] == 4
            assert stats["connections_failed"] == failed  # no attempt while capped
            await load.step(0)
            assert not load.errors  # callers were served by the four
    finally:
        pg_server.execute(f"DROP ROLE IF EXISTS {role}")


async def test_a_database_sizes_itself_from_its_settings(
    pg_server: PostgresServer, app_name: str, driver: str
) -> None:
    """Database(autoscale=...) is a setting like the others: its pool
    follows the demand of concurrent statements, and reports it in stats."""
    async with AsyncDatabase(
        pg_server.conninfo(),
        driver=driver,
        min_size=1,
        max_size=8,
        autoscale={"window": 0.5, "interval": 0.25, "grow_after": 0.25, "shrink_after": 0.75},
        application_name=app_name,
    ) as db:
        group: set[Any] = set()

        async def statements() -> None:
            for _ in range(60):
                await db.fetchval("SELECT pg_sleep(0.005)")

        workers = [aspawn(statements, name=f"s{i}", group=group) for i in range(6)]
        for worker in workers:
            await ajoin(worker, 30.0)
        stats = db.stats()
        assert stats["target_size"] > 1 and stats["autoscale_resizes"] >= 1
        status = db.pool.autoscale
        assert status is not None and status.reason == "demand"
    with pytest.raises(ConfigError, match=r"max_size \(5\) must be above min_size \(5\)"):
        AsyncDatabase(pg_server.conninfo(), driver=driver, min_size=5, autoscale=True)
