"""Recovery after an outage, and CPU while the server is down: pgharbor next to psycopg_pool.

Usage::

    python -m benchmarks.recovery --quick     # outages of 1 and 5 s, CPU over 5 s
    python -m benchmarks.recovery --json recovery.json --markdown recovery.md

**Recovery.** Each pool kind in turn, through a `ChaosProxy` (which counts the
connection attempts), with W callers looping acquire + ``SELECT 1`` (acquire
timeout: the outage + 10 s, so a caller waits through it). Then an outage of
1, 5 or 30 s: the server stopped (``-m fast``) and started again, or the proxy
blackholed (connects hang, sessions stall) and then every link through it
reset and new ones let through: a partition that ends the way TCP gives up.
The figure is the time from the server accepting again to the first
successful acquire + ``SELECT 1`` of any caller. "Accepting" is
the first TCP accept on the server's port, seen by a side thread connecting
in a tight loop (``stop``), or the moment the proxy forwards again
(``blackhole``); the time from `PostgresServer.start` returning (the server
ready for sessions) is given too. Attempts are the connections the pool
opened through the proxy during the outage, and until it recovered.

**CPU while down.** Each pool kind in turn, connected straight to the server
(no proxy): opened, then the server stopped; callers try to borrow for a
second (so the pool notices), then nothing happens for ``--cpu-seconds``: the
process CPU time (`time.process_time`, every thread) over that window is what
the pool's background work costs while the database is down.

See ``benchmarks/README.md``. Each figure is one try (``--rounds`` for more).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pgharbor.testing.proxy import ChaosProxy
from pgharbor.testing.server import PostgresServer, target_conninfo

from ._candidates import (
    Candidate,
    Target,
    _apsycopg_pool,
    _pgharbor_async,
    _pgharbor_sync,
    _psycopg_pool,
)
from ._workloads import async_query, sync_query

__all__ = ["CANDIDATES", "main"]

#: Callers per pool (the pools have P = 5 connections).
CALLERS = 4
#: A caller's pause after a success, and after a failed attempt: the
#: resolution of the recovery figure, and what keeps callers from spinning.
THINK = 0.001
ERROR_PAUSE = 0.005
WARMUP = 0.5
#: Give up waiting for the first success this long after the server is back.
GIVE_UP = 60.0

CANDIDATES = [
    Candidate("pgharbor Pool", "psycopg", "sync", "psycopg", _pgharbor_sync("psycopg")),
    Candidate(
        "pgharbor Pool +breaker",
        "psycopg",
        "sync",
        "psycopg",
        _pgharbor_sync("psycopg", breaker=True),
    ),
    Candidate("psycopg_pool", "psycopg", "sync", "psycopg", _psycopg_pool(False), peer=True),
    Candidate("pgharbor Pool", "psycopg2", "sync", "psycopg2", _pgharbor_sync("psycopg2")),
    Candidate(
        "pgharbor Pool +breaker",
        "psycopg2",
        "sync",
        "psycopg2",
        _pgharbor_sync("psycopg2", breaker=True),
    ),
    Candidate(
        "pgharbor AsyncPool",
        "psycopg async",
        "async",
        "psycopg",
        _pgharbor_async("psycopg"),
        is_async=True,
    ),
    Candidate(
        "pgharbor AsyncPool +breaker",
        "psycopg async",
        "async",
        "psycopg",
        _pgharbor_async("psycopg", breaker=True),
        is_async=True,
    ),
    Candidate(
        "psycopg_pool",
        "psycopg async",
        "async",
        "psycopg",
        _apsycopg_pool(False),
        is_async=True,
        peer=True,
    ),
    Candidate(
        "pgharbor AsyncPool",
        "asyncpg",
        "async",
        "asyncpg",
        _pgharbor_async("asyncpg"),
        is_async=True,
    ),
    Candidate(
        "pgharbor AsyncPool +breaker",
        "asyncpg",
        "async",
        "asyncpg",
        _pgharbor_async("asyncpg", breaker=True),
        is_async=True,
    ),
]


# -- the pieces of one measurement ----------------------------------------------------


class Callers:
    """What the callers saw: success times (perf_counter) and errors by type."""

    def __init__(self) -> None:
        self.running = True
        self.successes: list[float] = []
        self.errors: Counter[str] = Counter()

    def first_after(self, since: float) -> float | None:
        later = [t for t in self.successes if t >= since]
        return min(later) if later else None

    def failed(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1


def _sync_caller(callers: Callers, borrow: Callable[..., Any], query: Any, timeout: float) -> None:
    while callers.running:
        try:
            with borrow(timeout=timeout) as conn:
                query(conn)
        except Exception as exc:
            callers.failed(exc)
            time.sleep(ERROR_PAUSE)
            continue
        callers.successes.append(time.perf_counter())
        time.sleep(THINK)


async def _async_caller(callers: Callers, borrow: Any, query: Any, timeout: float) -> None:
    while callers.running:
        try:
            async with borrow(timeout=timeout) as conn:
                await query(conn)
        except Exception as exc:
            callers.failed(exc)
            await asyncio.sleep(ERROR_PAUSE)
            continue
        callers.successes.append(time.perf_counter())
        await asyncio.sleep(THINK)


class AcceptProbe:
    """A thread connecting to ``host:port`` in a tight loop; ``at`` is the
    perf_counter time of the first accepted TCP connection."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.at: float | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="bench-accept-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop:
            try:
                with socket.create_connection(self.address, timeout=1.0):
                    self.at = time.perf_counter()
                    return
            except OSError:
                time.sleep(0.0005)

    def start(self) -> AcceptProbe:
        self._thread.start()
        return self

    def wait(self, timeout: float) -> float | None:
        self._thread.join(timeout)
        self._stop = True
        return self.at


