"""Throwaway PostgreSQL servers for tests: start, break, replicate, clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.abc import Params, QueryNoTemplate
from psycopg.conninfo import make_conninfo

from pgharbor.testing._binaries import (
    HELPER_APP_NAME,
    _major_of,
    as_server_user,
    chown_to_server_user,
    conf_value,
    pid_file_ready,
    resolve_bindir,
    run_tool,
    server_env,
    template_for,
)
from pgharbor.testing._cleanup import (
    Resources,
    descendants,
    free_port,
    is_alive,
    signal_tree,
    track,
)
from pgharbor.testing._replication import Replication

__all__ = ["PostgresServer", "ServerVersion", "TempDatabase"]

StopMode = Literal["smart", "fast", "immediate"]

# What pg_ctl sends for each shutdown mode; we signal the postmaster directly
# because it is our child, which also lets us reap it.
_STOP_SIGNALS: dict[str, int] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}

# Settings for speed and for replication tests. Durability is irrelevant for a
# throwaway cluster; full_page_writes stays off too (pg_rewind needs it on the
# source, so demote_to_standby_of() turns it on just before rewinding).
_BASE_SETTINGS: dict[str, str | int | bool] = {
    "fsync": False,
    "synchronous_commit": False,
    "full_page_writes": False,
    "max_connections": 100,
    "shared_buffers": "32MB",
    "wal_level": "replica",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_keep_size": "128MB",
    "hot_standby": True,
    # A standby retries a failed stream after this; the default 5 s would
    # dominate every failover test.
    "wal_retrieve_retry_interval": "100ms",
    "wal_log_hints": True,
    "password_encryption": "scram-sha-256",
}

_BASE_HBA = [
    "local all all trust",
    "host all all 127.0.0.1/32 trust",
    "local replication all trust",
    "host replication all 127.0.0.1/32 trust",
]


@dataclass(frozen=True)
class ServerVersion:
    """The version a running server reports.

    Attributes:
        major: 15, 16, 18, ...
        minor: The patch release within the major version.
        num: ``server_version_num``, e.g. 150018.
    """

    major: int
    minor: int
    num: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass(frozen=True)
class TempDatabase:
    """A database created for one test (see the ``pg_database`` fixture).

    Attributes:
        server: The server it lives on.
        name: The database name.
    """

    server: PostgresServer
    name: str

    def conninfo(self, **params: Any) -> str:
        """A conninfo string for this database; *params* as for the server's."""
        return self.server.conninfo(dbname=self.name, **params)

    def url(self, **params: Any) -> str:
        """A ``postgresql://`` URL for this database."""
        return self.server.url(dbname=self.name, **params)


def _guc_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def target_conninfo(
    host: str,
    port: int,
    /,
    dbname: str | None = None,
    user: str | None = None,
    password: str | None = None,
    **params: Any,
) -> str:
    """A keyword conninfo for ``host:port`` (a server, a PgBouncer).

    Values are quoted by psycopg, so hostile strings cannot inject extra
    parameters; ``host``/``port`` in *params* override (e.g. a ChaosProxy).
    """
    values: dict[str, Any] = {"host": host, "port": port, **params}
    return make_conninfo(
        "", dbname=dbname or "postgres", user=user or "postgres", password=password, **values
    )


