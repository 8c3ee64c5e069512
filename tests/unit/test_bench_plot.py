"""``pgharbor bench`` without a server: the figure, and the numbers behind it."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from pgharbor._cli._plot import build_figure, first_over_pool, series_labels, write_png
from pgharbor._cli.bench_stats import BenchReport, Histogram, Point, Recorder, StepResult

pytest.importorskip("matplotlib")
np = pytest.importorskip("numpy")


def _step(workers: int, base_ms: float) -> StepResult:
    timeline = [Point(t=t * 0.2, ops=100, p50_ms=base_ms, p99_ms=base_ms * 3) for t in range(5)]
    return StepResult(
        workers=workers,
        seconds=1.0,
        ops=500,
        ops_per_s=500.0 * workers**0.5,
        p50_ms=base_ms,
        p95_ms=base_ms * 2,
        p99_ms=base_ms * 3,
        max_ms=base_ms * 5,
        errors=0,
        first_error=None,
        waited=0,
        wait_ms=0.0,
        timeline=timeline,
    )


def _report(*steps: StepResult) -> BenchReport:
    return BenchReport(
        target="db.example:5432/app as alice",
        driver="psycopg",
        mode="asyncio",
        server_version="16.4",
        pool_size=5,
        query="SELECT 1",
        duration=1.0,
        steps=list(steps),
    )


def _labels(axes: Any) -> list[str]:
    return [str(line.get_label()) for line in axes.get_lines()]


def test_figure_has_a_labelled_line_per_series() -> None:
    """Throughput and p50/p99 per worker count side by side; below, p50 and
    p99 over time per worker count, the same colour for one worker count."""
    report = _report(_step(1, 0.2), _step(4, 0.6), _step(16, 3.0))
    fig = build_figure(report)
    throughput, latency, timeline = fig.axes
    assert _labels(throughput) == ["throughput", "workers > pool size (5)"]
    ys = np.asarray(throughput.get_lines()[0].get_ydata(), dtype=float).tolist()
    assert ys == [s.ops_per_s for s in report.steps]
    assert [t.get_text() for t in throughput.get_xticklabels()] == ["1", "4", "16"]
    assert _labels(latency) == ["p50", "p99", "workers > pool size (5)"]
    p50, p99 = (
        np.asarray(line.get_ydata(), dtype=float).tolist() for line in latency.get_lines()[:2]
    )
    assert p50 == [s.p50_ms for s in report.steps] and p99 == [s.p99_ms for s in report.steps]
    assert [t.get_text() for t in latency.get_xticklabels()] == ["1", "4", "16"]
    assert latency.get_yscale() == "log"  # 0.2 ms to 9 ms: a wide spread
    labels = _labels(timeline)
    assert labels == ["p50 W=1", "p99 W=1", "p50 W=4", "p99 W=4", "p50 W=16", "p99 W=16"]
    assert series_labels(report) == ["throughput", "p50", "p99", *labels]
    lines = timeline.get_lines()
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert timeline.get_yscale() == "log"


def test_the_pool_size_marker_sits_before_the_first_step_that_queues() -> None:
    """The marker is a vertical line between the last worker count within
    the pool size and the first above it (x axis in ascending worker
    order, whatever order the steps ran in), on both per-worker panels."""
    report = _report(_step(16, 3.0), _step(1, 0.2), _step(5, 0.6), _step(64, 9.0))
    assert first_over_pool(report) == 16
    fig = build_figure(report)
    for axes in fig.axes[:2]:
        assert [t.get_text() for t in axes.get_xticklabels()] == ["1", "5", "16", "64"]
        (marker,) = [line for line in axes.get_lines() if "pool size" in str(line.get_label())]
        assert np.asarray(marker.get_xdata(), dtype=float).tolist() == [1.5, 1.5]
    p99 = np.asarray(fig.axes[1].get_lines()[1].get_ydata(), dtype=float).tolist()
    assert p99 == pytest.approx([0.6, 1.8, 9.0, 27.0])


def test_no_marker_when_every_step_fits_the_pool() -> None:
    """Workers never above the pool size: no marker line, none in the legend."""
    report = _report(_step(1, 0.2), _step(5, 0.6))
    assert first_over_pool(report) is None
    fig = build_figure(report)
    for axes in fig.axes[:2]:
        assert not [line for line in axes.get_lines() if "pool size" in str(line.get_label())]


def test_figure_keeps_a_linear_scale_for_close_latencies() -> None:
    """A log axis only when latencies span more than a factor of 20."""
    fig = build_figure(_report(_step(1, 1.0), _step(2, 1.5)))
    assert fig.axes[1].get_yscale() == "linear"
    assert fig.axes[2].get_yscale() == "linear"


def test_png_metadata_names_the_series(tmp_path: Path) -> None:
    """write_png stores the title, the series names and where workers first
    exceed the pool size in the PNG's text; the image is 1100 x 840."""
    from PIL import Image

    report = _report(_step(2, 0.5), _step(8, 2.0))
    path = tmp_path / "b.png"
    write_png(report, str(path))
    with Image.open(path) as image:
        assert image.size == (1100, 840)
        text = dict(image.text)  # type: ignore[attr-defined]
    assert text["Title"] == "pgharbor bench"
    description = json.loads(text["Description"])
    assert description["series"] == [
        "throughput",
        "p50",
        "p99",
        "p50 W=2",
        "p99 W=2",
        "p50 W=8",
        "p99 W=8",
    ]
    assert (description["pool_size"], description["workers_over_pool_from"]) == (5, 8)


# -- the numbers behind the plot ---------------------------------------------------


def test_histogram_percentiles_are_within_two_percent() -> None:
    """Log buckets: every percentile within 2 % of the exact nearest rank."""
    rng = random.Random(7)
    samples = [rng.lognormvariate(math.log(0.0005), 0.8) for _ in range(20_000)]
    hist = Histogram()
    for s in samples:
        hist.add(s)
    ordered = sorted(samples)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert hist.percentile(q) == pytest.approx(exact, rel=0.02)
    assert hist.max == ordered[-1] and hist.min == ordered[0]
    assert hist.count == len(samples)


def test_histogram_percentiles_are_ordered_and_bounded() -> None:
    """p50 <= p99 <= max even with one sample; an empty histogram says 0."""
    assert Histogram().percentile(0.5) == 0.0
    one = Histogram()
    one.add(0.00123)
    assert one.percentile(0.5) == one.percentile(0.99) == one.max == 0.00123


def test_recorders_merge_into_a_timeline() -> None:
    """Operations land in the interval they started in; errors are counted
    and the first one kept, on one line and without secrets."""
    from pgharbor._cli.bench_stats import summarize

    a, b = Recorder(100.0, 0.5), Recorder(100.0, 0.5)
    a.add(100.1, 0.001)
    b.add(100.2, 0.003)
    b.add(100.7, 0.002)
    a.error(ValueError("boom: password=hunter2\n  at line 1"))
    a.error(ValueError("again"))
    before, after = {"waited": 3, "wait_ms": 1.5}, {"waited": 5, "wait_ms": 4.0}
    step = summarize(2, [a, b], 1.0, before, after, secrets=["hunter2"])
    assert (step.ops, step.ops_per_s, step.errors) == (3, 3.0, 2)
    assert step.first_error == "ValueError: boom: password=*** at line 1"
    assert (step.waited, step.wait_ms) == (2, 2.5)
    assert [(p.t, p.ops) for p in step.timeline] == [(0.0, 2), (0.5, 1)]
    assert step.max_ms == 3.0 and step.p50_ms <= step.p99_ms <= step.max_ms
