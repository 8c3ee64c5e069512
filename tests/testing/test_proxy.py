"""ChaosProxy: every fault against a local echo server and, if available, PostgreSQL."""

from __future__ import annotations

import importlib.util
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgharbor.testing.proxy import ChaosProxy

FAST = 1.0  # "fails fast": generous bound for a local failure


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _EchoServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.accepted += 1
        self.request.settimeout(30)
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass  # resets are what these tests are about


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins handler threads: no leaks
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.lock = threading.Lock()
        self.accepted = 0


@pytest.fixture(autouse=True)
def _no_loop_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test whose proxy loop logged an error (e.g. a lost task exception)."""
    yield
    errors = [r for r in caplog.records if r.name == "asyncio"]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
def echo() -> Iterator[_EchoServer]:
    server = _EchoServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="echo", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def proxy(echo: _EchoServer) -> Iterator[ChaosProxy]:
    with ChaosProxy("127.0.0.1", echo.server_address[1]) as p:
        yield p


def _connect(proxy: ChaosProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def _round_trip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _wait_for(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


# -- echo server -------------------------------------------------------------


def test_forwards_and_counts(proxy: ChaosProxy) -> None:
    """Traffic passes untouched and the counters follow links and bytes."""
    assert proxy.mode == "pass"
    with _connect(proxy) as a, _connect(proxy) as b:
        assert _round_trip(a, b"hello") == b"hello"
        assert _round_trip(b, b"x" * 100_000) == b"x" * 100_000
        assert proxy.connections_opened == 2
        assert proxy.connections_active == 2
    _wait_for(lambda: proxy.connections_active == 0)
    assert proxy.bytes_up == proxy.bytes_down == 100_005
    assert "mode=pass" in repr(proxy)


def test_thread_named_and_joined_on_stop(echo: _EchoServer) -> None:
    """The proxy runs in a thread named after its port; stop() joins it, twice ok."""
    proxy = ChaosProxy("127.0.0.1", echo.server_address[1]).start()
    name = f"pgharbor-testing-proxy-{proxy.port}"
    assert name in _thread_names()
    client = _connect(proxy)
    assert _round_trip(client) == b"ping"
    proxy.stop()
    proxy.stop()
    assert name not in _thread_names()
    assert proxy.mode == "stopped"
    assert client.recv(10) == b""  # stop() closed the link with a FIN
    client.close()
    with pytest.raises(RuntimeError, match="not running"):
        proxy.heal()


@pytest.mark.timing
def test_latency_delays_both_directions_in_order(proxy: ChaosProxy) -> None:
    """latency(d) adds at least d each way and never reorders a stream."""
    with _connect(proxy) as sock:
        proxy.latency(0.1)
        assert proxy.mode == "latency"
        start = time.monotonic()
        assert _round_trip(sock) == b"ping"
        elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 0.2 + FAST

        proxy.latency(0.02, jitter=0.02)
        sent = b"".join(b"%04d" % i for i in range(200))
        for i in range(0, len(sent), 8):
            sock.sendall(sent[i : i + 8])
        got = b""
        while len(got) < len(sent):
            got += sock.recv(65536)
        assert got == sent


@pytest.mark.timing
def test_blackhole_stalls_then_heal_delivers(proxy: ChaosProxy) -> None:
    """A blackholed link forwards nothing; heal() delivers what was held, in order."""
    with _connect(proxy) as sock:
        assert _round_trip(sock) == b"ping"
        with proxy.blackholed():
            assert proxy.mode == "blackhole"
            sock.sendall(b"held")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(10)
        sock.settimeout(FAST)
        assert sock.recv(10) == b"held"
        assert proxy.mode == "pass"


def test_blackhole_accepts_without_dialling(proxy: ChaosProxy, echo: _EchoServer) -> None:
    """New connects succeed under a blackhole but never reach the upstream."""
    proxy.blackhole()
    with _connect(proxy) as sock:
        sock.sendall(b"ping")
        _wait_for(lambda: proxy.connections_opened == 1)
        time.sleep(0.1)
        assert echo.accepted == 0
        proxy.heal()
        sock.settimeout(FAST)
        assert sock.recv(10) == b"ping"
        assert echo.accepted == 1


@pytest.mark.timing
def test_reset_all_fails_links_fast(proxy: ChaosProxy) -> None:
    """reset_all() sends RST: an idle link's next recv fails at once."""
    with _connect(proxy) as idle, _connect(proxy) as busy:
        assert _round_trip(idle) == b"ping"
        assert _round_trip(busy) == b"ping"
        proxy.blackhole()  # busy's request stays in flight...
        busy.sendall(b"stuck")
        assert proxy.reset_all() == 2  # ...when the reset hits
        for sock in (idle, busy):
            sock.settimeout(FAST)
            start = time.monotonic()
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
            assert time.monotonic() - start < FAST
        assert proxy.connections_active == 0


