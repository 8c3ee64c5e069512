"""``pgharbor bench``: a load run with a progress bar, percentiles and a plot.

``pgharbor bench [TARGET] [--duration S] [--workers N ...] [--driver NAME]
[--sync] [--pool-size N] [--query SQL] [--plot FILE.png] [--json]`` runs one
step per worker count: a fresh pool, a short warm-up, then W workers looping
acquire → query → release for ``--duration`` seconds. It prints ops/s, latency
percentiles (each operation timed from acquire to release) and the pool's
wait counters; ``--plot`` draws throughput per worker count and latency over
time. With no target it starts a throwaway PostgreSQL server. Exit status: 0,
1 when the target cannot be reached or a step had nothing but errors, 2 for
bad options. Passwords never appear in the output, the JSON or the plot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._conninfo import describe, parse_conninfo, redact, secrets_of
from ..errors import ConfigError, HarborError, PoolTimeout
from .bench_run import Plan, Progress, run_async, run_threads
from .bench_stats import BenchReport

__all__ = ["bench"]

_ASYNC_DRIVERS = ("psycopg", "asyncpg")
_THREAD_DRIVERS = ("psycopg", "psycopg2")
_DEFAULT_WORKERS = (1, 4, 16)
_APPLICATION_NAME = "pgharbor-bench"


def bench(
    target: Annotated[
        str | None,
        typer.Argument(help="URL or keyword DSN; none: a temporary server.", show_default=False),
    ] = None,
    duration: Annotated[
        float, typer.Option("--duration", "-d", help="Seconds measured per worker count.")
    ] = 5.0,
    workers: Annotated[
        list[int] | None,
        typer.Option(
            "--workers",
            "-w",
            help="Concurrent workers; repeat for one step each (default: 1, 4, 16).",
            show_default=False,
        ),
    ] = None,
    driver: Annotated[
        str, typer.Option("--driver", help="psycopg, asyncpg or psycopg2.")
    ] = "psycopg",
    sync: Annotated[
        bool,
        typer.Option("--sync", help="Threads on a Pool, not asyncio tasks (psycopg2: always)."),
    ] = False,
    pool_size: Annotated[int, typer.Option("--pool-size", help="Connections in the pool.")] = 5,
    query: Annotated[str, typer.Option("--query", help="What each operation runs.")] = "SELECT 1",
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds to wait to connect, for a connection, a query."),
    ] = 10.0,
    plot: Annotated[
        str | None,
        typer.Option("--plot", metavar="FILE.png", help="Also draw the results (matplotlib)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON on stdout; messages go to stderr.")
    ] = False,
) -> None:
    """Run a load against a database and report throughput and latency."""
    steps = _check_options(workers, duration, pool_size, timeout, query, plot)
    threads = _check_driver(driver, sync)
    params = _check_target(target)
    err = Console(stderr=True, highlight=False)

    with contextlib.ExitStack() as stack:
        if target is None:
            target, params = stack.enter_context(_embedded(err))
        plan = Plan(
            conninfo=target,
            driver=driver,
            threads=threads,
            workers=steps,
            duration=duration,
            # Long enough to open every connection and warm the caches, short
            # enough not to double the run.
            warmup=min(1.0, duration / 5),
            # One timeline point per second, at least five points per step.
            interval=1.0 if duration >= 5 else duration / 5,
            pool_size=pool_size,
            query=query,
            timeout=timeout,
            kwargs={} if "application_name" in params else {"application_name": _APPLICATION_NAME},
            secrets=secrets_of(params),
        )
        report = _run(plan, describe(params), err, show_progress=not as_json and err.is_terminal)

    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _render(report, Console(highlight=False))
    if plot:
        _write_plot(report, plot, err)
    _exit_on_failure(report, err)


# -- validation (exit 2, naming the option) ------------------------------------


def _check_options(
    workers: list[int] | None,
    duration: float,
    pool_size: int,
    timeout: float,
    query: str,
    plot: str | None,
) -> list[int]:
    """Fail fast on bad numbers and paths; return the worker counts."""
    steps = list(workers or _DEFAULT_WORKERS)
    for w in steps:
        if w < 1:
            raise typer.BadParameter(f"must be at least 1 (got {w})", param_hint="'--workers'")
    if not (math.isfinite(duration) and duration > 0):
        raise typer.BadParameter(
            f"must be a positive number of seconds (got {duration})", param_hint="'--duration'"
        )
    if pool_size < 1:
        raise typer.BadParameter(
            f"must be at least 1 (got {pool_size})", param_hint="'--pool-size'"
        )
    if not (math.isfinite(timeout) and timeout > 0):
        raise typer.BadParameter(
            f"must be a positive number of seconds (got {timeout})", param_hint="'--timeout'"
        )
    if not query.strip():
        raise typer.BadParameter("must not be empty", param_hint="'--query'")
    if plot is not None:
        _check_plot(plot)
    return steps


def _check_plot(plot: str) -> None:
    """A ``.png`` path in an existing directory, and matplotlib installed:
    better to learn it now than after the run."""
    from ._plot import require_matplotlib

    if not plot.lower().endswith(".png"):
        raise typer.BadParameter(f"must be a .png file (got {plot!r})", param_hint="'--plot'")
    folder = os.path.dirname(os.path.abspath(plot))
    if not os.path.isdir(folder):
        raise typer.BadParameter(f"no such directory: {folder}", param_hint="'--plot'")
    try:
        require_matplotlib()
    except ImportError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--plot'") from None


def _check_driver(driver: str, sync: bool) -> bool:
    """Whether the run uses threads; the driver must exist and be installed."""
    from ..drivers import get_async_driver, get_driver

    known = sorted({*_ASYNC_DRIVERS, *_THREAD_DRIVERS})
    if driver not in known:
        raise typer.BadParameter(
            f"must be one of {', '.join(known)} (got {driver!r})", param_hint="'--driver'"
        )
    threads = sync or driver not in _ASYNC_DRIVERS
    if threads and driver not in _THREAD_DRIVERS:
        raise typer.BadParameter(
            f"the {driver} driver is asyncio only; drop --sync", param_hint="'--sync'"
        )
    try:
        (get_driver if threads else get_async_driver)(driver)
    except ImportError as exc:  # the message holds the pip install command
        raise typer.BadParameter(str(exc), param_hint="'--driver'") from None
    return threads


def _check_target(target: str | None) -> dict[str, str]:
    """The target's parameters (empty without a target); the error never
    carries a password (`parse_conninfo` redacts libpq's message)."""
    if target is None:
        return {}
    try:
        return parse_conninfo(target, field="TARGET")
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'TARGET'") from None


# -- running --------------------------------------------------------------------


@contextlib.contextmanager
def _embedded(err: Console) -> Iterator[tuple[str, dict[str, str]]]:
    """A throwaway server for a run without a target: its conninfo and parameters."""
    from ..testing import PostgresServer

    err.print("[dim]no target given: starting a temporary PostgreSQL server...[/dim]")
    with PostgresServer() as server:
        conninfo = server.conninfo()
        yield conninfo, parse_conninfo(conninfo)


def _run(plan: Plan, where: str, err: Console, show_progress: bool) -> BenchReport:
    """Run every step, with a progress bar on stderr; exit 1 if the target
    cannot be used at all."""
    mode = "threads" if plan.threads else "asyncio"
    try:
        with _quiet_pool_logs(), _progress_bar(plan, err, show_progress) as progress:
            runner = run_threads if plan.threads else run_async
            version, steps = runner(plan, progress)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(code=130) from None
    except Exception as exc:
        err.print(
            f"[red]error:[/red] {escape(_one_line(exc, where, plan.secrets))}", soft_wrap=True
        )
        raise typer.Exit(code=1) from None
    return BenchReport(
        target=where,
        driver=plan.driver,
        mode=mode,
        server_version=version,
        pool_size=plan.pool_size,
        query=plan.query,
        duration=plan.duration,
        steps=steps,
    )


def _one_line(exc: Exception, where: str, secrets: list[str]) -> str:
    """Why the run failed, on one line, naming the target, without secrets."""
    # A pool that could not open says so at length; its cause, the last
    # connect error, is the useful part.
    cause = exc.__cause__ if isinstance(exc, PoolTimeout) else None
    reason = cause if isinstance(cause, HarborError) else exc
    # Pool errors are password-free already; driver errors may quote the DSN.
    text = " ".join(redact(f"{type(reason).__name__}: {reason}", secrets).split())
    return text if where in text else f"bench against {where} failed: {text}"


@contextlib.contextmanager
def _quiet_pool_logs() -> Iterator[None]:
    """Keep the pools' warnings (each failed connection attempt...) off the
    terminal: without a handler of its own, logging prints them to stderr,
    and the run's outcome says what matters once."""
    logger = logging.getLogger("pgharbor")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def _progress_bar(plan: Plan, err: Console, enabled: bool) -> Iterator[Progress]:
    """One bar per worker count, advancing with the measured time."""
    if not enabled:
        yield _no_progress
        return
    from rich import progress as rp

    bar = rp.Progress(
        rp.TextColumn("{task.description}"),
        rp.BarColumn(),
        rp.TextColumn("{task.fields[rate]}"),
        console=err,
        # Refreshed by the runner's own ticks: no refresh thread to stop.
        auto_refresh=False,
    )
    ids = [
        bar.add_task(f"{w:>4} worker{'s' if w > 1 else ' '}", total=plan.duration, rate="")
        for w in plan.workers
    ]

    def update(index: int, elapsed: float, ops: int) -> None:
        rate = f"{ops / elapsed:>10,.0f} ops/s" if elapsed > 0 else ""
        bar.update(ids[index], completed=min(elapsed, plan.duration), rate=rate)
        bar.refresh()

    with bar:
        yield update


def _no_progress(index: int, elapsed: float, ops: int) -> None:
    """Progress when there is no bar to show."""


# -- reporting --------------------------------------------------------------------


def _render(report: BenchReport, out: Console) -> None:
    """A header and one table row per worker count."""
    version = f"  PostgreSQL {report.server_version}" if report.server_version else ""
    out.print(f"[bold]pgharbor bench[/bold]  {escape(report.target)}{escape(version)}")
    out.print(
        f"[dim]{report.driver} ({report.mode}), pool of {report.pool_size}, "
        f"{escape(repr(report.query))}, {report.duration:g} s per step[/dim]"
    )
    table = Table(box=None, padding=(0, 1))
    for name in ("workers", "ops/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "waited", "errors"):
        table.add_column(name, justify="right")
    for s in report.steps:
        errors = f"[red]{s.errors:,}[/red]" if s.errors else "0"
        table.add_row(
            str(s.workers),
            f"{s.ops_per_s:,.0f}",
            f"{s.p50_ms:.3f}",
            f"{s.p95_ms:.3f}",
            f"{s.p99_ms:.3f}",
            f"{s.max_ms:.3f}",
            f"{s.waited:,}",
            errors,
        )
    out.print(table)


def _write_plot(report: BenchReport, path: str, err: Console) -> None:
    from ._plot import write_png

    try:
        write_png(report, path)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write {escape(path)}: {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    err.print(f"[dim]plot written to {escape(path)}[/dim]")


def _exit_on_failure(report: BenchReport, err: Console) -> None:
    """Name the first error of each failing step; exit 1 if a step did
    nothing but fail."""
    failed = False
    for s in report.steps:
        if not s.errors:
            continue
        failed = failed or s.ops == 0
        share = f"all {s.errors:,}" if s.ops == 0 else f"{s.errors:,}"
        err.print(
            f"[yellow]W={s.workers}: {share} operations failed; first: "
            f"{escape(s.first_error or '?')}[/yellow]"
        )
    if failed:
        raise typer.Exit(code=1)
