"""The failover ledger: writers keep inserting unique keys through an
`AsyncDatabase` while its primary fails and its synchronous standby is
promoted; afterwards the new primary's ledger is checked key by key (source of
the generated sync tests, where the writers are threads)."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any

import psycopg
import pytest

from pgharbor._acompat import asleep
from pgharbor._async.database import AsyncDatabase, AsyncTransaction
from pgharbor._policy.sqlstate import sqlstate_of
from pgharbor.errors import CommitOutcomeUnknown
from pgharbor.testing import PostgresServer
from pgharbor.testing.proxy import ChaosProxy
from pgharbor.testing.server import target_url

from .helpers import wait_until

if True:  # ASYNC
    import asyncio
else:
    from concurrent.futures import ThreadPoolExecutor

pytestmark = [pytest.mark.replica, pytest.mark.slow, pytest.mark.timing]

# Seconds of timing slack on a small shared machine; CI may scale it.
SCALE = float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))
WORKERS = 4
# Every attempt writes its own row, so a transaction re-run after its COMMIT
# went through would leave two rows for one key: retries cannot hide.
INSERT = "INSERT INTO ledger (key, attempt) VALUES (%s, %s)"
READ_ONLY = "cannot execute INSERT in a read-only transaction"

if True:  # ASYNC

    async def run_together(*calls: Callable[[], Any]) -> None:
        """Run the calls concurrently (tasks); re-raise the first failure."""
        await asyncio.gather(*(call() for call in calls))

    async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking server control off the event loop."""
        return await asyncio.to_thread(fn, *args)

