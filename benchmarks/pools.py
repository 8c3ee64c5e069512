"""Side-by-side pool benchmark: pgharbor vs raw connections vs the peer pools.

Usage::

    python -m benchmarks.pools --quick
    python -m benchmarks.pools --plot pools.png --json pools.json --markdown pools.md

One PostgreSQL server (``pgharbor.testing``) serves the whole run. For every
cell (workload, W) the candidates take turns, A B C … A B C …, for ``--rounds``
rounds; each turn opens the candidate, warms it up, times it, closes it. The
report gives the median ops/s and every round's figure, ratios to the raw
connections of the same driver and to the peer pool, and acquire-wait
percentiles. See ``benchmarks/README.md`` and ``/work/shared/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from typing import Any

from pgharbor.testing.server import PostgresServer

from ._candidates import CANDIDATES, SAFETY, Candidate, P, Target
from ._extras import memory_growth, open_pool_ratio, restart_recovery
from ._harness import Sample
from ._measure import Cell, measure
from ._report import bar, bar_markdown, make_rows, markdown, plot, write_json
from ._workloads import setup_tables

Results = dict[tuple[str, int], dict[Candidate, list[Sample]]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pools", description=__doc__)
    p.add_argument("--quick", action="store_true", help="3 rounds of ~1 s, W = 16 only")
    p.add_argument("--workers", help="comma-separated worker counts (default 5,16,64)")
    p.add_argument("--duration", type=float, help="seconds per candidate per round")
    p.add_argument("--rounds", type=int, help="rounds (at least 3 for a median)")
    p.add_argument(
        "--mix",
        action=argparse.BooleanOptionalAction,
        help="also run the pk and write workloads at W = 16 (default: on, off in quick)",
    )
    p.add_argument("--extras", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--only", help="comma-separated substrings: keep matching candidates")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--markdown", metavar="FILE")
    args = p.parse_args(argv)
    quick = args.quick
    args.workers = [int(w) for w in (args.workers or ("16" if quick else "5,16,64")).split(",")]
    args.duration = args.duration or (1.0 if quick else 2.0)
    args.rounds = args.rounds or 3
    args.warmup = 0.3 if quick else 0.5
    args.mix = (not quick) if args.mix is None else args.mix
    args.memory_cycles = 100_000
    return args


def select_candidates(only: str | None, quick: bool = False) -> list[Candidate]:
    cands = [c for c in CANDIDATES if c.quick or not quick]
    if not only:
        return cands
    keys = [k.strip() for k in only.split(",")]
    keep = [c for c in cands if any(k in c.key for k in keys) or c.kind == "raw"]
    # A Database candidate is compared with its driver's pool: keep that too.
    dbs = {c.driver for c in keep if c.kind == "call"}
    return [c for c in cands if c in keep or (c.name == "pgharbor" and c.driver in dbs)]


def cells(args: argparse.Namespace) -> list[Cell]:
    out = [Cell("select1", w, args.duration, args.warmup) for w in args.workers]
    if args.mix:
        out += [Cell(wl, 16, args.duration, args.warmup) for wl in ("pk", "write")]
    return out


def run_cells(
    pg: PostgresServer, target: Target, candidates: list[Candidate], args: argparse.Namespace
) -> Results:
    results: Results = {}
    for cell in cells(args):
        by_cand: dict[Candidate, list[Sample]] = {
            c: [] for c in candidates if c.runs(cell.workload)
        }
        results[cell.workload, cell.workers] = by_cand
        for rnd in range(args.rounds):
            for c in by_cand:  # A B C … in every round
                s = measure(c, target, cell, pg)
                by_cand[c].append(s)
                note = f" errors={s.errors} ({s.first_error})" if s.errors else ""
                print(
                    f"  [{cell.workload} W={cell.workers} round {rnd + 1}] "
                    f"{c.key:<40} {s.rate:9.0f} ops/s{note}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def run_extras(pg: PostgresServer, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    print("  extras: opening a pool of 20 …", file=sys.stderr, flush=True)
    extras: dict[str, Any] = {"open": open_pool_ratio(target)}
    print("  extras: memory …", file=sys.stderr, flush=True)
    extras["memory"] = memory_growth(target, args.memory_cycles)
    # Last: a restart disturbs nothing that follows.
    print("  extras: restart …", file=sys.stderr, flush=True)
    extras["restart"] = restart_recovery(pg, target)
    return extras


def _source_state() -> str:
    """The commit measured, and whether ``src/`` had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"]).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (src/ modified)" if dirty else head


def environment(pg: PostgresServer, source: str) -> dict[str, Any]:
    libs = ("psycopg", "psycopg-pool", "asyncpg", "psycopg2-binary", "SQLAlchemy")
    return {
        "pgharbor": source,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "server": str(pg.version),
        "libraries": {name: version(name) for name in libs},
        "pool_size": P,
        "safety": SAFETY,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    candidates = select_candidates(args.only, args.quick)
    source = _source_state()  # what is imported now, before src/ can change
    with PostgresServer() as pg:
        target = Target(pg.conninfo(), pg.url())
        if args.mix:
            setup_tables(pg)
        results = run_cells(pg, target, candidates, args)
        extras = run_extras(pg, target, args) if args.extras else {}
        env = environment(pg, source)
    rows = make_rows(results)
    goals = bar(rows, extras)
    elapsed = time.perf_counter() - started
    text = (
        f"## Pools, side by side (P = {P}, {args.rounds} rounds x {args.duration:g} s, "
        f"PostgreSQL {env['server']}, Python {env['python']}, pgharbor {source})\n\n"
        + markdown(rows)
        + "\n## The bar\n\n"
        + bar_markdown(goals)
        + f"\n\nTotal time: {elapsed:.0f} s.\n"
    )
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        payload = {
            "config": {k: v for k, v in vars(args).items() if k not in ("plot", "json")},
            "environment": env,
            "extras": extras,
            "bar": goals,
            "seconds": elapsed,
        }
        write_json(args.json, payload, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
