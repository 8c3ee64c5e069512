"""Socket helpers shared by the driver adapters: bounded waits, the
checkout check, and cutting a connection from any thread."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

__all__ = ["poller", "sever", "wait_fd", "watch_fd"]


def wait_fd(fd: int, events: int, deadline: float) -> None:
    """Wait until ``fd`` is ready for ``events`` (poll flags) or raise
    ``TimeoutError`` at ``deadline`` (monotonic). Shared with psycopg2."""
    remaining = deadline - time.monotonic()
    poller = select.poll()
    poller.register(fd, events)
    if remaining <= 0 or not poller.poll(remaining * 1000.0):
        raise TimeoutError("no answer from the server in time")


def poller(fd: int) -> Callable[[float], list[tuple[int, int]]]:
    """``poll`` of a poller watching ``fd`` for input: called with 0, it says
    at once whether anything (data, EOF, an error) is pending. The checkout
    check of an idle connection: a server that restarted or ended the
    backend has sent its FATAL and closed, so pending input (or a closed
    descriptor) means the connection must not be lent. One poller per
    connection: one ``poll`` system call per checkout, nothing else."""
    watcher = select.poll()
    watcher.register(fd, select.POLLIN)
    return watcher.poll


def watch_fd(fd: int, broken: Callable[[], bool]) -> Callable[[], bool]:
    """A checkout check: not ``broken()`` (asked first: a closed
    connection's descriptor number may belong to another socket by now),
    and nothing pending on ``fd`` (see `poller`)."""
    poll = poller(fd)

    def lendable() -> bool:
        return not broken() and not poll(0)

    return lendable


def sever(conn: Any) -> bool:
    """Shut down the socket of a libpq connection (psycopg, psycopg2) from any
    thread, so a read blocked on it ends at once; whether it could. The
    connection is unusable afterwards. Never raises."""
    try:
        # A duplicate descriptor: shutdown() acts on the socket both share,
        # and closing the duplicate leaves the driver's descriptor alone.
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:
        return False
    return True