@dataclass
class Recovery:
    """One outage, one pool kind."""

    pool: str
    driver: str
    variant: str  # "stop" or "blackhole"
    outage: float
    #: ms from the server accepting (TCP accept; blackhole: heal) to the first success
    recovery_ms: float | None = None
    #: ms from start() returning (the server ready for sessions) to the first success
    from_ready_ms: float | None = None
    #: ms from the first TCP accept to start() returning
    tcp_to_ready_ms: float | None = None
    attempts_during_outage: int = 0
    attempts_until_recovered: int = 0
    caller_errors: dict[str, int] = field(default_factory=dict)


class Outage:
    """Take the server away for ``seconds`` (``stop`` or ``blackhole``) and
    bring it back; the times and connection counts the figures come from."""

    def __init__(self, pg: PostgresServer, proxy: ChaosProxy, variant: str, seconds: float) -> None:
        self.pg, self.proxy, self.variant, self.seconds = pg, proxy, variant, seconds
        self.opened_before = 0
        self.opened_during = 0
        self.accepting = 0.0
        self.ready = 0.0

    def run(self) -> None:
        """Blocking: down, wait, up."""
        self.opened_before = self.proxy.connections_opened
        if self.variant == "stop":
            self.pg.stop("fast")
        else:
            self.proxy.blackhole()
        time.sleep(self.seconds)
        self.opened_during = self.proxy.connections_opened - self.opened_before
        if self.variant == "stop":
            probe = AcceptProbe(self.pg.host, self.pg.port).start()
            self.pg.start()
            self.ready = time.perf_counter()
            self.accepting = probe.wait(5.0) or self.ready
        else:
            # The partition ends the way TCP gives up on it: every connection
            # through it is reset, then new ones pass.
            self.proxy.reset_all()
            self.proxy.heal()
            self.accepting = self.ready = time.perf_counter()

    def result(self, c: Candidate, callers: Callers, first: float | None) -> Recovery:
        r = Recovery(c.name, c.driver, self.variant, self.seconds)
        r.attempts_during_outage = self.opened_during
        r.attempts_until_recovered = (
            self.proxy.connections_opened - self.opened_before - self.opened_during
        )
        r.caller_errors = dict(callers.errors)
        if self.variant == "stop":
            r.tcp_to_ready_ms = (self.ready - self.accepting) * 1e3
        if first is not None:
            r.recovery_ms = (first - self.accepting) * 1e3
            r.from_ready_ms = (first - self.ready) * 1e3
        return r


def _first_success(callers: Callers, since: float) -> float | None:
    deadline = time.perf_counter() + GIVE_UP
    while time.perf_counter() < deadline:
        first = callers.first_after(since)
        if first is not None:
            return first
        time.sleep(0.002)
    return None


def recover_sync(c: Candidate, target: Target, outage: Outage) -> Recovery:
    """One outage with sync callers (threads)."""
    assert c.opener is not None
    query = sync_query(c.lib, "select1")
    callers = Callers()
    with c.opener(target) as borrow:
        threads = [
            threading.Thread(
                target=_sync_caller,
                args=(callers, borrow, query, outage.seconds + 10),
                name=f"bench-caller-{i}",
                daemon=True,
            )
            for i in range(CALLERS)
        ]
        for t in threads:
            t.start()
        time.sleep(WARMUP)
        callers.errors.clear()  # count what they meet from the outage on
        outage.run()
        first = _first_success(callers, outage.accepting)
        result = outage.result(c, callers, first)
        callers.running = False
        for t in threads:
            t.join(outage.seconds + 15)
    return result


