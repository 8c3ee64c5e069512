"""Timing loops: W threads (sync) or W tasks (async) hammering one candidate.

Every worker runs until told to stop; the main thread (or task) lets them warm
up, snapshots the shared op counters, sleeps for the measured duration and
snapshots again. Nothing is started or joined inside the timed window, so
thread start-up, pool opening and event-loop setup never count.

Acquire waits are measured with ``time.perf_counter`` around the borrow's
``__enter__`` for every operation of the timed window, the same way for every
candidate (two clock reads per op: ~0.1 µs against ~100 µs of work).
*Call* candidates (``Database.fetchval``: acquire + query + release in one
call) have no borrow to time from outside, so they record no waits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ABorrow",
    "ACall",
    "AQuery",
    "Borrow",
    "Call",
    "Query",
    "Sample",
    "percentile",
    "run_async_calls",
    "run_async_pool",
    "run_async_raw",
    "run_sync_calls",
    "run_sync_pool",
    "run_sync_raw",
]

#: Lends a connection: ``with borrow() as conn``.
Borrow = Callable[[], AbstractContextManager[Any]]
ABorrow = Callable[[], AbstractAsyncContextManager[Any]]
#: Runs the workload once on a connection.
Query = Callable[[Any], None]
AQuery = Callable[[Any], Awaitable[None]]
#: One whole operation, connection handling included: ``db.fetchval(...)``.
Call = Callable[[], Any]
ACall = Callable[[], Awaitable[Any]]


@dataclass
class Sample:
    """One candidate's figures for one round."""

    ops: int
    seconds: float
    waits: list[float] = field(default_factory=list)  # seconds, one per timed acquire
    errors: int = 0
    first_error: str | None = None
    #: Operations each worker completed inside the timed window.
    per_worker: list[int] = field(default_factory=list)
    #: Waits still unfinished when the window closed (a starved worker's only trace).
    censored: list[float] = field(default_factory=list)

    @property
    def starved(self) -> int:
        """Workers that completed no operation inside the timed window."""
        return sum(1 for n in self.per_worker if n == 0)

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.ops / self.seconds if self.seconds > 0 else 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The *q*-quantile (0..1) of *values* by linear interpolation, or None."""
    if not values:
        return None
    data = sorted(values)
    pos = q * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class _Run:
    """State shared by the workers of one measurement."""

    def __init__(self, workers: int) -> None:
        self.running = True
        self.recording = False
        self.counts = [0] * workers
        self.pending = [0.0] * workers  # perf_counter when an unfinished acquire began
        self.waits: list[list[float]] = [[] for _ in range(workers)]
        self.errors = [0] * workers
        self.first_error: str | None = None

    def failed(self, idx: int, exc: BaseException) -> None:
        self.errors[idx] += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"

    def start(self) -> tuple[list[int], float]:
        """Open the timed window: snapshot the counters and start recording."""
        before, t0 = list(self.counts), time.perf_counter()
        self.recording = True
        return before, t0

    def finish(self, before: list[int], t0: float) -> Sample:
        """Close the timed window and collect the figures."""
        after, t1 = list(self.counts), time.perf_counter()
        self.recording = False
        censored = [t1 - p for p in self.pending if p]
        per_worker = [a - b for a, b in zip(after, before, strict=True)]
        waits = [w for per in self.waits for w in per]
        return Sample(
            sum(per_worker),
            t1 - t0,
            waits,
            sum(self.errors),
            self.first_error,
            per_worker,
            censored,
        )


# -- sync -------------------------------------------------------------------------


def _sync_pool_worker(run: _Run, idx: int, borrow: Borrow, query: Query) -> None:
    clock = time.perf_counter
    counts = run.counts
    waits = run.waits[idx]
    pending = run.pending
    n = 0
    while run.running:
        try:
            pending[idx] = t0 = clock()
            with borrow() as conn:
                t1 = clock()
                pending[idx] = 0.0
                query(conn)
        except Exception as exc:
            pending[idx] = 0.0
            run.failed(idx, exc)
            time.sleep(0.001)
            continue
        n += 1
        counts[idx] = n
        if run.recording:
            waits.append(t1 - t0)


def _sync_raw_worker(run: _Run, idx: int, conn: Any, query: Query) -> None:
    counts = run.counts
    n = 0
    while run.running:
        try:
            query(conn)
        except Exception as exc:
            run.failed(idx, exc)
            time.sleep(0.001)
            continue
        n += 1
        counts[idx] = n


def _sync_call_worker(run: _Run, idx: int, call: Call) -> None:
    counts = run.counts
    n = 0
    while run.running:
        try:
            call()
        except Exception as exc:
            run.failed(idx, exc)
            time.sleep(0.001)
            continue
        n += 1
        counts[idx] = n


def _time_threads(
    run: _Run, threads: list[threading.Thread], warmup: float, duration: float
) -> Sample:
    for t in threads:
        t.start()
    try:
        time.sleep(warmup)
        before, t0 = run.start()
        time.sleep(duration)
        sample = run.finish(before, t0)
    finally:
        run.running = False
        for t in threads:
            t.join()
    return sample


def run_sync_pool(
    borrow: Borrow, query: Query, workers: int, warmup: float, duration: float
) -> Sample:
    """W threads looping: borrow a connection, run *query*, give it back."""
    run = _Run(workers)
    threads = [
        threading.Thread(target=_sync_pool_worker, args=(run, i, borrow, query), daemon=True)
        for i in range(workers)
    ]
    return _time_threads(run, threads, warmup, duration)


def run_sync_raw(conns: Sequence[Any], query: Query, warmup: float, duration: float) -> Sample:
    """One thread per connection, each looping on its own connection (no pool)."""
    run = _Run(len(conns))
    threads = [
        threading.Thread(target=_sync_raw_worker, args=(run, i, c, query), daemon=True)
        for i, c in enumerate(conns)
    ]
    return _time_threads(run, threads, warmup, duration)


def run_sync_calls(call: Call, workers: int, warmup: float, duration: float) -> Sample:
    """W threads looping on *call* (which borrows and returns a connection itself)."""
    run = _Run(workers)
    threads = [
        threading.Thread(target=_sync_call_worker, args=(run, i, call), daemon=True)
        for i in range(workers)
    ]
    return _time_threads(run, threads, warmup, duration)


# -- async ------------------------------------------------------------------------


async def _async_pool_worker(run: _Run, idx: int, borrow: ABorrow, query: AQuery) -> None:
    clock = time.perf_counter
    counts = run.counts
    waits = run.waits[idx]
    pending = run.pending
    n = 0
    while run.running:
        try:
            pending[idx] = t0 = clock()
            async with borrow() as conn:
                t1 = clock()
                pending[idx] = 0.0
                await query(conn)
        except Exception as exc:
            pending[idx] = 0.0
            run.failed(idx, exc)
            await asyncio.sleep(0.001)
            continue
        n += 1
        counts[idx] = n
        if run.recording:
            waits.append(t1 - t0)


async def _async_raw_worker(run: _Run, idx: int, conn: Any, query: AQuery) -> None:
    counts = run.counts
    n = 0
    while run.running:
        try:
            await query(conn)
        except Exception as exc:
            run.failed(idx, exc)
            await asyncio.sleep(0.001)
            continue
        n += 1
        counts[idx] = n


async def _async_call_worker(run: _Run, idx: int, call: ACall) -> None:
    counts = run.counts
    n = 0
    while run.running:
        try:
            await call()
        except Exception as exc:
            run.failed(idx, exc)
            await asyncio.sleep(0.001)
            continue
        n += 1
        counts[idx] = n


async def _time_tasks(run: _Run, coros: list[Any], warmup: float, duration: float) -> Sample:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        await asyncio.sleep(warmup)
        before, t0 = run.start()
        await asyncio.sleep(duration)
        sample = run.finish(before, t0)
    finally:
        run.running = False
        await asyncio.gather(*tasks, return_exceptions=True)
    return sample


async def run_async_pool(
    borrow: ABorrow, query: AQuery, workers: int, warmup: float, duration: float
) -> Sample:
    """W tasks looping: borrow a connection, run *query*, give it back."""
    run = _Run(workers)
    coros = [_async_pool_worker(run, i, borrow, query) for i in range(workers)]
    return await _time_tasks(run, coros, warmup, duration)


async def run_async_raw(
    conns: Sequence[Any], query: AQuery, warmup: float, duration: float
) -> Sample:
    """One task per connection, each looping on its own connection (no pool)."""
    run = _Run(len(conns))
    coros = [_async_raw_worker(run, i, c, query) for i, c in enumerate(conns)]
    return await _time_tasks(run, coros, warmup, duration)


async def run_async_calls(call: ACall, workers: int, warmup: float, duration: float) -> Sample:
    """W tasks looping on *call* (which borrows and returns a connection itself)."""
    run = _Run(workers)
    coros = [_async_call_worker(run, i, call) for i in range(workers)]
    return await _time_tasks(run, coros, warmup, duration)
