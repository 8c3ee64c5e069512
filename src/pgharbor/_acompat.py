"""Paired primitives: each async name has a sync twin that `tools/unasync.py`
maps it to, so `_async/` code reads the same in both flavours.

=================  ============================  ===============================
async (source)     async meaning                 sync twin
=================  ============================  ===============================
``ALock``          uncontended (one loop)        ``Lock`` = ``threading.Lock``
``AEvent``         ``asyncio.Event`` + timeout   ``Event`` (``threading.Event``)
``AWaiter``        a future, resolved once       ``Waiter``: a pre-acquired lock
``ADeadlines``     one timer for all waiters     ``Deadlines``: not needed
``aspawn``         ``asyncio.create_task``       ``spawn``: a daemon thread
``asleep``         ``asyncio.sleep``             ``sleep`` = ``time.sleep``
``aensure``        call, await if awaitable      ``ensure``: call
``arun_all``       run concurrently              ``run_all``: run in turn
=================  ============================  ===============================

The pool never awaits while it holds its lock, so on the event loop the lock
has nothing to exclude: ``ALock`` is an uncontended ``threading.Lock``.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = [
    "ADeadlines",
    "AEvent",
    "ALock",
    "AOp",
    "AStrFactory",
    "ATaskFn",
    "AWaiter",
    "Deadlines",
    "Event",
    "Lock",
    "Op",
    "StrFactory",
    "TaskFn",
    "Waiter",
    "aalive",
    "aensure",
    "ajoin",
    "akeep",
    "alive",
    "arun_all",
    "asleep",
    "aspawn",
    "ensure",
    "join",
    "keep",
    "run_all",
    "sleep",
    "spawn",
]

T = TypeVar("T")

#: A zero-argument callable returning a string; an async pool also accepts
#: coroutine functions (credential rotation: conninfo, password).
AStrFactory = Callable[[], str | Awaitable[str]]
StrFactory = Callable[[], str]
#: An operation returning T: awaitable in the async flavour, plain in sync.
AOp = Callable[..., Awaitable[T]]
Op = Callable[..., T]
#: The body of a background task or thread.
ATaskFn = Callable[..., Coroutine[Any, Any, None]]
TaskFn = Callable[..., None]

Lock = threading.Lock
sleep = time.sleep


#: The event loop's lock. No critical section awaits, so nothing can contend
#: for it on one loop; an uncontended ``threading.Lock`` is a C-level no-op,
#: cheaper than any Python class with ``__enter__``/``__exit__``.
ALock = threading.Lock


asleep = asyncio.sleep


class AEvent:
    """``asyncio.Event`` with a bounded ``wait_timeout``."""

    __slots__ = ("_event", "_loop")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        self._event.set()

    def set_threadsafe(self) -> None:
        """`set` from any thread or a finalizer (the garbage collector runs
        wherever it likes): through the loop that waits on the event."""
        loop = self._loop
        if loop is None:
            self._event.set()  # nobody has waited yet
            return
        try:
            loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:
            pass  # that loop is closed: nobody is left to wake

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait_timeout(self, timeout: float | None) -> bool:
        """Wait until set or ``timeout`` seconds pass; True if set."""
        self._loop = asyncio.get_running_loop()
        if timeout is None:
            await self._event.wait()
            return True
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class Event:
    """``threading.Event`` with the same ``wait_timeout`` as `AEvent`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def set_threadsafe(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait_timeout(self, timeout: float | None) -> bool:
        return self._event.wait(None if timeout is None else max(timeout, 0.0))


class AWaiter:
    """A place in the pool's queue: resolved once, by `set` or `fail`.

    ``wait`` returns True once resolved, False once its deadline passes. If
    the waiting task is cancelled, ``wait`` raises and the pool reclaims
    whatever it was given. ``since`` is when the wait began (the pool's stats
    count it). Made by `ADeadlines.waiter`, on the pool's loop.
    """

    __slots__ = ("_fut", "error", "since", "value")

    def __init__(self, since: float, fut: asyncio.Future[bool]) -> None:
        self._fut = fut
        self.since = since
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any) -> None:
        self.value = value
        if not self._fut.done():
            self._fut.set_result(True)

    def fail(self, error: BaseException) -> None:
        self.error = error
        if not self._fut.done():
            self._fut.set_result(True)

    def expire(self) -> None:
        """Resolve as timed out (called by `ADeadlines`)."""
        if not self._fut.done():
            self._fut.set_result(False)

    def wait(self, deadline: float | None, deadlines: ADeadlines) -> asyncio.Future[bool]:
        """What to await: True once resolved, False once ``deadline`` (a
        ``time.monotonic()`` instant) passes. A plain method returning the
        future saves a coroutine frame per queued acquire."""
        if deadline is not None:
            deadlines.watch(self, deadline)
        return self._fut

    async def settle(self) -> None:
        """Wait for a resolution already decided by the pool. On the loop the
        pool resolves waiters before yielding, so there is nothing to wait for."""
        return None