@pytest.mark.timing
def test_refuse_then_heal_on_same_port(proxy: ChaosProxy) -> None:
    """refuse() makes connects fail fast, keeps links, and heal() reopens the port."""
    port = proxy.port
    with _connect(proxy) as old:
        with proxy.refused():
            assert proxy.mode == "refuse"
            start = time.monotonic()
            with pytest.raises(ConnectionRefusedError):
                _connect(proxy)
            assert time.monotonic() - start < FAST
            assert _round_trip(old) == b"ping"
        assert proxy.port == port
        with _connect(proxy) as new:
            assert _round_trip(new) == b"ping"
    assert proxy.connections_opened == 2


def test_close_after_cuts_at_byte_budget(proxy: ChaosProxy) -> None:
    """close_after(n) ends a link with EOF after n bytes, both directions summed."""
    with _connect(proxy) as old:
        assert _round_trip(old) == b"ping"
        proxy.close_after(6)  # counts from now on open links too
        with _connect(proxy) as new:
            for sock in (old, new):
                sock.sendall(b"0123456789")  # 6 bytes up, none left for the echo
                sock.settimeout(FAST)
                assert sock.recv(100) == b""
        proxy.close_after(15)
        with _connect(proxy) as sock:
            sock.sendall(b"0123456789")  # 10 up, then 5 of the echo down
            sock.settimeout(FAST)
            got = b""
            while chunk := sock.recv(100):
                got += chunk
            assert got == b"01234"
    assert proxy.mode == "close_after"
    _wait_for(lambda: proxy.connections_active == 0)


def test_modes_combine_and_heal_clears_all(proxy: ChaosProxy) -> None:
    """mode names every active fault; heal() clears them together."""
    proxy.refuse()
    proxy.blackhole()
    proxy.latency(0.01)
    proxy.close_after(10)
    assert proxy.mode == "refuse+blackhole+latency+close_after"
    proxy.heal()
    assert proxy.mode == "pass"
    with _connect(proxy) as sock:
        assert _round_trip(sock, b"x" * 50) == b"x" * 50


def test_bad_arguments_are_rejected(proxy: ChaosProxy) -> None:
    """Negative latency, jitter or byte budgets raise ValueError naming the field."""
    with pytest.raises(ValueError, match="seconds"):
        proxy.latency(-1)
    with pytest.raises(ValueError, match="jitter"):
        proxy.latency(0.1, jitter=-0.1)
    with pytest.raises(ValueError, match="nbytes"):
        proxy.close_after(-1)
    assert proxy.mode == "pass"