async def recover_async(c: Candidate, target: Target, outage: Outage) -> Recovery:
    """One outage with async callers (tasks); the outage runs in a thread."""
    assert c.opener is not None
    query = async_query(c.lib, "select1")
    callers = Callers()
    async with c.opener(target) as borrow:
        tasks = [
            asyncio.create_task(_async_caller(callers, borrow, query, outage.seconds + 10))
            for _ in range(CALLERS)
        ]
        await asyncio.sleep(WARMUP)
        callers.errors.clear()
        await asyncio.to_thread(outage.run)
        first = await asyncio.to_thread(_first_success, callers, outage.accepting)
        result = outage.result(c, callers, first)
        callers.running = False
        await asyncio.wait(tasks, timeout=outage.seconds + 15)
        for task in tasks:
            task.cancel()
    return result


def measure_recovery(pg: PostgresServer, c: Candidate, variant: str, seconds: float) -> Recovery:
    """One pool kind through one outage, behind a fresh counting proxy."""
    with ChaosProxy(pg.host, pg.port) as proxy:
        target = Target(target_conninfo(pg.host, proxy.port), "")
        outage = Outage(pg, proxy, variant, seconds)
        if c.is_async:
            result = asyncio.run(recover_async(c, target, outage))
        else:
            result = recover_sync(c, target, outage)
    if not pg.is_running:
        pg.start()
    return result


# -- CPU while the server is down ------------------------------------------------------


@dataclass
class Cpu:
    """Process CPU time while the server was down and the pool idle."""

    pool: str
    driver: str
    seconds: float  # the window
    cpu_seconds: float

    @property
    def share(self) -> float:
        """Share of one core."""
        return self.cpu_seconds / self.seconds


def _notice_sync(borrow: Callable[..., Any], query: Any) -> None:
    """Try to borrow for a second, so the pool finds out the server is gone."""
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        try:
            with borrow(timeout=0.2) as conn:
                query(conn)
        except Exception:
            time.sleep(0.05)


async def _notice_async(borrow: Any, query: Any) -> None:
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        try:
            async with borrow(timeout=0.2) as conn:
                await query(conn)
        except Exception:
            await asyncio.sleep(0.05)


def cpu_sync(c: Candidate, pg: PostgresServer, seconds: float) -> float:
    assert c.opener is not None
    query = sync_query(c.lib, "select1")
    with c.opener(Target(pg.conninfo(), "")) as borrow:
        pg.stop("fast")
        time.sleep(0.6)  # idle past the check window: the next checkout pings
        _notice_sync(borrow, query)
        before = time.process_time()
        time.sleep(seconds)
        used = time.process_time() - before
        pg.start()
    return used


async def cpu_async(c: Candidate, pg: PostgresServer, seconds: float) -> float:
    assert c.opener is not None
    query = async_query(c.lib, "select1")
    async with c.opener(Target(pg.conninfo(), "")) as borrow:
        await asyncio.to_thread(pg.stop, "fast")
        await asyncio.sleep(0.6)
        await _notice_async(borrow, query)
        before = time.process_time()
        await asyncio.sleep(seconds)
        used = time.process_time() - before
        await asyncio.to_thread(pg.start)
    return used


def measure_cpu(pg: PostgresServer, c: Candidate, seconds: float) -> Cpu:
    used = asyncio.run(cpu_async(c, pg, seconds)) if c.is_async else cpu_sync(c, pg, seconds)
    if not pg.is_running:
        pg.start()
    return Cpu(c.name, c.driver, seconds, used)


# -- report ------------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f}"


