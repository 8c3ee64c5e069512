"""The ceiling: the smallest fair pool, with no features at all.

A deque of idle connections and a FIFO queue of waiters; a returned connection
goes straight to the oldest waiter. No timeouts, no validation, no counters,
no error handling: it is not a pool anyone should use, but the cost of a fair
hand-off itself on this machine. The distance between it and ``raw`` is what
no FIFO pool can close; the distance between pgharbor and it is pgharbor's own
overhead. (The issue's "40-line prototype".)
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

__all__ = ["AsyncPrototype", "Prototype"]


class AsyncPrototype:
    """FIFO hand-off on one event loop: a future per waiter."""

    def __init__(self, conns: list[Any]) -> None:
        self._idle: deque[Any] = deque(conns)
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def borrow(self) -> _AsyncBorrow:
        return _AsyncBorrow(self)


class _AsyncBorrow:
    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: AsyncPrototype) -> None:
        self._pool = pool

    async def __aenter__(self) -> Any:
        pool = self._pool
        if pool._idle:
            self._conn = pool._idle.pop()
        else:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pool._waiters.append(fut)
            self._conn = await fut
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        waiters = self._pool._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(self._conn)
                return
        self._pool._idle.append(self._conn)


class Prototype:
    """FIFO hand-off between threads: a lock per waiter, released to wake it."""

    def __init__(self, conns: list[Any]) -> None:
        self._idle: deque[Any] = deque(conns)
        self._waiters: deque[tuple[threading.Lock, list[Any]]] = deque()
        self._lock = threading.Lock()

    def borrow(self) -> _Borrow:
        return _Borrow(self)


class _Borrow:
    __slots__ = ("_conn", "_pool")

    def __init__(self, pool: Prototype) -> None:
        self._pool = pool

    def __enter__(self) -> Any:
        pool = self._pool
        with pool._lock:
            if pool._idle:
                self._conn = pool._idle.pop()
                return self._conn
            gate: threading.Lock = threading.Lock()
            box: list[Any] = []
            gate.acquire()
            pool._waiters.append((gate, box))
        gate.acquire()  # released by the thread that hands a connection over
        self._conn = box[0]
        return self._conn

    def __exit__(self, *exc: object) -> None:
        pool = self._pool
        with pool._lock:
            if pool._waiters:
                gate, box = pool._waiters.popleft()
                box.append(self._conn)
                gate.release()
            else:
                pool._idle.append(self._conn)
