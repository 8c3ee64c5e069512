"""Turn samples into rows, the Markdown table, the bar, a plot and JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from ._candidates import DB, PROTO, Candidate
from ._harness import Sample, percentile

__all__ = ["Row", "bar", "make_rows", "markdown", "plot", "write_json"]


@dataclass
class Row:
    """One candidate in one cell (workload, W), over all rounds."""

    workload: str
    candidate: str
    driver: str
    kind: str
    workers: int
    rates: list[float]
    ops: float
    vs_raw: float | None = None
    vs_peer: float | None = None
    wait_p50_ms: float | None = None
    wait_p99_ms: float | None = None
    wait_max_ms: float | None = None
    starved: int = 0
    errors: int = 0
    first_error: str | None = None
    per_round: list[dict[str, Any]] = field(default_factory=list)


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1e3


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _row(c: Candidate, workload: str, workers: int, samples: list[Sample]) -> Row:
    per_round: list[dict[str, Any]] = []
    for s in samples:
        waits = s.waits + s.censored
        per_round.append(
            {
                "ops_per_s": s.rate,
                "ops": s.ops,
                "seconds": s.seconds,
                "wait_p50_ms": _ms(percentile(waits, 0.50)),
                "wait_p99_ms": _ms(percentile(waits, 0.99)),
                "wait_max_ms": _ms(max(waits)) if waits else None,
                "censored_waits": len(s.censored),
                "starved": s.starved,
                "per_worker_ops": s.per_worker,
                "errors": s.errors,
            }
        )
    rates = [s.rate for s in samples]
    return Row(
        workload=workload,
        candidate=c.name,
        driver=c.driver,
        kind=c.kind,
        workers=workers,
        rates=rates,
        ops=statistics.median(rates),
        wait_p50_ms=_median([r["wait_p50_ms"] for r in per_round]),
        wait_p99_ms=_median([r["wait_p99_ms"] for r in per_round]),
        wait_max_ms=_median([r["wait_max_ms"] for r in per_round]),
        starved=round(statistics.median([s.starved for s in samples])),
        errors=sum(s.errors for s in samples),
        first_error=next((s.first_error for s in samples if s.first_error), None),
        per_round=per_round,
    )


def make_rows(
    results: dict[tuple[str, int], dict[Candidate, list[Sample]]],
) -> list[Row]:
    """Rows for every cell, with ratios to the raw baseline and the peer pool."""
    rows: list[Row] = []
    for (workload, workers), by_cand in results.items():
        cell = [_row(c, workload, workers, s) for c, s in by_cand.items()]
        raw = {r.driver: r.ops for r in cell if r.kind == "raw"}
        peers = {c.driver: c.name for c in by_cand if c.peer}
        peer_ops = {r.driver: r.ops for r in cell if peers.get(r.driver) == r.candidate}
        for r in cell:
            if raw.get(r.driver):
                r.vs_raw = r.ops / raw[r.driver]
            if r.candidate.startswith("pgharbor") and peer_ops.get(r.driver):
                r.vs_peer = r.ops / peer_ops[r.driver]
        rows.extend(cell)
    return rows


# -- the table --------------------------------------------------------------------


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def markdown(rows: list[Row]) -> str:
    """One Markdown table per workload."""
    out = []
    for workload in dict.fromkeys(r.workload for r in rows):
        out.append(f"### workload: `{workload}`\n")
        out.append(
            "| candidate | driver | W | ops/s (median) | vs raw | vs peer | wait p50 ms "
            "| wait p99 ms | wait max ms | starved | rounds |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in (r for r in rows if r.workload == workload):
            w = f"{r.workers}" if r.kind not in ("raw", "pgbench") else f"{r.workers} (P)"
            rounds = " / ".join(f"{x:.0f}" for x in r.rates)
            if r.errors:
                rounds += f" ({r.errors} errors)"
            out.append(
                f"| {r.candidate} | {r.driver} | {w} | {r.ops:.0f} | {_fmt(r.vs_raw, '.2f')} "
                f"| {_fmt(r.vs_peer, '.2f')} | {_fmt(r.wait_p50_ms, '.2f')} "
                f"| {_fmt(r.wait_p99_ms, '.2f')} | {_fmt(r.wait_max_ms, '.1f')} "
                f"| {r.starved if r.kind not in ('raw', 'pgbench') else '—'} | {rounds} |"
            )
        out.append("")
    return "\n".join(out)


# -- the bar ------------------------------------------------------------------------


def _find(rows: list[Row], driver: str, candidate: str, w: int) -> Row | None:
    for r in rows:
        if (r.workload, r.driver, r.candidate, r.workers) == ("select1", driver, candidate, w):
            return r
    return None


def _goal(text: str, figure: str, ok: bool | None) -> dict[str, Any]:
    return {"goal": text, "measured": figure, "met": ok}


def _throughput_goals(rows: list[Row]) -> list[dict[str, Any]]:
    specs = [
        ("AsyncPool (asyncpg)", "asyncpg", (16, 64), 0.90, 2.5),
        ("AsyncPool (psycopg)", "psycopg async", (16, 64), 0.90, 1.6),
        ("Pool (psycopg)", "psycopg", (16, 64), 0.80, 2.0),
        ("Pool (psycopg2)", "psycopg2", (16,), 0.80, None),
    ]
    goals = []
    for label, driver, ws, raw_min, peer_min in specs:
        for w in ws:
            r = _find(rows, driver, "pgharbor", w)
            text = f"{label} at W = {w}: ≥ {raw_min:.2f} x raw"
            if peer_min is not None:
                text += f", ≥ {peer_min} x peer"
            if r is None or r.vs_raw is None:
                goals.append(_goal(text, "not measured", None))
                continue
            ok = r.vs_raw >= raw_min
            fig = f"{r.vs_raw:.2f} x raw"
            if peer_min is not None:
                ok = ok and r.vs_peer is not None and r.vs_peer >= peer_min
                fig += f", {_fmt(r.vs_peer, '.2f')} x peer"
            proto = _find(rows, driver, PROTO, w)
            if proto is not None and proto.vs_raw is not None:
                # The ceiling of any fair hand-off, measured in the same run.
                fig += f" (prototype: {proto.vs_raw:.2f} x raw)"
            goals.append(_goal(text, fig, ok))
    return goals


def _safety_goal(
    rows: list[Row],
    candidate: str = "pgharbor+safety",
    text: str = "all safety features on vs. defaults: ≤ 5 % slower",
) -> dict[str, Any]:
    worst: tuple[float, str] | None = None
    for r in rows:
        if r.candidate != candidate:
            continue
        base = next(
            (
                b
                for b in rows
                if (b.workload, b.driver, b.workers, b.candidate)
                == (r.workload, r.driver, r.workers, "pgharbor")
            ),
            None,
        )
        if base is None or not base.ops:
            continue
        slower = 1 - r.ops / base.ops
        where = f"{r.driver}, {r.workload}, W = {r.workers}"
        if worst is None or slower > worst[0]:
            worst = (slower, where)
    if worst is None:
        return _goal(text, "not measured", None)
    return _goal(text, f"worst {worst[0] * 100:+.1f} % slower ({worst[1]})", worst[0] <= 0.05)


def _fairness_goals(rows: list[Row], w: int) -> list[dict[str, Any]]:
    goals = []
    for r in rows:
        if r.workload != "select1" or r.workers != w or not r.candidate.startswith("pgharbor"):
            continue
        if r.kind == "call":  # no acquire to time from outside Database.fetchval
            continue
        text = f"fairness at W = {w}, {r.driver} {r.candidate}: p99 wait ≤ 3 x median"
        if not r.wait_p50_ms or r.wait_p99_ms is None:
            goals.append(_goal(text, "not measured", None))
            continue
        ratio = r.wait_p99_ms / r.wait_p50_ms
        fig = f"p50 {r.wait_p50_ms:.2f} ms, p99 {r.wait_p99_ms:.2f} ms = {ratio:.1f} x"
        fig += f", {r.starved} starved"
        goals.append(_goal(text, fig, ratio <= 3 and r.starved == 0))
    if not goals:
        goals.append(_goal(f"acquire wait fairness at W = {w}", "not measured", None))
    return goals


def _database_goals(rows: list[Row], minimum: float = 0.85) -> list[dict[str, Any]]:
    """``Database.fetchval`` over the ``pgharbor`` pool + native call, per driver.

    Met when the ratio reaches *minimum* at every W measured with ``select1``;
    the ``pk`` ratio (the same comparison on a point SELECT) is shown too.
    """

    def ratio(r: Row) -> float | None:
        key = (r.workload, r.driver, r.workers, "pgharbor")
        pool = next(
            (b for b in rows if (b.workload, b.driver, b.workers, b.candidate) == key), None
        )
        return r.ops / pool.ops if pool is not None and pool.ops else None

    goals = []
    for driver in dict.fromkeys(r.driver for r in rows if r.candidate == DB):
        text = f"Database.fetchval vs. pool + native call ({driver}): ≥ {minimum:.2f} x"
        select1: list[tuple[int, float]] = []
        other: list[str] = []
        for r in rows:
            x = ratio(r) if (r.driver, r.candidate) == (driver, DB) else None
            if x is None:
                continue
            if r.workload == "select1":
                select1.append((r.workers, x))
            else:
                other.append(f"{r.workload}, W = {r.workers}: {x:.2f} x")
        if not select1:
            goals.append(_goal(text, "not measured", None))
            continue
        fig = ", ".join(f"W = {w}: {x:.2f} x" for w, x in select1)
        if other:
            fig += f" ({'; '.join(other)})"
        goals.append(_goal(text, fig, min(x for _, x in select1) >= minimum))
    if not goals:
        text = f"Database.fetchval vs. pool + native call: ≥ {minimum:.2f} x"
        goals.append(_goal(text, "not measured", None))
    return goals


def _extra_goals(extras: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    for r in extras.get("restart", []):
        n = len(r["errors"])
        goals.append(
            _goal(
                f"first successful acquire after a restart ({r['pool']}): ≤ 0.5 s",
                f"{r['seconds']:.3f} s ({n} failed attempt{'s' * (n != 1)} first)",
                r["seconds"] <= 0.5,
            )
        )
    for r in extras.get("open", []):
        goals.append(
            _goal(
                f"opening a pool of 20 ({r['pool']}): ≤ 3 x one connection",
                f"{r['open_ms']:.0f} ms vs {r['connect_ms']:.1f} ms = {r['ratio']:.1f} x"
                + (
                    f" (20 raw connects at once: {r['parallel_ms']:.0f} ms;"
                    f" the pool takes {r['vs_parallel']:.2f} x that)"
                    if "parallel_ms" in r
                    else ""
                ),
                r["ratio"] <= 3,
            )
        )
    for r in extras.get("memory", []):
        goals.append(
            _goal(
                f"memory over {r['cycles']} acquire/release cycles ({r['pool']}): < 1 MiB",
                f"{r['growth_bytes'] / 1024:+.1f} KiB"
                f" (peak +{r['peak_bytes_over_start'] / 1024:.1f} KiB, {r['seconds']:.1f} s)",
                r["growth_bytes"] < 1 << 20,
            )
        )
    return goals


def bar(rows: list[Row], extras: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of BENCHMARKS.md with the measured figure and whether it is met."""
    return [
        *_throughput_goals(rows),
        _safety_goal(rows),
        _safety_goal(rows, "pgharbor+prometheus", "Prometheus sink on vs. defaults: ≤ 5 % slower"),
        *_database_goals(rows),
        *_fairness_goals(rows, 64),
        *_extra_goals(extras),
    ]