class ADeadlines:
    """Makes a pool's waiters, and times them out with one timer instead of
    one per waiter.

    A timer handle per wait (``call_later``, then ``cancel``) is a large part
    of the cost of a queued acquire. Waiters are kept in arrival order; since
    most share the pool's default timeout, the oldest expire first, and served
    ones are dropped from the front as new ones arrive, so the queue stays as
    short as the pool's own. The single timer is set for the earliest deadline.

    The loop is looked up once, by the first `waiter`: each
    ``asyncio.get_running_loop()`` costs a ``getpid()`` system call, which
    was a tenth of a queued acquire on a virtual machine. Deadlines are
    ``time.monotonic()`` instants (the clock of asyncio's own loop).
    """

    __slots__ = ("_at", "_entries", "_handle", "_loop")

    def __init__(self) -> None:
        self._entries: deque[tuple[float, asyncio.Future[bool], AWaiter]] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def waiter(self, since: float) -> AWaiter:
        """A new place in the queue, on the pool's loop."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return AWaiter(since, loop.create_future())

    def watch(self, waiter: AWaiter, deadline: float) -> None:
        entries = self._entries
        while entries and entries[0][1].done():
            entries.popleft()
        entries.append((deadline, waiter._fut, waiter))
        if deadline < self._at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        loop = self._loop or asyncio.get_running_loop()
        # call_later, not call_at: the loop's clock need not be monotonic()'s.
        self._handle = loop.call_later(max(deadline - time.monotonic(), 0.0), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._at = math.inf
        now = time.monotonic()
        keep: deque[tuple[float, asyncio.Future[bool], AWaiter]] = deque()
        earliest = math.inf
        for entry in self._entries:
            deadline, fut, waiter = entry
            if fut.done():
                continue
            if deadline <= now:
                waiter.expire()
            else:
                keep.append(entry)
                earliest = min(earliest, deadline)
        self._entries = keep
        if earliest < math.inf:
            self._arm(earliest)


class Waiter:
    """Thread flavour of `AWaiter`: a lock acquired at birth, released once."""

    __slots__ = ("_lock", "error", "since", "value")

    def __init__(self, since: float) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.since = since
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any) -> None:
        self.value = value
        self._lock.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._lock.release()

    def wait(self, deadline: float | None, deadlines: Deadlines) -> bool:
        # A blocked thread times out by itself: no shared timer needed.
        if deadline is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0))

    def settle(self) -> None:
        """Block until the resolution the pool already decided is delivered:
        the releasing thread sets it right after leaving the pool's lock."""
        self._lock.acquire()


class Deadlines:
    """Thread flavour of `ADeadlines`: makes waiters; no timer (see `Waiter.wait`)."""

    __slots__ = ()

    def waiter(self, since: float) -> Waiter:
        return Waiter(since)


def aspawn(fn: ATaskFn, *args: Any, name: str, group: set[Any]) -> asyncio.Task[Any]:
    """Run ``fn(*args)`` as a task, kept in ``group`` (a strong reference, so
    it is not garbage-collected mid-flight) until it ends."""
    task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(fn(*args), name=name)
    group.add(task)
    task.add_done_callback(group.discard)
    return task


def spawn(fn: TaskFn, *args: Any, name: str, group: set[Any]) -> threading.Thread:
    """Run ``fn(*args)`` in a daemon thread, kept in ``group`` until it ends."""

    def run() -> None:
        try:
            fn(*args)
        finally:
            group.discard(thread)

    thread = threading.Thread(target=run, name=name, daemon=True)
    group.add(thread)
    thread.start()
    return thread


#: Tasks that must outlive the object that spawned them (see `akeep`).
_kept: set[asyncio.Task[Any]] = set()


def akeep(task: asyncio.Task[Any]) -> None:
    """Hold ``task`` strongly until it ends, whatever happens to its owner.

    The event loop holds tasks weakly: a task waiting on an event that only
    its owner references would be destroyed mid-flight with its owner (a pool
    dropped without close), instead of being woken to finish."""
    _kept.add(task)
    task.add_done_callback(_kept.discard)


def keep(thread: threading.Thread) -> None:
    """Thread flavour of `akeep`: a running thread is held by ``threading``."""


def aalive(task: asyncio.Task[Any]) -> bool:
    """Whether a spawned task is still running."""
    return not task.done()


def alive(thread: threading.Thread) -> bool:
    """Whether a spawned thread is still running."""
    return thread.is_alive()


async def ajoin(task: asyncio.Task[Any], timeout: float) -> None:
    """Wait up to ``timeout`` for ``task``; cancel it if it is still running."""
    if task.done() or task is asyncio.current_task():
        return
    await asyncio.wait({task}, timeout=max(timeout, 0.0))
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)


def join(thread: threading.Thread, timeout: float) -> None:
    """Wait up to ``timeout`` for ``thread`` (threads cannot be cancelled)."""
    if thread is not threading.current_thread():
        thread.join(max(timeout, 0.0))


async def aensure(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; await the result if it is awaitable (sync or async callbacks)."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def ensure(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn`` (sync flavour of `aensure`)."""
    return fn(*args)


async def arun_all(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run every call concurrently; results in order, exceptions returned."""
    return list(await asyncio.gather(*(call() for call in calls), return_exceptions=True))


def run_all(*calls: Callable[[], Any]) -> list[Any]:
    """Sync flavour of `arun_all`: one after the other; exceptions returned.

    Work that is already running in the background (a pool opening) still
    overlaps: waiting for each in turn takes as long as the slowest.
    """
    results: list[Any] = []
    for call in calls:
        try:
            results.append(call())
        except Exception as exc:
            results.append(exc)
    return results