def recovery_markdown(results: list[Recovery], outages: list[float]) -> str:
    """One table per variant: pool kinds down, outage lengths across."""
    out = []
    for variant in dict.fromkeys(r.variant for r in results):
        title = {
            "stop": "server stopped (`-m fast`), then started",
            "blackhole": "link blackholed (ChaosProxy), then every link reset and healed",
        }[variant]
        out.append(f"### Recovery: {title}\n")
        since = (
            "its port accepting TCP again (in brackets: from `start()` returning)"
            if variant == "stop"
            else "the proxy forwarding again"
        )
        out.append(
            f"ms from {since} to the first successful acquire + `SELECT 1`; then the "
            "connections opened during the outage / until recovered.\n"
        )
        heads = " | ".join(f"{s:g} s" for s in outages)
        out.append(f"| pool | driver | {heads} |")
        out.append("|---|---|" + "---:|" * len(outages))
        rows: dict[tuple[str, str], dict[float, list[Recovery]]] = {}
        for r in results:
            if r.variant == variant:
                rows.setdefault((r.pool, r.driver), {}).setdefault(r.outage, []).append(r)
        for (pool, driver), by_outage in rows.items():
            cells = []
            for s in outages:
                tries = by_outage.get(s, [])
                if not tries:
                    cells.append("—")
                    continue
                rec = _median([t.recovery_ms for t in tries])
                cell = _ms(rec)
                if variant == "stop":
                    cell += f" ({_ms(_median([t.from_ready_ms for t in tries]))})"
                during = "/".join(str(t.attempts_during_outage) for t in tries)
                after = "/".join(str(t.attempts_until_recovered) for t in tries)
                cells.append(f"{cell}; {during} / {after}")
            out.append(f"| {pool} | {driver} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def cpu_markdown(results: list[Cpu]) -> str:
    seconds = results[0].seconds if results else 0
    out = [
        f"### CPU while the server is down ({seconds:g} s, pool idle)\n",
        "| pool | driver | CPU s | share of a core |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        out.append(f"| {r.pool} | {r.driver} | {r.cpu_seconds:.2f} | {r.share * 100:.1f} % |")
    out.append("")
    return "\n".join(out)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__)
    p.add_argument("--quick", action="store_true", help="outages of 1 and 5 s; CPU over 5 s")
    p.add_argument("--outages", help="comma-separated seconds (default 1,5,30)")
    p.add_argument("--variants", default="stop,blackhole", help="stop,blackhole")
    p.add_argument("--cpu-seconds", type=float, help="CPU window (default 10; quick 5)")
    p.add_argument("--rounds", type=int, default=1, help="tries per figure (median shown)")
    p.add_argument("--only", help="comma-separated substrings of 'pool/driver' to keep")
    p.add_argument("--no-cpu", dest="cpu", action="store_false", help="skip the CPU figures")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--markdown", metavar="FILE")
    args = p.parse_args(argv)
    default = "1,5" if args.quick else "1,5,30"
    args.outages = [float(s) for s in (args.outages or default).split(",")]
    args.variants = [v.strip() for v in args.variants.split(",")]
    for v in args.variants:
        if v not in ("stop", "blackhole"):
            p.error(f"unknown variant {v!r}")
    args.cpu_seconds = args.cpu_seconds or (5.0 if args.quick else 10.0)
    return args


def _selected(only: str | None) -> list[Candidate]:
    if not only:
        return list(CANDIDATES)
    keys = [k.strip() for k in only.split(",")]
    return [c for c in CANDIDATES if any(k in f"{c.name}/{c.driver}" for k in keys)]


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from .pools import _source_state

    args = parse_args(argv)
    # psycopg_pool logs every failed attempt at WARNING: expected here, and noise.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    started = time.perf_counter()
    candidates = _selected(args.only)
    source = _source_state()
    cpu: list[Cpu] = []
    recoveries: list[Recovery] = []
    with PostgresServer() as pg:
        server = str(pg.version)
        if args.cpu:
            for c in candidates:
                used = measure_cpu(pg, c, args.cpu_seconds)
                _log(f"  cpu: {c.name:<28} {c.driver:<14} {used.cpu_seconds:6.2f} s")
                cpu.append(used)
        for variant in args.variants:
            for seconds in args.outages:
                for rnd in range(args.rounds):
                    for c in candidates:  # A B C … for every outage
                        r = measure_recovery(pg, c, variant, seconds)
                        _log(
                            f"  {variant} {seconds:g} s (round {rnd + 1}): {c.name:<28} "
                            f"{c.driver:<14} {_ms(r.recovery_ms):>6} ms, attempts "
                            f"{r.attempts_during_outage}/{r.attempts_until_recovered}"
                        )
                        recoveries.append(r)
    elapsed = time.perf_counter() - started
    text = (
        f"## Recovery and CPU while down (PostgreSQL {server}, Python "
        f"{sys.version.split()[0]}, pgharbor {source}, {CALLERS} callers, pools of 5)\n\n"
        + (cpu_markdown(cpu) if cpu else "")
        + "\n"
        + recovery_markdown(recoveries, args.outages)
        + f"\nTotal time: {elapsed:.0f} s.\n"
    )
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        payload = {
            "config": vars(args),
            "pgharbor": source,
            "server": server,
            "cpu": [{**asdict(r), "share": r.share} for r in cpu],
            "recovery": [asdict(r) for r in recoveries],
            "seconds": elapsed,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
