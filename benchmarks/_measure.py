"""One measurement: open a candidate, warm it up, time it, close it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from ._candidates import Candidate, P, Target
from ._harness import (
    Sample,
    run_async_calls,
    run_async_pool,
    run_async_raw,
    run_sync_calls,
    run_sync_pool,
    run_sync_raw,
)
from ._workloads import async_db_call, async_query, pgbench_script, sync_db_call, sync_query

__all__ = ["Cell", "measure"]


@dataclass(frozen=True)
class Cell:
    """What is measured: a workload at W workers, for so long."""

    workload: str
    workers: int
    duration: float
    warmup: float


def measure(c: Candidate, target: Target, cell: Cell, pg: Any) -> Sample:
    """Measure candidate *c* once; errors inside the loop are counted, not raised."""
    if c.kind == "pgbench":
        return _pgbench(pg, cell)
    if c.is_async:
        # One event loop per measurement, created before the timed window.
        return asyncio.run(_measure_async(c, target, cell))
    return _measure_sync(c, target, cell)


def _measure_sync(c: Candidate, target: Target, cell: Cell) -> Sample:
    assert c.opener is not None
    if c.kind == "call":
        with c.opener(target) as db:
            call = sync_db_call(db, c.lib, cell.workload)
            return run_sync_calls(call, cell.workers, cell.warmup, cell.duration)
    query = sync_query(c.lib, cell.workload)
    with c.opener(target) as opened:
        if c.kind == "raw":
            return run_sync_raw(opened, query, cell.warmup, cell.duration)
        return run_sync_pool(opened, query, cell.workers, cell.warmup, cell.duration)


async def _measure_async(c: Candidate, target: Target, cell: Cell) -> Sample:
    assert c.opener is not None
    if c.kind == "call":
        async with c.opener(target) as db:
            acall = async_db_call(db, c.lib, cell.workload)
            return await run_async_calls(acall, cell.workers, cell.warmup, cell.duration)
    query = async_query(c.lib, cell.workload)
    async with c.opener(target) as opened:
        if c.kind == "raw":
            return await run_async_raw(opened, query, cell.warmup, cell.duration)
        return await run_async_pool(opened, query, cell.workers, cell.warmup, cell.duration)


_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
_TXNS = re.compile(r"number of transactions actually processed: (\d+)")


def _pgbench(pg: Any, cell: Cell) -> Sample:
    """pgbench, C client: P connections, 2 threads, simple protocol, whole seconds."""
    seconds = max(1, round(cell.duration))
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(pgbench_script(cell.workload))
    try:
        cmd = [
            os.path.join(pg.bindir, "pgbench"),
            *("-h", pg.host, "-p", str(pg.port), "-U", "postgres"),
            *("-n", "-M", "simple", "-c", str(P), "-j", "2", "-T", str(seconds)),
            *("-f", f.name, "postgres"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(f.name)
    tps = _TPS.search(proc.stdout)
    if proc.returncode != 0 or tps is None:
        return Sample(0, float(seconds), errors=1, first_error=(proc.stderr or proc.stdout)[-300:])
    txns = _TXNS.search(proc.stdout)
    ops = int(txns.group(1)) if txns else int(float(tps.group(1)) * seconds)
    # Report pgbench's own rate (it excludes connection set-up).
    return Sample(ops, ops / float(tps.group(1)) if float(tps.group(1)) else float(seconds))
