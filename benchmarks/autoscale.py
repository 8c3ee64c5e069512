"""A step load, 2 -> 40 -> 2 workers: an autoscaled pool beside a fixed small and large one.

Usage::

    python -m benchmarks.autoscale --quick    # ~3 min: phases 3/6/10 s, shrink_after=5
    python -m benchmarks.autoscale --plot benchmarks/autoscale.png \\
        --markdown autoscale.md --json autoscale.json      # ~9 min, the defaults

**The load.** W workers, asyncio tasks on one event loop (``--driver``:
asyncpg, or psycopg async), each looping: acquire, ``SELECT pg_sleep(0.005)``,
release. W steps from 2 (phase ``low``) to 40 (``high``) and back to 2
(``tail``, long enough for the autoscaled pool to shrink).

**The candidates**, taking turns (A B C, A B C, ...) on one server:

- ``fixed 5``: ``AsyncPool(min_size=5, max_size=5)``, the default size;
- ``fixed 40``: ``AsyncPool(min_size=40, max_size=40)``;
- ``autoscale``: ``AsyncPool(min_size=2, max_size=40, autoscale=...)`` with
  the default `pgharbor.Autoscale` (``--quick``: ``shrink_after=5``).

**Figures**, per phase: ops/s; acquire wait p50/p99 (``perf_counter`` around
``pool.connection()``'s enter, every acquire); the server's connections (the
pool's sessions counted in ``pg_stat_activity`` by ``application_name``,
every 0.1 s, from a separate connection), mean and max; and over the run,
connection-seconds (those counts integrated over time: what holding
connections costs the server); the high phase's ops/s and wait p99 leaving
out its first 2 s (the pools once settled). For the autoscaled pool: how long after the
step up it had 90 % of its largest size, and after the step down, when it
first shrank and when it was back at 5 or fewer. The plot shows each round's
server connections and per-0.5 s wait p99 over time.

See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pgharbor import AsyncPool, Autoscale
from pgharbor.metrics import Event
from pgharbor.testing.server import PostgresServer

from ._harness import percentile

__all__ = ["main"]

LOW, HIGH = 2, 40
SAMPLE_EVERY = 0.1
BUCKET = 0.5  # seconds per point of the wait-over-time curve
SETTLE = 2.0  # seconds after the step up left out of the "settled" wait p99


@dataclass
class Phase:
    """One step of the load."""

    name: str
    workers: int
    seconds: float


@dataclass
class _Control:
    """What the workers read: how many of them run, which phase it is."""

    wanted: int
    phase: str
    stop: bool = False


@dataclass
class PhaseFigures:
    """What one candidate did during one phase of one round."""

    ops: int = 0
    waits: list[float] = field(default_factory=list)
    conns: list[int] = field(default_factory=list)  # server connections, sampled

    def summary(self, seconds: float) -> dict[str, float | None]:
        p50, p99 = percentile(self.waits, 0.5), percentile(self.waits, 0.99)
        return {
            "ops_s": self.ops / seconds,
            "wait_p50_ms": None if p50 is None else p50 * 1000,
            "wait_p99_ms": None if p99 is None else p99 * 1000,
            "conns_mean": statistics.fmean(self.conns) if self.conns else None,
            "conns_max": max(self.conns) if self.conns else None,
        }


@dataclass
class Round:
    """One candidate, one round: per-phase figures and the time series."""

    candidate: str
    round: int
    phases: dict[str, dict[str, float | None]]
    connection_seconds: float
    series: list[tuple[float, int, int, int]]  # (t, workers, server conns, pool size)
    wait_curve: list[tuple[float, float]]  # (bucket start, p99 ms)
    resizes: list[tuple[float, int, str]]  # (t, new target, reason)
    settled_p99_ms: float | None = None  # wait p99 of the high phase after its first SETTLE s
    settled_ops_s: float | None = None  # ops/s of the high phase after its first SETTLE s
    grew_s: float | None = None  # step up -> 90 % of the largest size
    first_shrink_s: float | None = None  # step down -> first shrink
    shrunk_s: float | None = None  # step down -> 5 connections or fewer


def candidates(quick: bool) -> dict[str, dict[str, Any]]:
    """Name -> AsyncPool keyword arguments."""
    scale = Autoscale(shrink_after=5.0) if quick else Autoscale()
    return {
        "fixed 5": {"min_size": 5, "max_size": 5},
        "fixed 40": {"min_size": 40, "max_size": 40},
        "autoscale": {"min_size": 2, "max_size": 40, "autoscale": scale},
    }


async def _query(conn: Any) -> None:
    # The same call in asyncpg and psycopg: a simple query, no rows to read.
    await conn.execute("SELECT pg_sleep(0.005)")


async def run_round(
    name: str, options: dict[str, Any], rnd: int, pg: PostgresServer, driver: str, plan: list[Phase]
) -> Round:
    """One candidate through the whole step load."""
    import psycopg

    app = f"bench-autoscale-{rnd}-{name.replace(' ', '')}"
    figures = {p.name: PhaseFigures() for p in plan}
    series: list[tuple[float, int, int, int]] = []
    waits_at: list[tuple[float, float]] = []
    resizes: list[tuple[float, int, str]] = []
    pool = AsyncPool(
        pg.conninfo(), driver=driver, name=name, kwargs={"application_name": app}, **options
    )
    watcher = await psycopg.AsyncConnection.connect(pg.conninfo(), autocommit=True)
    state = _Control(0, plan[0].name)
    t0 = time.perf_counter()

    def on_resize(event: Event) -> None:
        resizes.append((time.perf_counter() - t0, event.size or 0, event.reason or ""))

    async def worker(i: int) -> None:
        while not state.stop:
            if i >= state.wanted:
                await asyncio.sleep(0.01)
                continue
            started = time.perf_counter()
            async with pool.connection() as conn:
                waited = time.perf_counter() - started
                await _query(conn)
            phase = figures[state.phase]
            phase.ops += 1
            phase.waits.append(waited)
            waits_at.append((started - t0, waited))

    async def sampler() -> None:
        while not state.stop:
            cur = await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
            )
            row = await cur.fetchone()
            conns = int(row[0]) if row else 0
            figures[state.phase].conns.append(conns)
            series.append(
                (time.perf_counter() - t0, state.wanted, conns, int(pool.stats()["size"]))
            )
            await asyncio.sleep(SAMPLE_EVERY)

    async with pool:
        pool.on("resize", on_resize)
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(worker(i)) for i in range(max(p.workers for p in plan))]
        tasks.append(asyncio.create_task(sampler()))
        starts: dict[str, float] = {}
        for phase in plan:
            starts[phase.name] = time.perf_counter() - t0
            state.phase, state.wanted = phase.name, phase.workers
            await asyncio.sleep(phase.seconds)
        state.stop = True
        await asyncio.gather(*tasks)
    await watcher.close()
    result = Round(
        candidate=name,
        round=rnd,
        phases={p.name: figures[p.name].summary(p.seconds) for p in plan},
        connection_seconds=sum(c * SAMPLE_EVERY for _, _, c, _ in series),
        series=series,
        wait_curve=_curve(waits_at),
        resizes=resizes,
    )
    up, down = starts[plan[1].name], starts[plan[2].name]
    settled = [w for at, w in waits_at if up + SETTLE <= at < down]
    p99 = percentile(settled, 0.99)
    result.settled_p99_ms = None if p99 is None else p99 * 1000
    result.settled_ops_s = len(settled) / (down - up - SETTLE) if down - up > SETTLE else None
    if "autoscale" in options:
        _autoscale_times(result, plan, starts)
    return result


def _curve(waits_at: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """p99 of the waits started in each `BUCKET`-second bucket, in ms."""
    buckets: dict[int, list[float]] = {}
    for at, wait in waits_at:
        buckets.setdefault(int(at / BUCKET), []).append(wait)
    return [(k * BUCKET, (percentile(v, 0.99) or 0.0) * 1000) for k, v in sorted(buckets.items())]


def _autoscale_times(r: Round, plan: list[Phase], starts: dict[str, float]) -> None:
    up, down = starts[plan[1].name], starts[plan[2].name]
    high = [size for t, _, _, size in r.series if up <= t < down]
    if high:
        goal = 0.9 * max(high)
        r.grew_s = next((t - up for t, _, _, size in r.series if t >= up and size >= goal), None)
    shrinks = [t for t, _, reason in r.resizes if t >= down and reason == "quiet"]
    r.first_shrink_s = shrinks[0] - down if shrinks else None
    r.shrunk_s = next((t - down for t, _, _, size in r.series if t >= down and size <= 5), None)


# -- report -----------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def markdown(rounds: list[Round], plan: list[Phase]) -> str:
    """The table: medians over rounds, every round's figure in brackets for ops/s and p99."""
    names = list(dict.fromkeys(r.candidate for r in rounds))
    lines = [
        "| pool | phase (workers, s) | ops/s | wait p50 ms | wait p99 ms "
        "| server conns mean / max |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in names:
        mine = [r for r in rounds if r.candidate == name]
        for phase in plan:
            figs = [r.phases[phase.name] for r in mine]

            def med(key: str, figs: list[dict[str, float | None]] = figs) -> float | None:
                return _median([f[key] for f in figs])

            rounds_ops = ", ".join(_fmt(f["ops_s"], ".0f") for f in figs)
            rounds_p99 = ", ".join(_fmt(f["wait_p99_ms"]) for f in figs)
            lines.append(
                f"| {name} | {phase.name} ({phase.workers}, {phase.seconds:g}) "
                f"| {_fmt(med('ops_s'), '.0f')} ({rounds_ops}) "
                f"| {_fmt(med('wait_p50_ms'), '.2f')} "
                f"| {_fmt(med('wait_p99_ms'))} ({rounds_p99}) "
                f"| {_fmt(med('conns_mean'))} / {_fmt(med('conns_max'), '.0f')} |"
            )
    lines += [
        "",
        f"| pool | connection-seconds (rounds) | high phase from {SETTLE:g} s after the "
        "step up: ops/s (rounds) | and wait p99 ms (rounds) |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        mine = [r for r in rounds if r.candidate == name]
        cs = [r.connection_seconds for r in mine]
        ops = [r.settled_ops_s for r in mine]
        settled = [r.settled_p99_ms for r in mine]
        lines.append(
            f"| {name} | {_fmt(statistics.median(cs), '.0f')} "
            f"({', '.join(_fmt(c, '.0f') for c in cs)}) "
            f"| {_fmt(_median(ops), '.0f')} ({', '.join(_fmt(v, '.0f') for v in ops)}) "
            f"| {_fmt(_median(settled), '.2f')} ({', '.join(_fmt(v, '.2f') for v in settled)}) |"
        )
    auto = [r for r in rounds if r.candidate == "autoscale"]
    if auto:
        lines += [
            "",
            "| autoscale | median | rounds |",
            "|---|---:|---|",
        ]
        for label, key in (
            ("step up -> 90 % of its largest size (s)", "grew_s"),
            ("step down -> first shrink (s)", "first_shrink_s"),
            ("step down -> 5 connections or fewer (s)", "shrunk_s"),
        ):
            vals = [getattr(r, key) for r in auto]
            lines.append(
                f"| {label} | {_fmt(_median(vals), '.2f')} "
                f"| {', '.join(_fmt(v, '.2f') for v in vals)} |"
            )
        lines += [
            "",
            "Resize events (round 1): "
            + "; ".join(f"{t:.1f} s -> {size} ({reason})" for t, size, reason in auto[0].resizes),
        ]
    return "\n".join(lines) + "\n"


def plot(rounds: list[Round], plan: list[Phase], path: str, title: str) -> None:
    """Server connections and wait p99 over time, every round, every candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"fixed 5": "tab:orange", "fixed 40": "tab:blue", "autoscale": "tab:green"}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    seen: set[str] = set()
    for r in rounds:
        label = r.candidate if r.candidate not in seen else None
        seen.add(r.candidate)
        color = colors.get(r.candidate, "gray")
        top.plot(
            [s[0] for s in r.series],
            [s[2] for s in r.series],
            color=color,
            lw=1.2,
            alpha=0.75,
            label=label,
        )
        bottom.plot(
            [c[0] for c in r.wait_curve],
            [max(c[1], 0.01) for c in r.wait_curve],
            color=color,
            lw=1.0,
            alpha=0.75,
            label=label,
        )
    first = rounds[0]
    top.step(
        [s[0] for s in first.series],
        [s[1] for s in first.series],
        where="post",
        color="black",
        lw=1,
        ls="--",
        label="workers",
    )
    top.set_ylabel("server connections (pg_stat_activity)")
    top.set_title(title)
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel(f"acquire wait p99 per {BUCKET:g} s (ms)")
    bottom.set_xlabel("seconds")
    bottom.grid(alpha=0.3, which="both")
    bottom.legend(loc="upper right")
    edge = 0.0
    for phase in plan[:-1]:
        edge += phase.seconds
        for ax in (top, bottom):
            ax.axvline(edge, color="gray", lw=0.8, ls=":")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.autoscale", description=__doc__)
    p.add_argument("--quick", action="store_true", help="phases 3/6/10 s, shrink_after=5")
    p.add_argument("--driver", default="asyncpg", choices=["asyncpg", "psycopg"])
    p.add_argument("--rounds", type=int, default=3, help="turns per candidate (>= 1)")
    p.add_argument("--phases", help="seconds of low,high,tail (default 5,10,40; quick 3,6,10)")
    p.add_argument("--plot", metavar="FILE", help="PNG of connections and waits over time")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--markdown", metavar="FILE")
    args = p.parse_args(argv)
    default = "3,6,10" if args.quick else "5,10,40"
    low, high, tail = (float(s) for s in (args.phases or default).split(","))
    args.plan = [Phase("low", LOW, low), Phase("high", HIGH, high), Phase("tail", LOW, tail)]
    return args


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from .pools import _source_state

    args = parse_args(argv)
    plan: list[Phase] = args.plan
    started = time.perf_counter()
    source = _source_state()
    pools = candidates(args.quick)
    rounds: list[Round] = []
    with PostgresServer(settings={"fsync": "off"}) as pg:
        server = str(pg.version)
        for rnd in range(1, args.rounds + 1):
            for name, options in pools.items():  # A B C, A B C ...
                r = asyncio.run(run_round(name, options, rnd, pg, args.driver, plan))
                high = r.phases["high"]
                _log(
                    f"  round {rnd}: {name:<10} high {_fmt(high['ops_s'], '.0f')} ops/s, "
                    f"p99 {_fmt(high['wait_p99_ms'])} ms, {r.connection_seconds:.0f} conn-s"
                    + (f", grew in {_fmt(r.grew_s, '.2f')} s" if r.grew_s is not None else "")
                )
                rounds.append(r)
    elapsed = time.perf_counter() - started
    scale = pools["autoscale"]["autoscale"]
    title = (
        f"Step load {LOW} -> {HIGH} -> {LOW} workers, {args.driver}, pg_sleep(5 ms) "
        f"(PostgreSQL {server}, {args.rounds} rounds)"
    )
    text = (
        f"## Autoscale under a step load (PostgreSQL {server}, Python "
        f"{sys.version.split()[0]}, pgharbor {source}, driver {args.driver}, "
        f"{args.rounds} rounds)\n\n"
        f"Autoscaled pool: min_size=2, max_size=40, {scale}.\n\n"
        + markdown(rounds, plan)
        + f"\nTotal time: {elapsed:.0f} s.\n"
    )
    print(text)
    if args.plot:
        plot(rounds, plan, args.plot, title)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        payload = {
            "config": {k: v for k, v in vars(args).items() if k != "plan"},
            "plan": [asdict(p) for p in plan],
            "pgharbor": source,
            "server": server,
            "rounds": [asdict(r) for r in rounds],
            "seconds": elapsed,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
