"""``pgharbor bench`` load runners: asyncio tasks or threads looping on a pool.

Every step opens a fresh pool (``name='bench'``), warms it up without
recording, then lets W workers loop acquire → query → release until the
step's deadline. Each worker records into its own `Recorder`, so the hot path
takes no lock of ours; a failing operation is counted, never fatal. The two
runners are deliberately parallel: same phases, same names, only ``await``
and ``Thread`` differ.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .bench_stats import Recorder, StepResult, summarize

__all__ = ["Plan", "Progress", "run_async", "run_threads"]

_TICK = 0.1  # seconds between progress updates


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, validated by the command."""

    conninfo: str = field(repr=False)  # may hold a password
    driver: str
    threads: bool
    workers: list[int]
    duration: float
    warmup: float
    interval: float
    pool_size: int
    query: str
    timeout: float
    kwargs: dict[str, str]
    secrets: list[str] = field(repr=False)


# Called with (step index, seconds measured so far, operations so far).
Progress = Callable[[int, float, int], None]
# The same, within one step.
Tick = Callable[[float, int], None]

# "15.18 (Debian 15.18-0+deb12u1)" -> "15.18"
_VERSION_SQL = "SELECT split_part(current_setting('server_version'), ' ', 1)"


def _quiet(elapsed: float, ops: int) -> None:
    """The warm-up's progress: not shown."""


def _pool_options(plan: Plan) -> dict[str, Any]:
    # A fixed-size pool: every connection is open before the clock starts,
    # so the first step does not measure connection setup.
    return {
        "driver": plan.driver,
        "name": "bench",
        "min_size": plan.pool_size,
        "max_size": plan.pool_size,
        "timeout": plan.timeout,
        "connect_timeout": plan.timeout,
        "kwargs": plan.kwargs,
    }


# -- asyncio -------------------------------------------------------------------


async def _async_worker(
    pool: Any, queries: Any, plan: Plan, end: float, rec: Recorder | None
) -> None:
    """Loop until ``end``; record into ``rec`` (None: warm-up, record nothing)."""
    sql, timeout = plan.query, plan.timeout
    while (began := time.perf_counter()) < end:
        try:
            async with pool.connection(timeout) as conn:
                await queries.execute(conn, sql, None, timeout)
        except Exception as exc:
            if rec is not None:
                rec.error(exc)
            continue
        if rec is not None:
            rec.add(began, time.perf_counter() - began)


async def _async_phase(
    pool: Any, queries: Any, plan: Plan, workers: int, seconds: float, tick: Tick
) -> tuple[list[Recorder], float]:
    """Run ``workers`` tasks for ``seconds``; the recorders and the wall time."""
    start = time.perf_counter()
    end = start + seconds
    recs = [Recorder(start, plan.interval) for _ in range(workers)]
    tasks = [
        asyncio.create_task(_async_worker(pool, queries, plan, end, rec), name=f"bench-{i}")
        for i, rec in enumerate(recs)
    ]
    try:
        while not all(t.done() for t in tasks):
            tick(time.perf_counter() - start, sum(r.ops for r in recs))
            await asyncio.wait(tasks, timeout=_TICK)
    finally:
        for t in tasks:  # only on an interrupt: workers stop by themselves
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return recs, time.perf_counter() - start


async def _async_run(plan: Plan, progress: Progress) -> tuple[str | None, list[StepResult]]:
    from .._async.pool import AsyncPool
    from ..drivers import get_async_queries

    queries = get_async_queries(plan.driver)
    version: str | None = None
    steps = []
    for index, workers in enumerate(plan.workers):
        pool = AsyncPool(plan.conninfo, **_pool_options(plan))
        try:
            await pool.open(wait=True, timeout=plan.timeout)
            if version is None:
                async with pool.connection() as conn:
                    version = await queries.fetchval(conn, _VERSION_SQL, None, plan.timeout)
            await _async_phase(pool, queries, plan, workers, plan.warmup, _quiet)
            before = pool.stats()
            recs, seconds = await _async_phase(
                pool, queries, plan, workers, plan.duration, partial(progress, index)
            )
            after = pool.stats()
        finally:
            await pool.close()
        steps.append(summarize(workers, recs, seconds, before, after, plan.secrets))
        progress(index, seconds, steps[-1].ops)
    return version, steps


def run_async(plan: Plan, progress: Progress) -> tuple[str | None, list[StepResult]]:
    """Run every step with asyncio tasks on an `AsyncPool`; blocks until done.

    Returns the server version and one `StepResult` per worker count.

    Raises:
        HarborError: a step's pool could not open (unreachable target...).
    """
    return asyncio.run(_async_run(plan, progress))


# -- threads -------------------------------------------------------------------


def _thread_worker(
    pool: Any, queries: Any, plan: Plan, end: float, rec: Recorder | None, stop: threading.Event
) -> None:
    """Loop until ``end`` or ``stop``; record into ``rec`` (None: warm-up)."""
    sql, timeout = plan.query, plan.timeout
    while (began := time.perf_counter()) < end and not stop.is_set():
        try:
            with pool.connection(timeout) as conn:
                queries.execute(conn, sql, None, timeout)
        except Exception as exc:
            if rec is not None:
                rec.error(exc)
            continue
        if rec is not None:
            rec.add(began, time.perf_counter() - began)


def _thread_phase(
    pool: Any, queries: Any, plan: Plan, workers: int, seconds: float, tick: Tick
) -> tuple[list[Recorder], float]:
    """Run ``workers`` threads for ``seconds``; the recorders and the wall time."""
    start = time.perf_counter()
    end = start + seconds
    recs = [Recorder(start, plan.interval) for _ in range(workers)]
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_thread_worker,
            args=(pool, queries, plan, end, rec, stop),
            name=f"pgharbor-bench-{i}",
            daemon=True,
        )
        for i, rec in enumerate(recs)
    ]
    try:
        for t in threads:
            t.start()
        # The workers stop by themselves at ``end``; this thread only reports.
        for t in threads:
            while t.is_alive():
                tick(time.perf_counter() - start, sum(r.ops for r in recs))
                t.join(_TICK)
    finally:
        # Only on an interrupt (Ctrl-C): stop the workers before the pool
        # closes under them, or they would spin on PoolClosed until ``end``.
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(plan.timeout)
    return recs, time.perf_counter() - start


def run_threads(plan: Plan, progress: Progress) -> tuple[str | None, list[StepResult]]:
    """Run every step with threads on a `Pool`; blocks until done.

    Returns the server version and one `StepResult` per worker count.

    Raises:
        HarborError: a step's pool could not open (unreachable target...).
    """
    from .._sync.pool import Pool
    from ..drivers import get_queries

    queries = get_queries(plan.driver)
    version: str | None = None
    steps = []
    for index, workers in enumerate(plan.workers):
        pool = Pool(plan.conninfo, **_pool_options(plan))
        try:
            pool.open(wait=True, timeout=plan.timeout)
            if version is None:
                with pool.connection() as conn:
                    version = queries.fetchval(conn, _VERSION_SQL, None, plan.timeout)
            _thread_phase(pool, queries, plan, workers, plan.warmup, _quiet)
            before = pool.stats()
            recs, seconds = _thread_phase(
                pool, queries, plan, workers, plan.duration, partial(progress, index)
            )
            after = pool.stats()
        finally:
            pool.close()
        steps.append(summarize(workers, recs, seconds, before, after, plan.secrets))
        progress(index, seconds, steps[-1].ops)
    return version, steps
