"""The soak's clients: pools and databases, their workers and their checks.

Source of the generated sync module, whose workers are threads; here they
are tasks on one event loop. A worker loops on one operation at a time: a
write (one key, autocommit), a transaction (two keys, committed together) or
a read of a key its client saw acknowledged (which must be there, once).
`Pool` workers use the native connection; `Database` workers the query
helpers, whose statements carry ``timeout=STATEMENT``.
"""

from __future__ import annotations

import random
import threading
from time import monotonic
from typing import Any

from psycopg.pq import TransactionStatus

from pgharbor._acompat import asleep
from pgharbor._async.database import AsyncDatabase
from pgharbor._async.pool import AsyncPool

from ..soak import (
    ACQUIRE,
    CHECK_TIMEOUT,
    CONNECT_TIMEOUT,
    ERROR_PAUSE,
    POOL_SIZE,
    READ,
    SLOW_WRITE,
    SLOW_WRITE_SHARE,
    STATEMENT,
    THINK,
    WORKERS,
    WRITE,
    ClientSpec,
    Recorder,
    sizes_ok,
)

if True:  # ASYNC
    import asyncio

Client = AsyncPool | AsyncDatabase


async def open_client(spec: ClientSpec, conninfo: str) -> Client:
    """Open the pool or database ``spec`` describes (``min_size`` connections ready)."""
    common: dict[str, Any] = {
        "driver": spec.driver,
        "name": spec.name,
        "min_size": POOL_SIZE,
        "max_size": POOL_SIZE,
        "timeout": ACQUIRE,
        "check_timeout": CHECK_TIMEOUT,
        "connect_timeout": CONNECT_TIMEOUT,
    }
    client: Client
    if spec.kind == "Pool":
        client = AsyncPool(conninfo, kwargs={"application_name": spec.app}, **common)
    else:
        client = AsyncDatabase(conninfo, application_name=spec.app, **common)
    await client.open()
    return client


def pool_of(client: Client) -> AsyncPool:
    """The pool behind a client."""
    return client if isinstance(client, AsyncPool) else client.pool


