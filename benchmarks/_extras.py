"""Figures beyond throughput: opening a pool, memory over many cycles, restarts.

Each returns a plain dict (JSON-ready); timings are medians of a few tries.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg
import psycopg2

from ._candidates import Target, pgharbor_class

__all__ = ["memory_growth", "open_pool_ratio", "restart_recovery"]

OPEN_SIZE = 20


# -- opening a pool of 20 vs one connection ----------------------------------------


def _time_sync_open(target: Target, driver: str) -> float:
    t0 = time.perf_counter()
    pool = pgharbor_class("Pool")(
        target.conninfo, driver=driver, min_size=OPEN_SIZE, max_size=OPEN_SIZE
    )
    pool.open(wait=True)
    elapsed = time.perf_counter() - t0
    pool.close()
    return elapsed


async def _time_async_open(target: Target, driver: str) -> float:
    t0 = time.perf_counter()
    pool = pgharbor_class("AsyncPool")(
        target.conninfo, driver=driver, min_size=OPEN_SIZE, max_size=OPEN_SIZE
    )
    await pool.open(wait=True)
    elapsed = time.perf_counter() - t0
    await pool.close()
    return elapsed


def _connect(target: Target, driver: str) -> Any:
    if driver == "psycopg2":
        return psycopg2.connect(target.conninfo)
    return psycopg.connect(target.conninfo, autocommit=True)


async def _aconnect(target: Target, driver: str) -> Any:
    if driver == "asyncpg":
        return await asyncpg.connect(target.url)
    return await psycopg.AsyncConnection.connect(target.conninfo, autocommit=True)


def _time_connect(target: Target, driver: str, n: int = 1) -> float:
    """``n`` raw connections opened at once (a thread each), until all are open."""
    conns: list[Any] = []
    threads = [
        threading.Thread(target=lambda: conns.append(_connect(target, driver))) for _ in range(n)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return elapsed


async def _time_aconnect(target: Target, driver: str, n: int = 1) -> float:
    """``n`` raw connections opened at once on the loop, until all are open."""
    t0 = time.perf_counter()
    conns = await asyncio.gather(*(_aconnect(target, driver) for _ in range(n)))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return elapsed


def _run(fn: Callable[[Target, str], Any], target: Target, driver: str) -> float:
    result: float = asyncio.run(fn(target, driver))
    return result


def _run_n(fn: Callable[[Target, str, int], Any], target: Target, driver: str, n: int) -> float:
    result: float = asyncio.run(fn(target, driver, n))
    return result


#: Pause after each try: the server reaps the backends just closed, and a
#: connect timed while 20 backends exit measures their exit, not the connect.
_SETTLE = 0.3


def open_pool_ratio(target: Target, tries: int = 5) -> list[dict[str, Any]]:
    """Time to open a pool of 20 (until all 20 are open) vs one raw connect,
    and vs 20 raw connects opened at once (the machine's own limit: the server
    starts a process per connection, and on two cores 20 of them take a few
    times one, pool or no pool)."""
    cases: list[tuple[str, Callable[[], float], Callable[[int], float]]] = []
    for name, driver in (("Pool psycopg", "psycopg"), ("Pool psycopg2", "psycopg2")):
        cases.append(
            (
                name,
                functools.partial(_time_sync_open, target, driver),
                functools.partial(_time_connect, target, driver),
            )
        )
    for name, driver in (("AsyncPool psycopg", "psycopg"), ("AsyncPool asyncpg", "asyncpg")):
        cases.append(
            (
                name,
                functools.partial(_run, _time_async_open, target, driver),
                functools.partial(_run_n, _time_aconnect, target, driver),
            )
        )
    out = []
    for name, open_pool, connect in cases:
        pools: list[float] = []
        conns: list[float] = []
        parallel: list[float] = []
        for _ in range(tries):  # alternate, so drift hits all alike
            for series, fn in (
                (pools, open_pool),
                (conns, functools.partial(connect, 1)),
                (parallel, functools.partial(connect, OPEN_SIZE)),
            ):
                series.append(fn())
                time.sleep(_SETTLE)
        pool_s, conn_s = statistics.median(pools), statistics.median(conns)
        parallel_s = statistics.median(parallel)
        out.append(
            {
                "pool": name,
                "open_ms": pool_s * 1e3,
                "connect_ms": conn_s * 1e3,
                "ratio": pool_s / conn_s,
                "parallel_ms": parallel_s * 1e3,
                "vs_parallel": pool_s / parallel_s,
                "open_ms_all": [p * 1e3 for p in pools],
                "connect_ms_all": [c * 1e3 for c in conns],
                "parallel_ms_all": [c * 1e3 for c in parallel],
            }
        )
    return out


# -- memory over many acquire/release cycles -----------------------------------------


def _traced_growth(run: Callable[[int], None], cycles: int) -> dict[str, Any]:
    """Bytes still allocated after *cycles*, measured after a warm-up."""
    tracemalloc.start()
    try:
        run(2_000)  # warm-up: caches, lazily created objects
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        run(cycles)
        seconds = time.perf_counter() - t0
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "cycles": cycles,
        "growth_bytes": after - before,
        "peak_bytes_over_start": peak - before,
        "seconds": seconds,
    }


def _sync_cycles(pool: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with pool.connection():
                pass

    return run


async def _async_memory(target: Target, cycles: int) -> dict[str, Any]:
    """As `_traced_growth`, on one event loop (tracemalloc sees every task)."""
    async with pgharbor_class("AsyncPool")(target.conninfo, min_size=5, max_size=5) as pool:

        async def run(n: int) -> None:
            for _ in range(n):
                async with pool.connection():
                    pass

        tracemalloc.start()
        try:
            await run(2_000)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            t0 = time.perf_counter()
            await run(cycles)
            seconds = time.perf_counter() - t0
            gc.collect()
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return {
        "cycles": cycles,
        "growth_bytes": after - before,
        "peak_bytes_over_start": peak - before,
        "seconds": seconds,
    }


def memory_growth(target: Target, cycles: int = 100_000) -> list[dict[str, Any]]:
    """tracemalloc growth over *cycles* acquire/release cycles (no query)."""
    with pgharbor_class("Pool")(target.conninfo, min_size=5, max_size=5) as pool:
        sync = _traced_growth(_sync_cycles(pool), cycles)
    asyn = asyncio.run(_async_memory(target, cycles))
    return [{"pool": "Pool psycopg", **sync}, {"pool": "AsyncPool psycopg", **asyn}]


# -- first successful acquire after a restart ----------------------------------------


def _sync_recovery(pg: Any, target: Target, driver: str, query: str) -> dict[str, Any]:
    with pgharbor_class("Pool")(target.conninfo, driver=driver, min_size=5, max_size=5) as pool:
        with pool.connection() as conn:
            conn.cursor().execute(query)
        pg.restart("fast")
        t0 = time.perf_counter()  # the server accepts connections again
        errors: list[str] = []
        while True:
            try:
                with pool.connection(timeout=10.0) as conn:
                    cur = conn.cursor()
                    cur.execute(query)
                    cur.fetchone()
                break
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                if time.perf_counter() - t0 > 30:
                    raise
        return {"seconds": time.perf_counter() - t0, "errors": errors}


async def _async_recovery(pg: Any, target: Target, driver: str) -> dict[str, Any]:
    async def select1(conn: Any) -> None:
        if driver == "asyncpg":
            await conn.fetchrow("SELECT 1")
        else:
            await (await conn.execute("SELECT 1")).fetchone()

    pool_cls = pgharbor_class("AsyncPool")
    async with pool_cls(target.conninfo, driver=driver, min_size=5, max_size=5) as pool:
        async with pool.connection() as conn:
            await select1(conn)
        # Blocking on purpose: nothing else runs on this loop meanwhile.
        pg.restart("fast")
        t0 = time.perf_counter()
        errors: list[str] = []
        while True:
            try:
                async with pool.connection(timeout=10.0) as conn:
                    await select1(conn)
                break
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                if time.perf_counter() - t0 > 30:
                    raise
        return {"seconds": time.perf_counter() - t0, "errors": errors}


def restart_recovery(pg: Any, target: Target) -> list[dict[str, Any]]:
    """Time from "the server accepts again" to the first acquire + query that works.

    The pool is idle during the restart (``pg.restart('fast')`` ends every
    session and returns once the server is ready); failed attempts are retried
    at once and listed.
    """
    out = []
    for label, driver in (("Pool", "psycopg"), ("Pool", "psycopg2")):
        t0 = time.perf_counter()
        res = _sync_recovery(pg, target, driver, "SELECT 1")
        out.append({"pool": f"{label} {driver}", **res, "wall": time.perf_counter() - t0})
    for driver in ("psycopg", "asyncpg"):
        t0 = time.perf_counter()
        res = asyncio.run(_async_recovery(pg, target, driver))
        out.append({"pool": f"AsyncPool {driver}", **res, "wall": time.perf_counter() - t0})
    return out
