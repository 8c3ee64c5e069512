"""Throwaway experiment: how should a *sync* pool hand connections to threads?

pgharbor's sync `Pool` hands a returned connection straight to the oldest
waiting thread (strict FIFO, one pre-acquired ``threading.Lock`` per waiter).
That is fair but costs a thread wake-up and a block per operation, and on a
2-core machine shared with the server it reaches only ~0.6x the throughput of
dedicated connections. This script measures a handful of tiny pools (20-40
lines each, no pgharbor pool code) over the SAME five psycopg connections, so
that only the hand-off strategy differs:

======================  ====================================================
``raw``                 5 threads, one dedicated connection each (baseline)
``fifo``                pgharbor's scheme: per-waiter lock, oldest waiter wins
``fifo-reuse``          ``fifo`` with one reusable lock per thread
``fifo-yield``          ``fifo``; the releaser yields the GIL after a hand-off
``spin-fifo``           ``fifo``, waiters spin ~50 us (``sleep(0)``) first
``affinity-fifo``       ``fifo``, a thread first tries its last connection
``condvar``             ``threading.Condition``; the releaser may barge
``sem-deque``           ``threading.Semaphore(P)`` gating a ``deque``
``simplequeue``         ``queue.SimpleQueue`` of connections (C code)
``age-1ms``             hand off only to a waiter older than 1 ms, else barge
``age-hold``            same, threshold = the recent mean hold time
``keep-1of3``           of 3 releases of a connection, 1 keeps it (barging)
``keep-1of2``           ... 1 of 2 (the "batch wake" idea, k = 2)
``keep-2of3``           ... 2 of 3 (a hand-off every 3rd release)
``*-nt``                the same without the per-waiter liveness timer
======================  ====================================================

Every candidate runs W threads looping acquire -> ``SELECT 1`` -> release, for
W in {5, 16, 64}; candidates take turns (A B C ... A B C ...) for several
rounds and the report gives medians plus every round's raw figure. The acquire
wait is timed around ``get()`` only. A thread is *starved* when it completed
fewer than 10 % of the mean operations per thread in the timed window; waits
still unfinished when the window closes count towards the maximum.

Run: ``.venv/bin/python -m benchmarks.experiments.sync_handoff [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any, Protocol

import psycopg

P = 5
TIMEOUT = 30.0  # every pool waits with a timeout, as a real one would
SQL = "SELECT 1"

Conn = psycopg.Connection[Any]
monotonic = time.monotonic


class PoolTimeout(Exception):
    """No connection within `TIMEOUT`."""


class Pool(Protocol):
    def get(self) -> Conn: ...
    def put(self, conn: Conn) -> None: ...


# -- the candidates -------------------------------------------------------------


class CondvarPool:
    """A condition variable; whoever holds the lock first takes an idle one."""

    def __init__(self, conns: Sequence[Conn]) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._idle = list(conns)

    def get(self) -> Conn:
        with self._cond:
            deadline = monotonic() + TIMEOUT
            while not self._idle:
                if not self._cond.wait(deadline - monotonic()):
                    raise PoolTimeout
            return self._idle.pop()

    def put(self, conn: Conn) -> None:
        with self._cond:
            self._idle.append(conn)
            self._cond.notify()


class SemaphorePool:
    """A semaphore counts idle connections; a deque holds them (GIL-atomic)."""

    def __init__(self, conns: Sequence[Conn]) -> None:
        self._sem = threading.Semaphore(len(conns))
        self._idle = deque(conns)

    def get(self) -> Conn:
        if not self._sem.acquire(timeout=TIMEOUT):
            raise PoolTimeout
        return self._idle.pop()

    def put(self, conn: Conn) -> None:
        self._idle.append(conn)
        self._sem.release()


class SimpleQueuePool:
    """``queue.SimpleQueue``: put/get in C, one internal lock for all getters."""

    def __init__(self, conns: Sequence[Conn]) -> None:
        self._q: SimpleQueue[Conn] = SimpleQueue()
        for c in conns:
            self._q.put(c)

    def get(self) -> Conn:
        try:
            return self._q.get(timeout=TIMEOUT)
        except Empty:
            raise PoolTimeout from None

    def put(self, conn: Conn) -> None:
        self._q.put(conn)


class _Waiter:
    """pgharbor's sync `Waiter`: a lock acquired at birth, released once."""

    __slots__ = ("lock", "since", "value")

    def __init__(self, since: float, lock: threading.Lock | None = None) -> None:
        if lock is None:
            lock = threading.Lock()
            lock.acquire()
        self.lock = lock  # held: released once by the hand-off
        self.since = since
        self.value: Conn | None = None


