"""Close pools, databases and managers gracefully on SIGTERM / SIGINT.

Opt-in: nothing is installed unless you call one of these.

- `close_on_signals(target)` (threads): SIGTERM and SIGINT raise
  ``SystemExit`` in the main thread, so every ``with`` block unwinds and
  closes what it opened, and ``target`` is closed as well (bounded by
  ``timeout``) before the interpreter exits. The target is not closed inside
  the signal handler itself: the handler may interrupt the main thread while it
  holds a pool's lock.
- `aclose_on_signals(target)` (asyncio, call it from the running loop):
  ``target.close(timeout)`` runs as a task — waiters get ``PoolClosed`` at
  once, connections in use are closed as they are returned — and then the task
  that called it (usually the program's main task) is cancelled, so ``async
  with`` blocks unwind.

In both, a second signal while shutting down exits at once.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["aclose_on_signals", "close_on_signals"]

logger = logging.getLogger("pgharbor.shutdown")

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Closeable(Protocol):
    def close(self, timeout: float = ...) -> Any: ...


def close_on_signals(
    target: _Closeable, *, timeout: float = 10.0, signals: Iterable[int] = DEFAULT_SIGNALS
) -> None:
    """On SIGTERM/SIGINT, exit (``SystemExit(128 + signal)``) after closing
    ``target`` within ``timeout`` seconds. Call from the main thread."""
    stopping = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            os._exit(128 + signum)  # second signal: do not wait any longer
        stopping = True
        logger.info("signal %d: closing %r, then exiting", signum, target)
        raise SystemExit(128 + signum)

    def close_at_exit() -> None:
        if stopping:
            target.close(timeout)

    atexit.register(close_at_exit)
    for sig in signals:
        signal.signal(sig, handler)


def aclose_on_signals(
    target: _Closeable, *, timeout: float = 10.0, signals: Iterable[int] = DEFAULT_SIGNALS
) -> None:
    """On SIGTERM/SIGINT, close ``target`` within ``timeout`` seconds, then
    cancel the calling task. Call from a task on the running loop."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stopping = False

    async def shutdown(signum: int) -> None:
        try:
            await asyncio.wait_for(target.close(timeout), timeout + 1.0)
        except Exception:
            logger.exception("closing %r on signal %d failed", target, signum)
        if main is not None:
            main.cancel()

    def handler(signum: int) -> None:
        nonlocal stopping
        if stopping:
            os._exit(128 + signum)
        stopping = True
        logger.info("signal %d: closing %r", signum, target)
        task = loop.create_task(shutdown(signum), name="pgharbor-shutdown")
        _keep.add(task)
        task.add_done_callback(_keep.discard)

    for sig in signals:
        loop.add_signal_handler(sig, handler, sig)


_keep: set[asyncio.Task[None]] = set()