def bar_markdown(goals: list[dict[str, Any]]) -> str:
    mark = {True: "✓", False: "✗", None: "-"}
    lines = ["| goal | measured | met |", "|---|---|:-:|"]
    lines += [f"| {g['goal']} | {g['measured']} | {mark[g['met']]} |" for g in goals]
    return "\n".join(lines)


# -- plot and JSON --------------------------------------------------------------------


def plot(rows: list[Row], path: str) -> None:
    """Throughput per candidate and W (top), acquire-wait p50/p99 (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r.workload == "select1"]
    labels = list(dict.fromkeys(f"{r.driver}\n{r.candidate}" for r in sel))
    ws = sorted({r.workers for r in sel})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(12, len(labels) * 0.8), 10))
    width = 0.8 / len(ws)
    for i, w in enumerate(ws):
        by_label = {f"{r.driver}\n{r.candidate}": r for r in sel if r.workers == w}
        xs = [j + i * width for j in range(len(labels))]
        ops = [by_label[lb].ops if lb in by_label else 0 for lb in labels]
        p50 = [(by_label[lb].wait_p50_ms or 0) if lb in by_label else 0 for lb in labels]
        p99 = [(by_label[lb].wait_p99_ms or 0) if lb in by_label else 0 for lb in labels]
        top.bar(xs, ops, width, label=f"W = {w}")
        bottom.bar(xs, p99, width, alpha=0.5, label=f"p99, W = {w}")
        bottom.scatter(xs, p50, marker="_", s=80, color="black")
    for ax in (top, bottom):
        ax.set_xticks([j + width * (len(ws) - 1) / 2 for j in range(len(labels))])
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    top.set_ylabel("ops/s (median of rounds)")
    top.set_title("SELECT 1, P = 5 connections (raw and pgbench: P workers)")
    bottom.set_ylabel("acquire wait, ms (bar: p99, tick: p50)")
    bottom.set_yscale("symlog", linthresh=0.1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(path: str, payload: dict[str, Any], rows: list[Row]) -> None:
    with open(path, "w") as f:
        json.dump({**payload, "rows": [asdict(r) for r in rows]}, f, indent=1, default=str)