class HandoffPool:
    """pgharbor's scheme: a returned connection goes to the oldest waiter.

    Subclasses relax *when* it is handed off (`_hand_off`); a connection kept
    idle while threads wait is then picked up by the next caller (barging), or
    handed on by a waiter whose poll timer (``_first_poll``, then a 50 ms
    backstop) fires, so nobody waits forever.
    """

    poll = TIMEOUT

    def __init__(self, conns: Sequence[Conn]) -> None:
        self._lock = threading.Lock()
        self._idle: deque[Conn] = deque(conns)
        self._waiters: deque[_Waiter] = deque()

    def _hand_off(self, conn: Conn, now: float) -> bool:
        return True

    def _take(self) -> Conn:
        return self._idle.pop()

    def _new_waiter(self, now: float) -> _Waiter:
        return _Waiter(now)

    def _block(self, w: _Waiter, timeout: float) -> bool:
        return w.lock.acquire(timeout=timeout)

    def _first_poll(self, w: _Waiter) -> float:
        return self.poll

    def _drain(self) -> list[tuple[_Waiter, Conn]]:
        """Hand connections parked idle to the oldest waiters (under the lock)."""
        wake = []
        while self._idle and self._waiters:
            wake.append((self._waiters.popleft(), self._idle.pop()))
        return wake

    def get(self) -> Conn:
        now = monotonic()
        with self._lock:
            if self._idle:
                return self._take()
            w = self._new_waiter(now)
            self._waiters.append(w)
        deadline = now + TIMEOUT
        poll = self._first_poll(w)
        while not self._block(w, min(poll, max(deadline - monotonic(), 0.0))):
            poll = 0.05  # a backstop only: later puts hand off to an aged waiter
            with self._lock:
                wake = self._drain()
                if w in self._waiters and monotonic() >= deadline:
                    self._waiters.remove(w)
                    raise PoolTimeout
            for x, c in wake:
                x.value = c
                x.lock.release()
        assert w.value is not None
        return w.value

    def put(self, conn: Conn) -> None:
        now = monotonic()
        with self._lock:
            if not self._waiters or not self._hand_off(conn, now):
                self._idle.append(conn)
                return
            w = self._waiters.popleft()
        w.value = conn
        w.lock.release()


class AgedHandoff(HandoffPool):
    """Hand off only to a waiter older than ``min_age``; otherwise keep it idle
    for the next caller (usually the releasing thread itself: no wake-up)."""

    def __init__(self, conns: Sequence[Conn], min_age: float, timer: bool = True) -> None:
        super().__init__(conns)
        self.min_age = min_age
        self.timer = timer

    def _first_poll(self, w: _Waiter) -> float:
        # Once old, puts hand off to it; a timer at that age takes parked ones
        # (without it, only the 50 ms backstop: fine here, releasers return).
        return self.min_age if self.timer else 0.05

    def _hand_off(self, conn: Conn, now: float) -> bool:
        return now - self._waiters[0].since >= self.min_age


class HoldAgedHandoff(HandoffPool):
    """`AgedHandoff` with the threshold set to the recent mean hold time,
    estimated as P x the smoothed interval between releases."""

    def __init__(self, conns: Sequence[Conn]) -> None:
        super().__init__(conns)
        self._last = monotonic()
        self._gap = 1e-4

    def _first_poll(self, w: _Waiter) -> float:
        return P * self._gap

    def _hand_off(self, conn: Conn, now: float) -> bool:
        self._gap += ((now - self._last) - self._gap) * 0.05
        self._last = now
        return now - self._waiters[0].since >= P * self._gap


class BatchHandoff(HandoffPool):
    """Out of every ``k`` releases of a connection, ``keep`` leave it idle for
    the next caller (usually the releaser itself); the others hand it to the
    oldest waiter."""

    def __init__(self, conns: Sequence[Conn], k: int, keep: int, poll: float = 0.005) -> None:
        super().__init__(conns)
        self.poll = poll  # 0.05: the backstop only, no per-waiter timer
        self.k = k
        self.keep = keep
        self._uses = {id(c): 0 for c in conns}

    def _hand_off(self, conn: Conn, now: float) -> bool:
        n = self._uses[id(conn)] = self._uses[id(conn)] + 1
        return n % self.k >= self.keep


class YieldHandoff(HandoffPool):
    """Strict FIFO; after a hand-off the releaser yields the GIL at once, so the
    woken thread need not sleep again on the GIL."""

    def put(self, conn: Conn) -> None:
        super().put(conn)
        time.sleep(0)


class SpinHandoff(HandoffPool):
    """Strict FIFO, but a waiter spins (yielding the GIL) before it blocks."""

    spin = 50e-6

    def _block(self, w: _Waiter, timeout: float) -> bool:
        lock = w.lock
        end = time.perf_counter() + self.spin
        while time.perf_counter() < end:
            if lock.acquire(False):
                return True
            time.sleep(0)
        return lock.acquire(timeout=timeout)