def target_url(
    host: str,
    port: int,
    /,
    dbname: str | None = None,
    user: str | None = None,
    password: str | None = None,
    **params: Any,
) -> str:
    """A ``postgresql://`` URL for ``host:port``, every part quoted."""
    auth = quote(user or "postgres", safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    query = f"?{urlencode(params)}" if params else ""
    db = quote(dbname or "postgres", safe="")
    return f"postgresql://{auth}@{host}:{port}/{db}{query}"


class PostgresServer(Replication):
    """A private PostgreSQL cluster run from a temporary directory.

    Nothing happens until :meth:`start` (or ``with``): then the cluster is
    created with ``initdb``, started on a free port of 127.0.0.1 and a private
    Unix socket directory, and it is removed again by :meth:`cleanup` or, at
    the latest, when the interpreter exits. When running as root, every server
    process runs as the ``postgres`` user.

    Args:
        bindir: Directory with ``postgres``/``initdb``; discovered if omitted.
        version: Major version to pick among the discovered installations.
        settings: Extra postgresql.conf settings (they win over the defaults).
        hba: Extra pg_hba.conf lines, placed before the default trust lines.
        keep: Keep the directory after cleanup, for debugging.

    Raises:
        PostgresNotFound: No installation matches *bindir*/*version*.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        bindir: str | None = None,
        version: int | None = None,
        settings: Mapping[str, str | int | float | bool] | None = None,
        hba: Iterable[str] | None = None,
        keep: bool = False,
    ) -> None:
        self.bindir = resolve_bindir(bindir, version)
        self.port = 0
        self._settings = dict(settings or {})
        self._hba = list(hba or [])
        self._root: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._version: ServerVersion | None = None
        self._log_offset = 0
        # Followers are the standbys streaming from us (for wait_for_replay);
        # owned servers are the ones we created and must clean up.
        self._followers = []
        self._owned = []
        self._upstream = None
        self._res = Resources("postgres")
        self._res.keep = keep
        self._finalizer = track(self, self._res)

    # -- paths and addresses ------------------------------------------------

    @property
    def root_dir(self) -> str:
        """The private directory holding data, socket and log."""
        if self._root is None:
            raise RuntimeError("the server has not been created yet; call start()")
        return self._root

    @property
    def data_dir(self) -> str:
        """The cluster's data directory (PGDATA)."""
        return os.path.join(self.root_dir, "data")

    @property
    def socket_dir(self) -> str:
        """The directory holding the Unix socket (kept short for sun_path)."""
        return self.root_dir

    @property
    def log_file(self) -> str:
        """The server log; every start appends to it."""
        return os.path.join(self.root_dir, "postgres.log")

    @property
    def is_running(self) -> bool:
        """Whether the postmaster process is alive (paused counts as alive)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The postmaster's pid; raises RuntimeError when not running."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        return self._proc.pid

    def conninfo(
        self,
        dbname: str | None = None,
        user: str | None = None,
        password: str | None = None,
        **params: Any,
    ) -> str:
        """Return a libpq keyword conninfo string for this server (TCP).

        Values are quoted by psycopg, so hostile strings cannot inject extra
        parameters. *params* are any other libpq parameters.
        """
        return target_conninfo(self.host, self.port, dbname, user, password, **params)

    def url(
        self,
        dbname: str | None = None,
        user: str | None = None,
        password: str | None = None,
        **params: Any,
    ) -> str:
        """Return a ``postgresql://`` URL for this server, with quoted parts."""
        return target_url(self.host, self.port, dbname, user, password, **params)

    @property
    def version(self) -> ServerVersion:
        """The version reported by the running server (cached)."""
        if self._version is None:
            rows = self.execute("SELECT current_setting('server_version_num')::int")
            num = int(rows[0][0])
            self._version = ServerVersion(num // 10000, num % 10000, num)
        return self._version

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<PostgresServer {_major_of(self.bindir)} {self.host}:{self.port} {state}>"

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if needed and start it; block until it accepts.

        Raises:
            RuntimeError: initdb or the server failed; the log tail is included.
        """
        if self.is_running:
            return
        if not self._finalizer.alive:
            raise RuntimeError(f"{self!r} was cleaned up and cannot start again")
        if self._root is None:
            self._make_root()
            self._initdb()
        self._launch(timeout)

    def stop(self, mode: StopMode = "fast", timeout: float = 60.0) -> None:
        """Shut the server down (``smart``, ``fast`` or ``immediate``) and wait.

        ``smart`` waits for clients to disconnect; ``fast`` ends their
        sessions; ``immediate`` skips the shutdown checkpoint, like a crash.
        """
        if self._proc is None:
            return
        if self._proc.poll() is None:
            # A paused server would never act on the signal.
            signal_tree(self._proc.pid, signal.SIGCONT, parent_first=False)
            self._proc.send_signal(_STOP_SIGNALS[mode])
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise RuntimeError(
                    f"{self!r} did not stop ({mode}) within {timeout}s\n" + self.log_tail()
                ) from None
        self._proc = None
        self._res.reap()

    def restart(self, mode: StopMode = "fast", timeout: float = 60.0) -> None:
        """Stop and start again on the same port; existing sessions are lost."""
        self.stop(mode, timeout)
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster and its children: a crash without warning.

        :meth:`start` works afterwards (it runs crash recovery).
        """
        if self._proc is None:
            return
        tree = [self._proc.pid, *descendants(self._proc.pid)]
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc.wait()
        deadline = time.monotonic() + 10
        while any(is_alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._proc = None
        self._res.reap()
        # The pid file now names a dead process; removing it spares the next
        # start a "lock file already exists" check that pid reuse could fool.
        Path(self.data_dir, "postmaster.pid").unlink(missing_ok=True)

    def pause(self) -> None:
        """SIGSTOP the postmaster and all its processes: alive TCP, dead server."""
        signal_tree(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT everything :meth:`pause` stopped."""
        signal_tree(self.pid, signal.SIGCONT, parent_first=False)

    def cleanup(self) -> None:
        """Stop immediately (SIGKILL as fallback) and delete the directory.

        Servers created by :meth:`add_replica` go too. Safe to call twice;
        the server cannot be started again afterwards.
        """
        for replica in self._owned:
            replica.cleanup()
        self._owned.clear()
        self._proc = None
        self._finalizer()

    def log_tail(self, lines: int = 40) -> str:
        """Return the last *lines* of the server log (empty if there is none)."""
        try:
            text = Path(self.log_file).read_text(errors="replace")
        except (OSError, RuntimeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- creating and launching --------------------------------------------

    def _make_root(self) -> None:
        base = os.environ.get("PGHARBOR_TEST_TMPDIR", "/tmp")
        root = tempfile.mkdtemp(prefix="pgharbor-", dir=base)
        self._res.dirs.append(root)
        chown_to_server_user(root)
        self._root = root

    def _run(self, *args: str, timeout: float = 120.0) -> str:
        """Run a server-side tool from bindir as the server user."""
        return run_tool(self.bindir, self.root_dir, *args, timeout=timeout)

    def _initdb(self) -> None:
        # initdb costs a second or two; copying a pristine cluster made once
        # per installation costs a few tens of milliseconds.
        template = template_for(self.bindir)
        self._run("cp", "-a", template, self.data_dir)
        self._append_settings({**_BASE_SETTINGS, **self._settings})
        hba = Path(self.data_dir, "pg_hba.conf")
        # First match wins in pg_hba.conf, so the caller's lines go first.
        hba.write_text("\n".join([*self._hba, *_BASE_HBA]) + "\n")

    def _append_settings(self, settings: Mapping[str, str | int | float | bool]) -> None:
        lines = [f"{k} = {conf_value(v)}" for k, v in settings.items()]
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as f:
            f.write("\n# pgharbor.testing\n" + "\n".join(lines) + "\n")

    def _launch(self, timeout: float) -> None:
        pid_file = Path(self.data_dir, "postmaster.pid")
        for _attempt in range(5):
            if not self.port:
                self.port = free_port()
            log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
            self._log_offset = log.tell()
            try:
                # Port and socket go on the command line: they beat every
                # config file, including ones copied by pg_basebackup/pg_rewind.
                proc = subprocess.Popen(
                    [
                        os.path.join(self.bindir, "postgres"),
                        "-D",
                        self.data_dir,
                        "-p",
                        str(self.port),
                        "-k",
                        self.socket_dir,
                        "-c",
                        f"listen_addresses={self.host}",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.root_dir,
                    env=server_env(self.bindir),
                    # Own session: a Ctrl-C aimed at pytest must not reach the
                    # server before our cleanup does.
                    start_new_session=True,
                    **as_server_user(),
                )
            finally:
                log.close()
            self._proc = proc
            self._res.add_process(proc, signal.SIGQUIT)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                if pid_file_ready(pid_file, proc.pid):
                    return
                time.sleep(0.01)
            if proc.poll() is None:
                self.stop("immediate")
                raise RuntimeError(
                    f"PostgreSQL did not become ready within {timeout}s\n" + self._new_log()
                )
            self._proc = None
            self._res.reap()
            log_text = self._new_log()
            if "could not bind" in log_text or "already in use" in log_text:
                self.port = 0  # somebody took it: draw another one
                continue
            raise RuntimeError(f"PostgreSQL failed to start:\n{log_text}")
        raise RuntimeError("PostgreSQL could not bind a free port in 5 attempts")

    def _new_log(self) -> str:
        """The log written since the last launch (the part that explains it)."""
        with open(self.log_file, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")[-8000:]

    # -- SQL helpers --------------------------------------------------------

    def execute(
        self,
        query: QueryNoTemplate,
        params: Params | None = None,
        dbname: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh autocommit connection as ``postgres``.

        Returns:
            The rows, or an empty list for statements that return none.

        Raises:
            psycopg.Error: Whatever the server or libpq says (5 s connect timeout).
        """
        info = self.conninfo(dbname, connect_timeout=5, application_name=HELPER_APP_NAME)
        with psycopg.connect(info, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, owner: str | None = None) -> None:
        """``CREATE DATABASE`` *name*, optionally owned by *owner*."""
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            stmt = sql.SQL("{} OWNER {}").format(stmt, sql.Identifier(owner))
        self.execute(stmt)

    def drop_database(self, name: str, force: bool = True) -> None:
        """Drop *name* if it exists; *force* ends its sessions first (PG 13+)."""
        stmt = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
        if force and self.version.major >= 13:
            stmt = sql.SQL("{} WITH (FORCE)").format(stmt)
        self.execute(stmt)

    def create_role(
        self,
        name: str,
        password: str | None = None,
        login: bool = True,
        superuser: bool = False,
        replication: bool = False,
    ) -> None:
        """``CREATE ROLE``; a password is stored as SCRAM-SHA-256."""
        opts: list[sql.Composable] = [
            sql.SQL("LOGIN" if login else "NOLOGIN"),
            sql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
            sql.SQL("REPLICATION" if replication else "NOREPLICATION"),
        ]
        if password is not None:
            opts.append(sql.SQL("PASSWORD {}").format(sql.Literal(password)))
        self.execute(
            sql.SQL("CREATE ROLE {} WITH {}").format(sql.Identifier(name), sql.SQL(" ").join(opts))
        )

    def backends(self, application_name: str | None = None) -> list[int]:
        """Pids of client sessions, optionally only those with *application_name*.

        The helper connection that asks is never included.
        """
        rows = self.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND (%(app)s::text IS NULL OR application_name = %(app)s)"
            " ORDER BY pid",
            {"app": application_name},
        )
        return [int(r[0]) for r in rows]

    def terminate_backends(self, application_name: str | None = None, timeout: float = 5.0) -> int:
        """End client sessions (all, or those with *application_name*).

        Blocks until they are gone, so the caller sees a settled server.

        Returns:
            How many sessions were signalled.
        """
        pids = self.backends(application_name)
        if not pids:
            return 0
        self.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) p", [pids])
        deadline = time.monotonic() + timeout
        while set(pids) & set(self.backends(application_name)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"backends {pids} still alive after {timeout}s")
            time.sleep(0.01)
        return len(pids)

    def set(self, name: str, value: str | int | float | bool) -> None:
        """``ALTER SYSTEM SET`` *name* and reload; new sessions see the value.

        Settings that need a restart (``max_connections``, ...) take effect
        only after :meth:`restart`.
        """
        ident = sql.Identifier(*name.split("."))
        self.execute(
            sql.SQL("ALTER SYSTEM SET {} = {}").format(ident, sql.Literal(_guc_text(value)))
        )
        self.reload()

    def reset(self, name: str | None = None) -> None:
        """``ALTER SYSTEM RESET`` *name* (or ``ALL``) and reload."""
        target = sql.SQL("ALL") if name is None else sql.Identifier(*name.split("."))
        self.execute(sql.SQL("ALTER SYSTEM RESET {}").format(target))
        self.reload()

    def reload(self, timeout: float = 5.0) -> None:
        """Reload the configuration and wait until the postmaster has done so.

        ``pg_reload_conf()`` only sends SIGHUP; a fresh session's
        ``pg_conf_load_time()`` moves once the postmaster has re-read the
        files, and every later session inherits the new values.
        """
        before = self.execute("SELECT pg_conf_load_time()")[0][0]
        self.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while self.execute("SELECT pg_conf_load_time()")[0][0] <= before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} did not reload within {timeout}s")
            time.sleep(0.005)
