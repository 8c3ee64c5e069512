"""``pgharbor bench --plot``: throughput and latency per worker count, latency over time.

matplotlib is the ``plot`` extra, so it is imported inside the functions, and
only its object-oriented API is used (a `Figure` with an Agg canvas, never
``pyplot``): no global figure registry, no GUI backend, nothing left open.
The PNG carries the series names and the pool-size marker in its
``Description`` text chunk, so a reader (or a test) can tell what was drawn
without looking at pixels.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .bench_stats import BenchReport, StepResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["build_figure", "first_over_pool", "require_matplotlib", "series_labels", "write_png"]

_INSTALL = "pip install 'pgharbor[plot]'"


def require_matplotlib() -> None:
    """Fail early, before a long run, when matplotlib is missing.

    Raises:
        ImportError: with the ``pip install`` command to run.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"--plot needs matplotlib: {_INSTALL}", name="matplotlib") from exc


def _by_workers(report: BenchReport) -> list[StepResult]:
    """The steps in ascending worker count (the order of the x axis)."""
    return sorted(report.steps, key=lambda step: step.workers)


def series_labels(report: BenchReport) -> list[str]:
    """The label of every line `build_figure` draws, in drawing order (the
    pool-size marker, a line on both upper panels, is not a series)."""
    labels = ["throughput", "p50", "p99"]
    for step in report.steps:
        labels += [f"p50 W={step.workers}", f"p99 W={step.workers}"]
    return labels


def first_over_pool(report: BenchReport) -> int | None:
    """The smallest worker count above the pool size (where callers start
    to queue for a connection), or None when no step has more workers than
    connections."""
    over = [step.workers for step in report.steps if step.workers > report.pool_size]
    return min(over, default=None)


def _title(report: BenchReport) -> str:
    version = f", PostgreSQL {report.server_version}" if report.server_version else ""
    return (
        f"pgharbor bench: {report.target}{version}\n"
        f"{report.driver} ({report.mode}), pool of {report.pool_size}, "
        f"{report.duration:g} s per step, {report.query!r}"
    )


def _log_scale_if_wide(axes: Axes, values: list[float]) -> None:
    """A log y axis when the values span more than a factor of 20 (W=1 and
    W=64 can differ by orders of magnitude), with plain-number ticks."""
    positive = [v for v in values if v > 0]
    if not positive or max(positive) <= 20 * min(positive):
        return
    from matplotlib.ticker import LogLocator, StrMethodFormatter

    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axes.yaxis.set_minor_formatter(StrMethodFormatter(""))


def _mark_pool_size(axes: Axes, report: BenchReport, steps: list[StepResult]) -> None:
    """Shade the steps with more workers than connections, from a dotted
    line (in the legend) between the last step that fits the pool and the
    first that does not."""
    first = first_over_pool(report)
    if first is None:
        return
    x = next(i for i, step in enumerate(steps) if step.workers == first) - 0.5
    axes.axvline(
        x,
        color="0.35",
        linestyle=":",
        linewidth=1.2,
        label=f"workers > pool size ({report.pool_size})",
    )
    axes.axvspan(x, len(steps) - 0.5, color="0.5", alpha=0.08, linewidth=0)


def build_figure(report: BenchReport) -> Figure:
    """Three panels: ops/s per worker count and p50/p99 latency per worker
    count side by side (both marking where workers exceed the pool size),
    and below them p50/p99 latency over time (one colour per worker count:
    p50 solid, p99 dashed).

    Raises:
        ImportError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(_title(report), fontsize=10)
    panels = fig.subplot_mosaic([["throughput", "latency"], ["timeline", "timeline"]])
    throughput, latency, timeline = panels["throughput"], panels["latency"], panels["timeline"]

    # Worker counts as evenly spaced categories: 1, 4, 16 would crowd a linear axis.
    steps = _by_workers(report)
    xs = list(range(len(steps)))
    ticks = [str(step.workers) for step in steps]

    rates = [step.ops_per_s for step in steps]
    throughput.plot(xs, rates, marker="o", color="C0", label="throughput")
    for x, rate in zip(xs, rates, strict=True):
        throughput.annotate(
            f"{rate:,.0f}", (x, rate), textcoords="offset points", xytext=(0, 6), ha="center"
        )
    throughput.set_xticks(xs, ticks)
    throughput.set_xlim(-0.5, len(steps) - 0.5)  # room for the end points' annotations
    throughput.set_xlabel("workers")
    throughput.set_ylabel("ops/s")
    throughput.set_ylim(bottom=0, top=max(rates, default=1.0) * 1.2 or 1.0)
    throughput.set_title("throughput")
    throughput.grid(alpha=0.3)
    _mark_pool_size(throughput, report, steps)
    throughput.legend(loc="best", fontsize="small")

    p50 = [step.p50_ms for step in steps]
    p99 = [step.p99_ms for step in steps]
    # Not a colour of the cycle: those stand for worker counts below.
    latency.plot(xs, p50, marker="o", color="0.15", label="p50")
    latency.plot(xs, p99, marker="s", color="0.15", linestyle="--", label="p99")
    for x, value in zip(xs, p99, strict=True):
        latency.annotate(
            f"{value:.3g}", (x, value), textcoords="offset points", xytext=(0, 6), ha="center"
        )
    latency.set_xticks(xs, ticks)
    latency.set_xlim(-0.5, len(steps) - 0.5)
    latency.margins(y=0.15)
    latency.set_xlabel("workers")
    latency.set_ylabel("latency (ms), acquire to release")
    latency.set_title("latency per worker count")
    latency.grid(alpha=0.3)
    _log_scale_if_wide(latency, p50 + p99)
    _mark_pool_size(latency, report, steps)
    latency.legend(loc="best", fontsize="small")

    values: list[float] = []
    for i, step in enumerate(report.steps):
        ts = [p.t for p in step.timeline]
        colour = f"C{i}"
        timeline.plot(
            ts,
            [p.p50_ms for p in step.timeline],
            color=colour,
            marker=".",
            label=f"p50 W={step.workers}",
        )
        timeline.plot(
            ts,
            [p.p99_ms for p in step.timeline],
            color=colour,
            linestyle="--",
            label=f"p99 W={step.workers}",
        )
        values += [v for p in step.timeline for v in (p.p50_ms, p.p99_ms)]
    _log_scale_if_wide(timeline, values)
    timeline.set_xlabel("seconds into the step")
    timeline.set_ylabel("latency (ms)")
    timeline.set_title("latency over time")
    timeline.grid(alpha=0.3)
    # Outside the panel: latency lines fill every corner of it.
    timeline.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def write_png(report: BenchReport, path: str) -> None:
    """Draw the report and save it as a PNG at ``path``, with the title, and
    the series names, the target and the first worker count above the pool
    size (JSON) in the PNG's text metadata.

    Raises:
        ImportError: matplotlib is not installed.
        OSError: the file cannot be written.
    """
    fig = build_figure(report)
    description = json.dumps(
        {
            "series": series_labels(report),
            "target": report.target,
            "pool_size": report.pool_size,
            "workers_over_pool_from": first_over_pool(report),
        }
    )
    fig.savefig(
        path,
        format="png",
        metadata={"Title": "pgharbor bench", "Description": description},
    )