class AffinityHandoff(HandoffPool):
    """Strict FIFO; an idle pick prefers the connection this thread last used."""

    def __init__(self, conns: Sequence[Conn]) -> None:
        super().__init__(conns)
        self._local = threading.local()

    def _take(self) -> Conn:
        last: Conn | None = getattr(self._local, "last", None)
        idle = self._idle
        if last is not None and last in idle and idle[-1] is not last:
            idle.remove(last)
            conn = last
        else:
            conn = idle.pop()
        return conn

    def get(self) -> Conn:
        conn = super().get()
        self._local.last = conn
        return conn


class ReusedLockHandoff(HandoffPool):
    """Strict FIFO with one waiter lock per thread, reused across waits: the
    lock stays held between waits (a wait ends by acquiring it again)."""

    def __init__(self, conns: Sequence[Conn]) -> None:
        super().__init__(conns)
        self._local = threading.local()

    def _new_waiter(self, now: float) -> _Waiter:
        lock = getattr(self._local, "lock", None)
        if lock is None:
            lock = self._local.lock = threading.Lock()
            lock.acquire()
        return _Waiter(now, lock)


#: name -> factory over the shared connections (None: the raw baseline).
VARIANTS: dict[str, Callable[[Sequence[Conn]], Pool] | None] = {
    "raw": None,
    "fifo": HandoffPool,
    "fifo-reuse": ReusedLockHandoff,
    "fifo-yield": YieldHandoff,
    "spin-fifo": SpinHandoff,
    "affinity-fifo": AffinityHandoff,
    "condvar": CondvarPool,
    "sem-deque": SemaphorePool,
    "simplequeue": SimpleQueuePool,
    "age-1ms": lambda cs: AgedHandoff(cs, 0.001),
    "age-hold": HoldAgedHandoff,
    "keep-1of3": lambda cs: BatchHandoff(cs, 3, 1),
    "keep-1of2": lambda cs: BatchHandoff(cs, 2, 1),
    "keep-2of3": lambda cs: BatchHandoff(cs, 3, 2),
    # The same without a per-waiter timer (liveness from the 50 ms backstop):
    "age-1ms-nt": lambda cs: AgedHandoff(cs, 0.001, timer=False),
    "keep-1of3-nt": lambda cs: BatchHandoff(cs, 3, 1, poll=0.05),
    "keep-1of2-nt": lambda cs: BatchHandoff(cs, 2, 1, poll=0.05),
}


# -- the harness ----------------------------------------------------------------


@dataclass
class Sample:
    """One candidate, one round, one W."""

    ops: int
    seconds: float
    waits: list[float]
    per_thread: list[int]
    censored: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    @property
    def starved(self) -> int:
        mean = statistics.fmean(self.per_thread)
        return sum(1 for n in self.per_thread if n < 0.1 * mean)


class _Run:
    def __init__(self, workers: int) -> None:
        self.running = True
        self.recording = False
        self.counts = [0] * workers
        self.pending = [0.0] * workers
        self.waits: list[list[float]] = [[] for _ in range(workers)]


def _worker(run: _Run, idx: int, pool: Pool) -> None:
    clock = time.perf_counter
    get, put = pool.get, pool.put
    pending, counts, waits = run.pending, run.counts, run.waits[idx]
    n = 0
    while run.running:
        pending[idx] = t0 = clock()
        conn = get()
        t1 = clock()
        pending[idx] = 0.0
        try:
            conn.execute(SQL).fetchone()
        finally:
            put(conn)
        n += 1
        counts[idx] = n
        if run.recording:
            waits.append(t1 - t0)