def test_upstream_down_resets_client() -> None:
    """With nothing upstream, an accepted client is reset instead of left hanging."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    with ChaosProxy("127.0.0.1", dead_port) as proxy, _connect(proxy) as sock:
        sock.settimeout(FAST)
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        _wait_for(lambda: proxy.connections_active == 0)


# -- PostgreSQL ---------------------------------------------------------------


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> Any:
    """The session's PostgreSQL (plugin fixture ``pg_server``), or skip."""
    if importlib.util.find_spec("pgharbor.testing.plugin") is None:
        pytest.skip("pgharbor.testing.plugin (pg_server fixture) is not available")
    try:
        return request.getfixturevalue("pg_server")
    except pytest.FixtureLookupError:
        pytest.skip("the pg_server fixture is not available")


@pytest.fixture
def pg_proxy(pg: Any) -> Iterator[ChaosProxy]:
    with ChaosProxy(pg.host, pg.port) as p:
        yield p


@pytest.fixture
def pg_connect(
    request: pytest.FixtureRequest, pg: Any, pg_proxy: ChaosProxy
) -> Callable[..., psycopg.Connection[Any]]:
    """Connect through ``pg_proxy``: plain TCP (sslmode=disable), autocommit."""
    try:
        app_name = request.getfixturevalue("app_name")  # the leak guard counts it
    except pytest.FixtureLookupError:
        app_name = "pgharbor-test-proxy"

    def connect(**params: Any) -> psycopg.Connection[Any]:
        info = conninfo_to_dict(pg.conninfo())
        info.pop("hostaddr", None)
        info.update(host=pg_proxy.host, port=pg_proxy.port, sslmode="disable")
        info.update(application_name=app_name, connect_timeout=2)
        info.update(params)
        # Autocommit, so a query is one round trip (no separate BEGIN).
        return psycopg.connect(make_conninfo("", **info), autocommit=True)

    return connect


def test_pg_query_through_proxy(pg_proxy: ChaosProxy, pg_connect: Any) -> None:
    """A PostgreSQL session works through the proxy."""
    with pg_connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pg_proxy.connections_opened == 1
    assert pg_proxy.bytes_up > 0 and pg_proxy.bytes_down > 0


@pytest.mark.timing
def test_pg_latency_slows_queries(pg_proxy: ChaosProxy, pg_connect: Any) -> None:
    """latency(0.2) makes SELECT 1 take at least 0.2 s each way."""
    with pg_connect() as conn:
        pg_proxy.latency(0.2)
        start = time.monotonic()
        conn.execute("SELECT 1")
        assert 0.4 <= time.monotonic() - start < 0.4 + FAST


@pytest.mark.timing
def test_pg_blackhole_hangs_connect_until_timeout(pg_proxy: ChaosProxy, pg_connect: Any) -> None:
    """Under a blackhole a new connect fails at connect_timeout; heal() recovers."""
    with pg_connect() as conn:
        with pg_proxy.blackholed():
            start = time.monotonic()
            with pytest.raises(psycopg.OperationalError):
                pg_connect(connect_timeout=2)
            assert 1.9 <= time.monotonic() - start < 2 + FAST
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.timing
def test_pg_reset_fails_next_query_fast(pg_proxy: ChaosProxy, pg_connect: Any) -> None:
    """reset_all() makes the next query on an open connection fail fast."""
    with pg_connect() as conn:
        conn.execute("SELECT 1")
        assert pg_proxy.reset_all() == 1
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        assert time.monotonic() - start < FAST


@pytest.mark.timing
def test_pg_refuse_fails_connect_fast(pg_proxy: ChaosProxy, pg_connect: Any) -> None:
    """refuse() makes connects fail fast; heal() lets them through again."""
    with pg_proxy.refused():
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            pg_connect()
        assert time.monotonic() - start < FAST
    with pg_connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("nbytes", [0, 8, 40, 200])
def test_pg_close_after_fails_connect_cleanly(
    pg_proxy: ChaosProxy, pg_connect: Any, nbytes: int
) -> None:
    """A cut anywhere in startup raises OperationalError, never hangs."""
    pg_proxy.close_after(nbytes)
    with pytest.raises(psycopg.OperationalError):
        pg_connect()
