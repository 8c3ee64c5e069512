"""``pgharbor top``: a live terminal view of pools, nodes and clients.

``pgharbor top [TARGET ...] [--config FILE] [--interval S] [--once]`` picks
its targets as ``check`` does (URLs, else the config file's or the
environment's databases, else a temporary server), opens a small pool per
database (``application_name=pgharbor-top``) and redraws, every interval, a
header naming each target, a Clients table (what ``pg_stat_activity`` shows
per application: the pools of the processes being watched) and a Nodes table
(role, lag, the round trip top measures itself, breaker, errors, and top's
own pool counters). The columns are chosen by the terminal's width, so 80
columns show what matters. ``--once`` prints one frame and exits, 1 if no
target answered. Ctrl-C ends the live view with status 0. Passwords never
appear.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from time import monotonic
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from .._conninfo import redact
from ..errors import ConfigError
from .targets import resolve_targets
from .top_data import RoundTrips, open_targets, snapshot
from .top_view import render

__all__ = ["top"]

# Bounds on everything a refresh does: connecting, acquiring, each statement.
_CONNECT_TIMEOUT = 2.0
_MAX_STEP = 2.0
_MIN_STEP = 0.5
# Width of a frame printed to something that is not a terminal (a pipe, a
# test runner), where rich would otherwise assume 80 columns.
_PIPE_WIDTH = 160


class _RecentLog(logging.Handler):
    """Keeps the last few warnings pgharbor logged (a probe that lost its
    node, a split brain) for the header, instead of letting them scribble
    over the live view on stderr."""

    def __init__(self, secrets: list[str], keep: int = 3) -> None:
        super().__init__(logging.WARNING)
        self.secrets = secrets
        self.messages: deque[str] = deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # One line each, and a reconnect loop repeating itself counts once.
            message = " ".join(redact(record.getMessage(), self.secrets).split())
            if message not in self.messages:
                self.messages.append(message)
        except Exception:  # a log record must never break the view
            self.handleError(record)


@contextlib.contextmanager
def _captured_logs() -> Iterator[_RecentLog]:
    handler = _RecentLog([])
    logger = logging.getLogger("pgharbor")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of raising in the middle of a
    refresh, so the loop ends between frames and every pool gets closed.
    Only the main thread can install handlers; elsewhere Ctrl-C is left as
    it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def top(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="URLs or keyword DSNs; none: the config, else a temporary server."),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="A pgharbor TOML file.")
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", "-n", help="Seconds between two refreshes.")
    ] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
) -> None:
    """Watch pools, nodes and server-side clients, refreshed every interval.

    Exits 0 on Ctrl-C; with ``--once``, 1 when no target answered.
    """
    if not (math.isfinite(interval) and interval > 0):
        raise typer.BadParameter(f"must be a number > 0, got {interval}", param_hint="'--interval'")
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH
    # One frame may take its time; a live one should keep up with the interval.
    step = _MAX_STEP if once else min(_MAX_STEP, max(_MIN_STEP, interval))
    with contextlib.ExitStack() as stack:
        try:
            named = resolve_targets(list(targets or []), config, console, stack)
        except ConfigError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(code=2) from None
        # Attached first and removed last: pools log their reconnect attempts
        # until they are closed.
        log = stack.enter_context(_captured_logs())
        watched = open_targets(named, connect_timeout=_CONNECT_TIMEOUT, wait_for_roles=once)
        log.secrets = watched.secrets
        stack.callback(watched.close)
        # One worker per node, so a node that hangs never delays the others.
        nodes = sum(len(db.topology.pools()) for db in watched.databases.values())
        executor = ThreadPoolExecutor(max(1, min(16, nodes)), thread_name_prefix="pgharbor-top")
        # Registered after close(): runs first, so no sample outlives its pool.
        stack.callback(executor.shutdown, wait=True, cancel_futures=True)
        round_trips = RoundTrips()

        def frame() -> dict[str, Any]:
            snap = snapshot(
                watched.databases,
                round_trips,
                timeout=step,
                interval=interval,
                executor=executor,
                invalid=watched.invalid,
                secrets=watched.secrets,
            )
            snap["log"] = list(log.messages)
            return snap

        if once:
            snap = frame()
            console.print(render(snap, console.width))
            if snap["reachable"] == 0:
                raise typer.Exit(code=1)
            return
        _live(console, frame, interval)


def _live(console: Console, frame: Callable[[], dict[str, Any]], interval: float) -> None:
    """Redraw until SIGINT/SIGTERM; each frame starts ``interval`` after the last."""
    stop = threading.Event()
    with (
        _stop_on_signals(stop),
        Live(
            console=console,
            auto_refresh=False,  # no refresh thread: we redraw when data is new
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live,
    ):
        while not stop.is_set():
            started = monotonic()
            # The width is read each frame: a resized terminal gets new columns.
            live.update(render(frame(), console.width), refresh=True)
            stop.wait(max(0.0, interval - (monotonic() - started)))
    sys.stdout.flush()
