"""``pgharbor bench --plot``: throughput per worker count and latency over time.

matplotlib is the ``plot`` extra, so it is imported inside the functions, and
only its object-oriented API is used (a `Figure` with an Agg canvas, never
``pyplot``): no global figure registry, no GUI backend, nothing left open.
The PNG carries the series names in its ``Description`` text chunk, so a
reader (or a test) can tell what was drawn without looking at pixels.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .bench_stats import BenchReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["build_figure", "require_matplotlib", "series_labels", "write_png"]

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


def series_labels(report: BenchReport) -> list[str]:
    """The label of every line `build_figure` draws, in drawing order."""
    labels = ["throughput"]
    for step in report.steps:
        labels += [f"p50 W={step.workers}", f"p99 W={step.workers}"]
    return labels


def _title(report: BenchReport) -> str:
    version = f", PostgreSQL {report.server_version}" if report.server_version else ""
    return (
        f"pgharbor bench: {report.target}{version}\n"
        f"{report.driver} ({report.mode}), pool of {report.pool_size}, "
        f"{report.duration:g} s per step, {report.query!r}"
    )


def build_figure(report: BenchReport) -> Figure:
    """Two panels: ops/s per worker count, and p50/p99 latency over time
    (one colour per worker count: p50 solid, p99 dashed).

    Raises:
        ImportError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(_title(report), fontsize=10)
    throughput, latency = fig.subplots(1, 2)

    # Worker counts as evenly spaced categories: 1, 4, 16 would crowd a linear axis.
    xs = list(range(len(report.steps)))
    rates = [step.ops_per_s for step in report.steps]
    throughput.plot(xs, rates, marker="o", color="C0", label="throughput")
    for x, rate in zip(xs, rates, strict=True):
        throughput.annotate(
            f"{rate:,.0f}", (x, rate), textcoords="offset points", xytext=(0, 6), ha="center"
        )
    throughput.set_xticks(xs, [str(step.workers) for step in report.steps])
    throughput.margins(x=0.12)  # room for the end points' annotations
    throughput.set_xlabel("workers")
    throughput.set_ylabel("ops/s")
    throughput.set_ylim(bottom=0, top=max(rates, default=1.0) * 1.15 or 1.0)
    throughput.set_title("throughput")
    throughput.grid(alpha=0.3)
    throughput.legend(loc="lower right")

    highest = lowest = None
    for i, step in enumerate(report.steps):
        ts = [p.t for p in step.timeline]
        colour = f"C{i}"
        p50 = [p.p50_ms for p in step.timeline]
        p99 = [p.p99_ms for p in step.timeline]
        latency.plot(ts, p50, color=colour, marker=".", label=f"p50 W={step.workers}")
        latency.plot(ts, p99, color=colour, linestyle="--", label=f"p99 W={step.workers}")
        values = [v for p in step.timeline for v in (p.p50_ms, p.p99_ms) if v > 0]
        if values:
            highest = max(values) if highest is None else max(highest, max(values))
            lowest = min(values) if lowest is None else min(lowest, min(values))
    if highest is not None and lowest is not None and highest > 20 * lowest:
        # W=1 and W=16 can differ by orders of magnitude; plain numbers read
        # better than powers of ten at this range.
        from matplotlib.ticker import LogLocator, StrMethodFormatter

        latency.set_yscale("log")
        latency.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        latency.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        latency.yaxis.set_minor_formatter(StrMethodFormatter(""))
    latency.set_xlabel("seconds into the step")
    latency.set_ylabel("latency (ms)")
    latency.set_title("latency over time")
    latency.grid(alpha=0.3)
    # Outside the panel: latency lines fill every corner of it.
    latency.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def write_png(report: BenchReport, path: str) -> None:
    """Draw the report and save it as a PNG at ``path``, with the title and
    the series names (JSON) in the PNG's text metadata.

    Raises:
        ImportError: matplotlib is not installed.
        OSError: the file cannot be written.
    """
    fig = build_figure(report)
    description = json.dumps({"series": series_labels(report), "target": report.target})
    fig.savefig(
        path,
        format="png",
        metadata={"Title": "pgharbor bench", "Description": description},
    )
