"""A private PgBouncer in front of a test server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psycopg

from pgharbor.testing._binaries import as_server_user, chown_to_server_user
from pgharbor.testing._cleanup import Resources, free_port, track
from pgharbor.testing.server import PostgresServer, target_conninfo, target_url

__all__ = ["PgBouncer", "find_pgbouncer", "pgbouncer_available"]

PoolMode = Literal["session", "transaction", "statement"]


def find_pgbouncer() -> str | None:
    """Return the path of the ``pgbouncer`` binary (PATH, then /usr/sbin)."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    candidate = "/usr/sbin/pgbouncer"
    return candidate if os.access(candidate, os.X_OK) else None


def pgbouncer_available() -> bool:
    """Tell whether :class:`PgBouncer` can run here (for ``skipif``)."""
    return find_pgbouncer() is not None


def _ini_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


class PgBouncer:
    """PgBouncer pooling for one :class:`PostgresServer`, on a free port.

    Every database name is forwarded to the server (``* = host=... port=...``).
    Clients are trusted, but PgBouncer still wants their names in its auth
    file, so pass every role the test logs in as in *users*.

    Args:
        server: The running server to pool for.
        pool_mode: ``session``, ``transaction`` or ``statement``.
        users: Role names clients may connect as (``postgres`` is always there).
        **settings: Extra ``[pgbouncer]`` settings (``default_pool_size=2``...).

    Raises:
        RuntimeError: The binary is missing or PgBouncer failed to start.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        server: PostgresServer,
        pool_mode: PoolMode = "session",
        *,
        users: Iterable[str] = (),
        **settings: str | int | float | bool,
    ) -> None:
        binary = find_pgbouncer()
        if binary is None:
            raise RuntimeError("pgbouncer not found on PATH or in /usr/sbin")
        self.binary = binary
        self.server = server
        self.pool_mode = pool_mode
        self.port = 0
        self._users = ["postgres", *users]
        self._settings = settings
        self._root: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._res = Resources("pgbouncer")
        self._finalizer = track(self, self._res)

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<PgBouncer {self.pool_mode} {self.host}:{self.port} {state}>"

    @property
    def is_running(self) -> bool:
        """Whether the PgBouncer process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def version(self) -> tuple[int, ...]:
        """The binary's version, e.g. ``(1, 18, 0)``."""
        out = subprocess.run([self.binary, "-V"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"PgBouncer (\d+(?:\.\d+)*)", out)
        if m is None:
            raise RuntimeError(f"unexpected 'pgbouncer -V' output: {out!r}")
        return tuple(int(x) for x in m.group(1).split("."))

    @property
    def log_file(self) -> str:
        """PgBouncer's log file."""
        if self._root is None:
            raise RuntimeError("PgBouncer has not been started")
        return os.path.join(self._root, "pgbouncer.log")

    def conninfo(
        self,
        dbname: str | None = None,
        user: str | None = None,
        password: str | None = None,
        **params: Any,
    ) -> str:
        """A libpq conninfo string that goes through PgBouncer."""
        return target_conninfo(self.host, self.port, dbname, user, password, **params)

    def url(
        self,
        dbname: str | None = None,
        user: str | None = None,
        password: str | None = None,
        **params: Any,
    ) -> str:
        """A ``postgresql://`` URL that goes through PgBouncer."""
        return target_url(self.host, self.port, dbname, user, password, **params)

    def admin(self, command: str) -> list[tuple[Any, ...]]:
        """Run a console command (``SHOW POOLS``, ``PAUSE``...) and return rows.

        The admin console speaks only the simple query protocol, hence
        ``prepare=False`` and no parameters.
        """
        info = self.conninfo("pgbouncer", connect_timeout=5)
        with psycopg.connect(info, autocommit=True) as conn:
            cur = conn.execute(command.encode(), prepare=False)
            return cur.fetchall() if cur.description else []

    def start(self, timeout: float = 10.0) -> None:
        """Write the config and start PgBouncer; block until it accepts.

        Raises:
            RuntimeError: It exited or did not listen in time (log included).
        """
        if self.is_running:
            return
        if not self._finalizer.alive:
            raise RuntimeError(f"{self!r} was cleaned up and cannot start again")
        if self._root is None:
            base = os.environ.get("PGHARBOR_TEST_TMPDIR", "/tmp")
            self._root = tempfile.mkdtemp(prefix="pgharbor-bouncer-", dir=base)
            self._res.dirs.append(self._root)
            chown_to_server_user(self._root)
        for _attempt in range(5):
            if not self.port:
                self.port = free_port()
            ini = self._write_config()
            log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
            offset = log.tell()
            try:
                proc = subprocess.Popen(
                    [self.binary, ini],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._root,
                    start_new_session=True,
                    **as_server_user(),
                )
            finally:
                log.close()
            self._proc = proc
            # SIGTERM: immediate shutdown, closing server connections too, so
            # no pooled session outlives the fixture.
            self._res.add_process(proc, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                if _listening(self.host, self.port):
                    return
                time.sleep(0.01)
            self.stop()
            text = Path(self.log_file).read_bytes()[offset:].decode(errors="replace")
            if "Address already in use" in text:
                self.port = 0
                continue
            raise RuntimeError(f"PgBouncer failed to start:\n{text[-4000:]}")
        raise RuntimeError("PgBouncer could not bind a free port in 5 attempts")

    def stop(self, timeout: float = 10.0) -> None:
        """Shut PgBouncer down (SIGTERM, closing all its connections) and wait."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._res.reap()

    def cleanup(self) -> None:
        """Stop PgBouncer and delete its directory; safe to call twice."""
        self._proc = None
        self._finalizer()

    def _write_config(self) -> str:
        assert self._root is not None
        auth_file = os.path.join(self._root, "users.txt")
        Path(auth_file).write_text("".join(f'"{u}" ""\n' for u in self._users))
        settings: dict[str, str | int | float | bool] = {
            "listen_addr": self.host,
            "listen_port": self.port,
            "unix_socket_dir": self._root,
            "auth_type": "trust",
            "auth_file": auth_file,
            "admin_users": "postgres",
            "pool_mode": self.pool_mode,
            "pidfile": os.path.join(self._root, "pgbouncer.pid"),
            "logfile": "",  # stderr, which goes to our log file
            # Fast, predictable teardown in tests rather than gentle waits.
            "server_login_retry": 1,
            "ignore_startup_parameters": "extra_float_digits",
            **self._settings,
        }
        lines = [
            "[databases]",
            f"* = host={self.server.host} port={self.server.port}",
            "",
            "[pgbouncer]",
            *(f"{k} = {_ini_value(v)}" for k, v in settings.items()),
        ]
        ini = os.path.join(self._root, "pgbouncer.ini")
        Path(ini).write_text("\n".join(lines) + "\n")
        return ini


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