class _Dedicated:
    """The raw baseline: a thread's own connection, no pool."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def get(self) -> Conn:
        return self._conn

    def put(self, conn: Conn) -> None:
        pass


def measure(pools: list[Pool], warmup: float, duration: float) -> Sample:
    """One thread per entry of ``pools`` (the same shared pool W times, or a
    dedicated one per thread), timed for ``duration`` after ``warmup``."""
    run = _Run(len(pools))
    threads = [
        threading.Thread(target=_worker, args=(run, i, p), daemon=True) for i, p in enumerate(pools)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(warmup)
        before, t0 = list(run.counts), time.perf_counter()
        run.recording = True
        time.sleep(duration)
        after, t1 = list(run.counts), time.perf_counter()
        run.recording = False
        censored = [t1 - p for p in run.pending if p]
    finally:
        run.running = False
        for t in threads:
            t.join(TIMEOUT)
    per = [a - b for a, b in zip(after, before, strict=True)]
    waits = [w for ws in run.waits for w in ws]
    return Sample(sum(per), t1 - t0, waits, per, censored)


def quantile(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return 0.0
    pos = q * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


# -- the report -----------------------------------------------------------------


@dataclass
class Row:
    """Medians over rounds for one (W, variant)."""

    w: int
    name: str
    rates: list[float]
    ratios: list[float]
    p50: list[float]
    p99: list[float]
    mean: list[float]
    max: list[float]
    starved: list[int]
    spread: list[float]  # min / max ops per thread


def summarize(w: int, name: str, samples: list[Sample], raws: list[Sample]) -> Row:
    row = Row(w, name, [], [], [], [], [], [], [], [])
    for s, r in zip(samples, raws, strict=True):
        row.rates.append(s.rate)
        row.ratios.append(s.rate / r.rate)
        row.p50.append(quantile(s.waits, 0.5) * 1e3)
        row.p99.append(quantile(s.waits, 0.99) * 1e3)
        row.mean.append(statistics.fmean(s.waits) * 1e3 if s.waits else 0.0)
        row.max.append(max([*s.waits, *s.censored, 0.0]) * 1e3)
        row.starved.append(s.starved)
        row.spread.append(min(s.per_thread) / max(max(s.per_thread), 1))
    return row


def _med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def markdown(rows: list[Row]) -> str:
    head = (
        "| W | variant | ops/s | x raw | p50 wait ms | p99 wait ms | p99/p50 | mean ms "
        "| p99/mean | max ms | starved | min/max thread ops | meets both |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        p50, p99, mean = _med(r.p50), _med(r.p99), _med(r.mean)
        rel = p99 / p50 if p50 > 0 else float("inf")
        rel_mean = p99 / mean if mean > 0 else float("inf")
        fair = rel <= 3 and max(r.starved) == 0
        ok = "yes" if fair and _med(r.ratios) >= 0.8 else ("fair" if fair else "")
        if r.name == "raw":
            ok = ""
        lines.append(
            f"| {r.w} | {r.name} | {_med(r.rates):,.0f} | {_med(r.ratios):.2f} "
            f"| {_ms(p50)} | {_ms(p99)} | {rel:.1f} | {_ms(mean)} | {rel_mean:.1f} "
            f"| {_ms(_med(r.max))} | {max(r.starved)} | {_med(r.spread):.2f} | {ok} |"
        )
    return head + "\n".join(lines) + "\n"


def markdown_rounds(rows: list[Row]) -> str:
    head = "| W | variant | per round: ops/s (x raw) / p50 / p99 ms |\n|---|---|---|\n"
    lines = []
    for r in rows:
        cells = "; ".join(
            f"{rate:,.0f} ({ratio:.2f}) / {_ms(a)} / {_ms(b)}"
            for rate, ratio, a, b in zip(r.rates, r.ratios, r.p50, r.p99, strict=True)
        )
        lines.append(f"| {r.w} | {r.name} | {cells} |")
    return head + "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0, help="timed seconds per run")
    ap.add_argument("--warmup", type=float, default=0.3)
    ap.add_argument("--workers", type=int, nargs="+", default=[5, 16, 64])
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), help="variants (raw is added)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from pgharbor.testing import PostgresServer

    args = parse_args(argv)
    names = ["raw", *[n for n in (args.only or VARIANTS) if n != "raw"]]
    started = time.perf_counter()
    results: dict[tuple[int, str], list[Sample]] = {(w, n): [] for w in args.workers for n in names}
    with PostgresServer() as pg:
        conns = [psycopg.connect(pg.conninfo(), autocommit=True) for _ in range(P)]
        try:
            for rnd in range(args.rounds):
                for w in args.workers:
                    for name in names:
                        factory = VARIANTS[name]
                        if factory is None:
                            pools: list[Pool] = [_Dedicated(c) for c in conns]
                        else:
                            shared = factory(conns)
                            pools = [shared] * w
                        s = measure(pools, args.warmup, args.duration)
                        results[w, name].append(s)
                        print(
                            f"round {rnd + 1} W={w:<3} {name:<14} {s.rate:9,.0f} ops/s "
                            f"p50 {quantile(s.waits, 0.5) * 1e3:7.3f} ms "
                            f"p99 {quantile(s.waits, 0.99) * 1e3:7.3f} ms "
                            f"starved {s.starved}",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for c in conns:
                c.close()
    rows = [summarize(w, n, results[w, n], results[w, "raw"]) for w in args.workers for n in names]
    print(
        f"## Sync hand-off strategies (P = {P}, {args.rounds} rounds x {args.duration:g} s, "
        f"medians; Python {sys.version.split()[0]}, {time.perf_counter() - started:.0f} s)\n"
    )
    print(markdown(rows))
    print("### Every round\n")
    print(markdown_rounds(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
