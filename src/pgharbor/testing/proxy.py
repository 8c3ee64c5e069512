"""In-process TCP fault proxy for tests: refuse, reset, blackhole, latency, cut.

`ChaosProxy` sits between a client and a server (usually PostgreSQL) and
forwards bytes both ways from its own thread and event loop, so a test that
blocks its thread or its own loop can never stall the network it is testing.
Faults are switched at runtime from any thread, and every switch returns only
once it has taken effect. Modes combine; `heal()` clears all of them.

- ``pass``: plain forwarding, the state after `start()` and `heal()`.
- ``refuse``: the listening socket is closed, so new connects fail at once
  with ECONNREFUSED. Open links are untouched. `heal()` listens again on the
  same port.
- ``blackhole``: every socket stays open and nothing moves either way. New
  connections are accepted, but the upstream is not even dialled, so a client
  connect hangs until its own connect timeout. Bytes sent meanwhile wait in the
  proxy and in the kernel buffers, and `heal()` delivers them in order (as
  asyncpg's ``TCPFuzzingProxy`` does): it models a partition that heals before
  TCP gives up, not lost packets.
- ``latency``: every chunk is held for ``seconds ± jitter`` from its arrival,
  in both directions, never overtaking an earlier chunk of the same direction.
- ``close_after``: a link is closed after forwarding a byte budget counted over
  BOTH directions together, so sweeping ``nbytes`` over one conversation hits
  every protocol point (startup, auth, mid-row, ...). The cut is a FIN on both
  sides, so the peer reliably sees exactly the budgeted bytes and then EOF; use
  `reset_all()` for RSTs.

`reset_all()` is an action rather than a mode: it sends RST on both sides of
every open link (``SO_LINGER`` (1, 0) then close).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["ChaosProxy"]

_T = TypeVar("_T")

_CHUNK = 65536
_QUEUE_DEPTH = 256  # chunks held per direction before reading pushes back
_CONTROL_TIMEOUT = 5.0  # bound on every cross-thread call and on the join
_LINGER_RST = struct.pack("ii", 1, 0)  # linger on, 0 s: close() sends RST

_Chunks = asyncio.Queue[tuple[float, bytes]]


class _Link:
    """One accepted client socket, its upstream twin and the tasks pumping them."""

    __slots__ = ("budget", "client", "closed", "cutting", "eofs", "tasks", "upstream")

    def __init__(self, client: socket.socket, budget: int | None) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.budget = budget  # bytes left before close_after cuts, both ways
        self.cutting = False  # one direction is sending the last budgeted bytes
        self.eofs = 0  # directions that have passed on a FIN
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()


class ChaosProxy:
    """A TCP proxy, running in its own thread, whose faults tests switch on and off.

    Use it as a context manager or call `start()` and `stop()`. Every control
    method blocks the calling thread for as long as the proxy's loop needs to
    apply the change (milliseconds) and raises `RuntimeError` when the proxy is
    not running. Counters are plain ints, safe to read from any thread.

    Attributes:
        host: Address the proxy listens on.
        port: Port the proxy listens on; the OS picks one when 0 is given, and
            it is kept across `refuse()` and `heal()`.
        upstream_host: Server the proxy forwards to.
        upstream_port: Port of that server.
        connections_opened: Client connections accepted in total.
        connections_active: Links currently open.
        bytes_up: Bytes forwarded from clients to the upstream.
        bytes_down: Bytes forwarded from the upstream to clients.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = port
        self.connections_opened = 0
        self.connections_active = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._refusing = False
        self._blackholed = False
        self._delay = 0.0
        self._jitter = 0.0
        self._budget: int | None = None
        self._random = random.Random()
        self._flowing = asyncio.Event()  # cleared while blackholed; binds lazily
        self._flowing.set()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._lifecycle = threading.Lock()  # start() and stop() never interleave

    def __repr__(self) -> str:
        return (
            f"<ChaosProxy {self.host}:{self.port} -> "
            f"{self.upstream_host}:{self.upstream_port} mode={self.mode} "
            f"active={self.connections_active} opened={self.connections_opened}>"
        )

    @property
    def mode(self) -> str:
        """Active faults joined by ``+`` (e.g. ``"refuse+latency"``), else ``"pass"``.

        ``"stopped"`` before `start()` and after `stop()`.
        """
        if self._thread is None or self._stopped:
            return "stopped"
        faults = [
            ("refuse", self._refusing),
            ("blackhole", self._blackholed),
            ("latency", self._delay > 0 or self._jitter > 0),
            ("close_after", self._budget is not None),
        ]
        return "+".join(name for name, on in faults if on) or "pass"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> ChaosProxy:
        """Bind the listening socket and start the proxy thread.

        Returns:
            The proxy itself, listening on `port`.

        Raises:
            OSError: The address cannot be bound.
            RuntimeError: The proxy was already started.
        """
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError(f"{self!r} was already started")
            # Binding here, in the caller's thread, makes bind errors surface
            # in start() and gives the thread a name with the real port.
            listener = self._bind()
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._listener = listener
            self._thread = threading.Thread(
                target=self._run,
                args=(loop,),
                name=f"pgharbor-testing-proxy-{self.port}",
                daemon=True,  # a test that forgets stop() must not hang the run
            )
            self._thread.start()
            self._call(lambda: self._listen(listener))
            return self

    def stop(self) -> None:
        """Close the listener and every link, then join the thread (≤ 5 s).

        Idempotent. Links are closed with FIN, not RST.

        Raises:
            RuntimeError: The proxy thread did not finish in time.
        """
        with self._lifecycle:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None or self._stopped:
                return
            self._stopped = True
            try:
                self._submit(self._shutdown)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_CONTROL_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop in time")

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------

    def heal(self) -> None:
        """Back to plain forwarding: clear every fault and listen again if refused.

        Data held by a blackhole is delivered in order; chunks already delayed
        by `latency()` keep their delay.

        Raises:
            OSError: The port could not be bound again after `refuse()` (taken
                by someone else meanwhile); the proxy stays refusing.
        """
        self._call(self._heal)

    def refuse(self) -> None:
        """Close the listening socket; new connects get ECONNREFUSED at once."""
        self._call(self._refuse)

    def reset_all(self) -> int:
        """Send RST to both sides of every open link and close it.

        Returns:
            How many links were reset.
        """
        return self._call(self._reset_all)

    def blackhole(self) -> None:
        """Keep every socket open and forward nothing, on old and new links."""
        self._call(self._blackhole)

    def latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every chunk, both directions, by ``seconds`` ± uniform ``jitter``.

        Raises:
            ValueError: ``seconds`` or ``jitter`` is negative.
        """
        if seconds < 0 or jitter < 0:
            raise ValueError(
                f"latency needs seconds >= 0 and jitter >= 0, got "
                f"seconds={seconds!r} jitter={jitter!r}"
            )

        def apply() -> None:
            self._delay, self._jitter = seconds, jitter

        self._call(apply)

    def close_after(self, nbytes: int) -> None:
        """Cut each link with FIN after ``nbytes`` more bytes, both directions summed.

        Applies to new links and to open ones, counting from now.

        Raises:
            ValueError: ``nbytes`` is negative.
        """
        if nbytes < 0:
            raise ValueError(f"close_after needs nbytes >= 0, got {nbytes!r}")

        def apply() -> None:
            self._budget = nbytes
            for link in self._links:
                link.budget = nbytes

        self._call(apply)

    @contextlib.contextmanager
    def blackholed(self) -> Iterator[ChaosProxy]:
        """Blackhole for the duration of the block, then `heal()` (clearing all)."""
        self.blackhole()
        try:
            yield self
        finally:
            self.heal()

    @contextlib.contextmanager
    def refused(self) -> Iterator[ChaosProxy]:
        """Refuse for the duration of the block, then `heal()` (clearing all)."""
        self.refuse()
        try:
            yield self
        finally:
            self.heal()

    # -- cross-thread plumbing -----------------------------------------------

    def _call(self, action: Callable[[], _T]) -> _T:
        """Run ``action`` on the proxy loop and wait, so changes are in effect."""
        if self._thread is None or self._stopped:
            raise RuntimeError(f"{self!r} is not running")

        async def run() -> _T:
            return action()

        return self._submit(run)

    def _submit(self, action: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        assert self._loop is not None and self._thread is not None
        if threading.get_ident() == self._thread.ident:
            # Waiting on our own loop from inside it would deadlock.
            raise RuntimeError("ChaosProxy cannot be controlled from its own thread")
        future = asyncio.run_coroutine_threadsafe(action(), self._loop)
        try:
            return future.result(_CONTROL_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Closing the loop here, in its own thread, releases its selector
            # and self-pipe; an unclosed loop is a ResourceWarning later.
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # -- on the proxy loop ---------------------------------------------------

    def _bind(self) -> socket.socket:
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            # Links left in TIME_WAIT on this port must not stop heal() from
            # listening on it again.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return sock

    def _listen(self, listener: socket.socket) -> None:
        assert self._loop is not None
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._accept)

    async def _shutdown(self) -> None:
        self._close_listener()
        for link in list(self._links):
            self._drop(link, rst=False)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Wait for every task so none is destroyed pending when the loop closes.
        await asyncio.gather(*tasks, return_exceptions=True)

    def _heal(self) -> None:
        self._blackholed = False
        self._delay = self._jitter = 0.0
        self._budget = None
        for link in self._links:
            link.budget = None
        self._flowing.set()
        if self._refusing:
            self._listen(self._bind())  # same port: self.port is set by now
            self._refusing = False

    def _refuse(self) -> None:
        self._refusing = True
        self._close_listener()

    def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._drop(link, rst=True)
        return len(links)

    def _blackhole(self) -> None:
        self._blackholed = True
        self._flowing.clear()

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._forget(self._listener)
            # Adopt connections whose handshake already completed: to their
            # clients they are open, and closing the listener would RST them.
            self._accept()
            self._listener.close()
            self._listener = None

    def _forget(self, sock: socket.socket) -> None:
        # Unregister before close: the cancelled sock_* futures then see their
        # handles cancelled and will not touch a recycled fd number later.
        fd = sock.fileno()
        if fd >= 0 and self._loop is not None:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)

    def _spawn(self, link: _Link, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        for group in (link.tasks, self._tasks):
            group.add(task)
            task.add_done_callback(group.discard)

    def _drop(self, link: _Link, *, rst: bool) -> None:
        """Close both sockets of ``link`` now (RST or FIN) and cancel its tasks."""
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        self.connections_active -= 1
        me = asyncio.current_task()
        for task in list(link.tasks):
            if task is not me:
                task.cancel()
        for sock in (link.client, link.upstream):
            if sock is None:
                continue
            self._forget(sock)
            if rst:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                except OSError:
                    pass  # already dead; close() is all that is left to do
            sock.close()

    def _accept(self) -> None:
        # A reader callback rather than a task around sock_accept(): a task
        # cancelled by refuse() could drop a socket it had already accepted.
        while self._listener is not None:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # backlog drained
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError:
                return  # e.g. out of fds: the reader fires again, retry then
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections_opened += 1
            self.connections_active += 1
            link = _Link(client, self._budget)
            self._links.add(link)
            self._spawn(link, self._connect(link))

    async def _connect(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            # A blackhole accepts but never dials, so connects hang client-side.
            await self._flowing.wait()
            family, kind, proto, _, address = (
                await loop.getaddrinfo(
                    self.upstream_host, self.upstream_port, type=socket.SOCK_STREAM
                )
            )[0]
            link.upstream = upstream = socket.socket(family, kind, proto)
            upstream.setblocking(False)
            await loop.sock_connect(upstream, address)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._drop(link, rst=True)  # upstream down: the client sees a reset
            return
        for src, dst, up in (
            (link.client, upstream, True),
            (upstream, link.client, False),
        ):
            chunks: _Chunks = asyncio.Queue(_QUEUE_DEPTH)
            self._spawn(link, self._read(link, src, chunks))
            self._spawn(link, self._write(link, dst, chunks, up))

    async def _read(self, link: _Link, src: socket.socket, chunks: _Chunks) -> None:
        loop = asyncio.get_running_loop()
        due = 0.0
        try:
            while True:
                # Stop reading while blackholed so TCP flow control pushes back.
                await self._flowing.wait()
                data = await loop.sock_recv(src, _CHUNK)
                if not data:
                    break
                delay = self._delay + self._random.uniform(-self._jitter, self._jitter)
                # Jitter may not reorder: a chunk is never due before its elder.
                due = max(due, loop.time() + max(delay, 0.0))
                await chunks.put((due, data))
        except OSError:
            self._drop(link, rst=True)  # pass a reset on as a reset
            return
        await chunks.put((due, b""))  # EOF marker, due after the last chunk

    async def _write(self, link: _Link, dst: socket.socket, chunks: _Chunks, up: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await chunks.get()
                pause = due - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                await self._flowing.wait()
                if not data:
                    dst.shutdown(socket.SHUT_WR)  # pass the FIN on
                    link.eofs += 1
                    if link.eofs == 2:
                        self._drop(link, rst=False)
                    return
                cut = False
                if link.budget is not None:
                    if len(data) >= link.budget:
                        if link.cutting:
                            return  # the other direction sends the last bytes and cuts
                        link.cutting = cut = True
                    # Spend the budget before awaiting, so the two directions
                    # never both spend the same bytes.
                    data = data[: link.budget]
                    link.budget -= len(data)
                if data:
                    await loop.sock_sendall(dst, data)
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                if cut:
                    self._drop(link, rst=False)
                    return
        except OSError:
            self._drop(link, rst=True)