else:

    def run_together(*calls: Callable[[], Any]) -> None:
        """Run the calls concurrently (threads); re-raise the first failure."""
        with ThreadPoolExecutor(len(calls), thread_name_prefix="ledger") as pool:
            futures = [pool.submit(call) for call in calls]
            for future in futures:
                future.result()

    def blocking(fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking server control (the caller is a thread already)."""
        return fn(*args)


@dataclass
class Ledger:
    """What the writers saw, key by key."""

    calls: Counter[int] = field(default_factory=Counter)  # transaction bodies run per key
    outcome: dict[int, str] = field(default_factory=dict)  # acked | unknown | failed
    ops: list[tuple[int, float, float]] = field(default_factory=list)  # key, start, end
    errors: Counter[str] = field(default_factory=Counter)
    read_only: int = 0  # 25006 seen by a writer
    stop: bool = False

    def keys(self, outcome: str) -> set[int]:
        return {k for k, o in self.outcome.items() if o == outcome}

    def acked_after(self, when: float) -> list[float]:
        return sorted(end for k, _, end in self.ops if end > when and self.outcome[k] == "acked")


@pytest.fixture
def sync_pair() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A fresh primary with a *synchronous* streaming standby (so an
    acknowledged commit is on the standby's disk and survives the promotion)."""
    # The test servers default to synchronous_commit=off (speed): a commit
    # would then be acknowledged before its WAL even left the primary.
    with PostgresServer(settings={"synchronous_commit": "on"}) as primary:
        primary.execute("CREATE TABLE ledger (key bigint, attempt int, PRIMARY KEY (key, attempt))")
        replica = primary.add_replica()
        primary.set("synchronous_standby_names", "*")
        primary.wait_for_replay()  # a synchronous commit: the standby is in sync
        rows = primary.execute("SELECT sync_state FROM pg_stat_replication")
        assert rows == [("sync",)]
        yield primary, replica


def read_only_refusals(server: PostgresServer) -> int:
    """INSERTs the server refused as read-only, from its own log."""
    return Path(server.log_file).read_text(errors="replace").count(READ_ONLY)


def node_healthy(db: AsyncDatabase, name: str) -> bool:
    assert db.topology is not None
    return bool(next(n for n in db.topology.nodes() if n["name"] == name)["healthy"])


async def writer(db: AsyncDatabase, ledger: Ledger, number: int) -> None:
    """Insert fresh keys until told to stop; never reuse a key."""
    seq = 0
    while not ledger.stop:
        seq += 1
        key = number * 1_000_000 + seq

        async def body(tx: AsyncTransaction, key: int = key) -> None:
            ledger.calls[key] += 1
            await tx.execute(INSERT, (key, ledger.calls[key]), timeout=2.0)

        start = monotonic()
        try:
            await db.run_transaction(body)
        except CommitOutcomeUnknown:
            ledger.outcome[key] = "unknown"
        except Exception as exc:
            ledger.outcome[key] = "failed"
            ledger.errors[type(exc).__name__] += 1
            if sqlstate_of(exc) == "25006":
                ledger.read_only += 1
        else:
            ledger.outcome[key] = "acked"
        ledger.ops.append((key, start, monotonic()))
        if ledger.outcome[key] != "acked":
            await asleep(0.01)


@pytest.mark.parametrize("fault", ["fast", "immediate", "kill", "blackhole"])
async def test_every_acknowledged_write_survives_failover(
    sync_pair: tuple[PostgresServer, PostgresServer], app_name: str, fault: str
) -> None:
    """Writers keep going while the primary is stopped (fast, immediate),
    killed or blackholed and the standby promoted: every acknowledged key is
    on the new primary once, failed ones are not, a COMMIT with an unknown
    outcome is reported as such and never re-run, no write reaches a node in
    recovery, writes fail fast while there is no primary, and the first write
    after promote succeeds within the goal."""
    old, new = sync_pair
    # A canary: the standby's log must show exactly this one refused INSERT.
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        new.execute(INSERT, (-1, 1))
    assert read_only_refusals(new) == 1

    with contextlib.ExitStack() as stack:
        primary_url = old.url()
        proxy = None
        if fault == "blackhole":
            proxy = stack.enter_context(ChaosProxy(old.host, old.port))
            primary_url = target_url(proxy.host, proxy.port, None, "postgres", None)
        db = AsyncDatabase(
            primary=primary_url,
            replicas=[new.url()],
            application_name=app_name,
            min_size=1,
            max_size=WORKERS,
            timeout=1.0,
            connect_timeout=2,
            name="ledger",
        )
        ledger = Ledger()
        marks: dict[str, float] = {}

        async def inject() -> None:
            """The fault, the promotion, then a little more writing."""
            try:
                await wait_until(lambda: len(ledger.keys("acked")) >= 20, 10.0, "first writes")
                marks["fault"] = monotonic()
                if proxy is not None:
                    proxy.blackhole()
                elif fault == "kill":
                    await blocking(old.kill)
                else:
                    await blocking(old.stop, fault)
                # Found by the writers' errors, or (blackhole) by the probe
                # timing out: default probe_interval 1 s + probe_timeout 2 s.
                await wait_until(
                    lambda: not node_healthy(db, "primary"), 3.0 + 2.0 * SCALE, "primary lost"
                )
                marks["noticed"] = monotonic()
                await asleep(0.3)  # writes fail meanwhile, fast
                await blocking(new.promote)
                marks["promoted"] = monotonic()
                if proxy is not None:
                    # The partition ends the way TCP gives up: every session
                    # through it is reset and the old primary stays fenced off.
                    proxy.reset_all()
                    proxy.refuse()
                await wait_until(
                    lambda: bool(ledger.acked_after(marks["promoted"])),
                    3.0 * SCALE,
                    "a write on the new primary",
                )
                await asleep(0.5)
            finally:
                ledger.stop = True

        async with db:
            await run_together(inject, *(lambda n=n: writer(db, ledger, n) for n in range(WORKERS)))

    acked, unknown, failed = ledger.keys("acked"), ledger.keys("unknown"), ledger.keys("failed")
    rows = new.execute("SELECT key, attempt FROM ledger")
    present: dict[int, list[int]] = {}
    for key, attempt in rows:
        present.setdefault(key, []).append(attempt)

    # Every key once at most: nothing committed twice, nothing re-run after
    # an unknown COMMIT (that would add a second attempt's row).
    assert {k: a for k, a in present.items() if len(a) > 1} == {}
    # Every acknowledged key is there, as its last attempt.
    assert {k for k in acked if present.get(k) != [ledger.calls[k]]} == set()
    # Nothing that failed for sure, nothing never tried.
    assert set(present) - acked - unknown == set()
    # An unknown outcome is the last attempt (never followed by another).
    assert {k for k in unknown if present.get(k, [ledger.calls[k]]) != [ledger.calls[k]]} == set()
    # No write ran on a standby: no writer saw 25006 and the server refused
    # no INSERT but the canary.
    assert ledger.read_only == 0
    assert read_only_refusals(new) == 1

    # Writes failed fast while there was no primary.
    slowest = max(
        (
            end - start
            for _, start, end in ledger.ops
            if marks["noticed"] <= start < marks["promoted"]
        ),
        default=0.0,
    )
    assert slowest <= 1.0 + 1.0 * SCALE
    failover = ledger.acked_after(marks["promoted"])[0] - marks["promoted"]
    rerun = sum(1 for n in ledger.calls.values() if n > 1)
    print(
        f"\nledger[{fault}]: acked={len(acked)} unknown={len(unknown)} "
        f"(committed {len(unknown & set(present))}) failed={len(failed)} re-run={rerun} "
        f"noticed={marks['noticed'] - marks['fault']:.3f}s "
        f"first write after promote={failover:.3f}s slowest write without primary={slowest:.3f}s "
        f"errors={dict(ledger.errors)}"
    )
    assert acked and failed | unknown, "the fault was not felt"
    assert failover <= 3.0 * SCALE  # goal 1.5 s, see docs/topology.md