async def native(conn: Any, driver: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """Run one statement on a native connection; the first value, if any."""
    if driver == "asyncpg":
        return await conn.fetchval(sql, *params, timeout=STATEMENT)
    if driver == "psycopg2":
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            row = cur.fetchone() if cur.description else None
        return row[0] if row else None
    if True:  # ASYNC
        async with asyncio.timeout(STATEMENT):
            cur = await conn.execute(sql, params or None)
            row = await cur.fetchone() if cur.description else None
    else:
        cur = conn.execute(sql, params or None)
        row = cur.fetchone() if cur.description else None
    return row[0] if row else None


def checkout_problem(conn: Any, driver: str) -> str | None:
    """What is wrong with a connection just lent, seen without I/O; None if nothing."""
    if driver == "asyncpg":
        if conn.is_closed():
            return "closed"
        return "in a transaction" if conn.is_in_transaction() else None
    if driver == "psycopg2":
        if conn.closed:
            return "closed"
        status = conn.get_transaction_status()  # 0: TRANSACTION_STATUS_IDLE
        if status != 0:
            return f"transaction status {status}"
        return None if conn.autocommit else "not in autocommit"
    if conn.closed or conn.broken:
        return "closed"
    if conn.info.transaction_status != TransactionStatus.IDLE:
        return f"transaction status {conn.info.transaction_status.name}"
    return None if conn.autocommit else "not in autocommit"


def _plan(spec: ClientSpec, rec: Recorder, rng: random.Random) -> tuple[str, tuple[int, ...]]:
    """The next operation and its keys: fresh ones to write, or one to read."""
    roll = rng.random()
    if roll >= 0.7:
        key = rec.acked_key(spec, rng.random())
        if key is not None:
            return "read", (key,)
    if 0.55 <= roll < 0.7:
        return "tx", (rec.key(), rec.key())
    return "write", (rec.key(),)


def _pause(rng: random.Random) -> float:
    return SLOW_WRITE if rng.random() < SLOW_WRITE_SHARE else 0.0


async def pool_op(pool: AsyncPool, spec: ClientSpec, rec: Recorder, rng: random.Random) -> str:
    """One operation on a native connection; raises what it met."""
    op, keys = _plan(spec, rec, rng)
    write, read = spec.sql(WRITE), spec.sql(READ)
    if op == "tx":
        with rec.lock:
            rec.pairs.append((keys[0], keys[1]))
    stage, t0 = "acquire", monotonic()
    t1 = t0
    try:
        async with pool.connection() as conn:
            t1 = monotonic()
            rec.timed(spec, "acquire", t1 - t0, ACQUIRE, "ok")
            stage = "statement"
            problem = checkout_problem(conn, spec.driver)
            if problem is not None:
                rec.bad_checkout(spec, problem)
            if op == "read":
                count = await native(conn, spec.driver, read, keys)
                if count != 1:
                    rec.read_missing(spec, keys[0], count)
            elif op == "write":
                await native(conn, spec.driver, write, (keys[0], spec.name, _pause(rng)))
                rec.ack(spec, *keys)
            else:
                await native(conn, spec.driver, "BEGIN")
                for key in keys:
                    await native(conn, spec.driver, write, (key, spec.name, _pause(rng)))
                await native(conn, spec.driver, "COMMIT")
                rec.ack(spec, *keys)
            stage, t1 = "release", monotonic()
    except Exception as exc:
        now = monotonic()
        if stage == "acquire":
            rec.timed(spec, "acquire", now - t0, ACQUIRE, type(exc).__name__)
        elif stage == "release":
            rec.timed(spec, "release", now - t1, CHECK_TIMEOUT, type(exc).__name__)
        rec.fail(spec, exc, keys if op != "read" and stage != "release" else (), op)
        raise
    rec.timed(spec, "release", monotonic() - t1, CHECK_TIMEOUT, "ok")
    return op


async def db_op(db: AsyncDatabase, spec: ClientSpec, rec: Recorder, rng: random.Random) -> str:
    """One operation through the query helpers; raises what it met."""
    op, keys = _plan(spec, rec, rng)
    write, read = spec.sql(WRITE), spec.sql(READ)
    # Acquire, then each statement within its timeout (COMMIT has none).
    budget = ACQUIRE + STATEMENT * (2 if op == "tx" else 1)
    t0 = monotonic()
    try:
        if op == "read":
            count = await db.fetchval(read, keys, timeout=STATEMENT)
            if count != 1:
                rec.read_missing(spec, keys[0], count)
        elif op == "write":
            await db.fetchval(write, (keys[0], spec.name, _pause(rng)), timeout=STATEMENT)
            rec.ack(spec, *keys)
        else:
            with rec.lock:
                rec.pairs.append((keys[0], keys[1]))
            async with db.transaction() as tx:
                for key in keys:
                    await tx.fetchval(write, (key, spec.name, _pause(rng)), timeout=STATEMENT)
            rec.ack(spec, *keys)
    except Exception as exc:
        rec.timed(spec, op, monotonic() - t0, budget, type(exc).__name__)
        rec.fail(spec, exc, keys if op != "read" else (), op)
        raise
    rec.timed(spec, op, monotonic() - t0, budget, "ok")
    return op


async def worker(
    client: Client, spec: ClientSpec, rec: Recorder, stop: threading.Event, number: int
) -> None:
    """Operations until ``stop``: up to THINK s apart, ERROR_PAUSE s after a failure."""
    rng = random.Random(f"{spec.name}-{number}")
    while not stop.is_set():
        try:
            if isinstance(client, AsyncPool):
                op = await pool_op(client, spec, rec, rng)
            else:
                op = await db_op(client, spec, rec, rng)
        except Exception:
            await asleep(ERROR_PAUSE)
            continue
        rec.success(spec, number, op)
        # A moment of thinking: connections sometimes sit idle, as in real
        # applications, so faults also meet idle ones.
        await asleep(rng.uniform(0.0, THINK))


async def monitor(clients: dict[ClientSpec, Client], rec: Recorder, stop: threading.Event) -> None:
    """Check every pool's counts against its bounds, every 20 ms, until ``stop``."""
    while not stop.is_set():
        for spec, client in clients.items():
            stats = pool_of(client).stats()
            if not sizes_ok(stats):
                rec.bad_sizes(spec, stats)
        await asleep(0.02)


async def run_workers(
    clients: dict[ClientSpec, Client], rec: Recorder, stop: threading.Event
) -> None:
    """Run ``WORKERS`` workers per client and the monitor until ``stop``."""
    if True:  # ASYNC
        tasks = [
            asyncio.create_task(worker(client, spec, rec, stop, n), name=f"soak-{spec.name}-{n}")
            for spec, client in clients.items()
            for n in range(WORKERS)
        ]
        tasks.append(asyncio.create_task(monitor(clients, rec, stop), name="soak-monitor"))
        await asyncio.gather(*tasks)
    else:
        # Daemons: a worker stuck for good must fail the soak, not hang it.
        threads = [
            threading.Thread(
                target=worker,
                args=(client, spec, rec, stop, n),
                name=f"soak-{spec.name}-{n}",
                daemon=True,
            )
            for spec, client in clients.items()
            for n in range(WORKERS)
        ]
        monitor_thread = threading.Thread(
            target=monitor, args=(clients, rec, stop), name="soak-monitor", daemon=True
        )
        threads.append(monitor_thread)
        for t in threads:
            t.start()
        for t in threads:
            t.join()


async def settle(client: Client, timeout: float = 5.0) -> dict[str, Any]:
    """Ping idle connections, replace the dead, and wait until nothing is
    being opened or held; the pool's stats then."""
    pool = pool_of(client)
    await pool.check()
    deadline = monotonic() + timeout
    while True:
        stats: dict[str, Any] = dict(pool.stats())
        quiet = stats["connecting"] == 0 and stats["in_use"] == 0
        if (quiet and stats["size"] >= stats["min_size"]) or monotonic() > deadline:
            return stats
        await asleep(0.02)
