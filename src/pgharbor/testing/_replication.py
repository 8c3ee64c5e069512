"""Streaming replication for `PostgresServer`: replicas, replay, promotion, demotion."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from pgharbor.testing._binaries import HELPER_APP_NAME, chown_to_server_user, conf_value

if TYPE_CHECKING:
    from psycopg.abc import Params, QueryNoTemplate

    from pgharbor.testing._cleanup import Resources
    from pgharbor.testing.server import PostgresServer, StopMode

__all__ = ["Replication"]


class Replication:
    """The replication half of `PostgresServer` (a mixin; use that class).

    A primary knows its followers (for `wait_for_replay`) and owns the
    replicas it created (cleaned up with it); a standby knows its upstream.
    """

    if TYPE_CHECKING:
        # Provided by PostgresServer.
        host: str
        port: int
        bindir: str
        _res: Resources
        _followers: list[Replication]
        _owned: list[PostgresServer]
        _upstream: Replication | None

        @property
        def data_dir(self) -> str: ...
        @property
        def is_running(self) -> bool: ...
        def conninfo(
            self,
            dbname: str | None = None,
            user: str | None = None,
            password: str | None = None,
            **params: Any,
        ) -> str: ...
        def execute(
            self,
            query: QueryNoTemplate,
            params: Params | None = None,
            dbname: str | None = None,
        ) -> list[tuple[Any, ...]]: ...
        def start(self, timeout: float = 60.0) -> None: ...
        def stop(self, mode: StopMode = "fast", timeout: float = 60.0) -> None: ...
        def set(self, name: str, value: str | int | float | bool) -> None: ...
        def log_tail(self, lines: int = 40) -> str: ...
        def _make_root(self) -> None: ...
        def _run(self, *args: str, timeout: float = 120.0) -> str: ...
        def _append_settings(self, settings: Mapping[str, str | int | float | bool]) -> None: ...
        def _new_log(self) -> str: ...

    def is_in_recovery(self) -> bool:
        """True on a standby (and during crash recovery)."""
        return bool(self.execute("SELECT pg_is_in_recovery()")[0][0])

    def add_replica(
        self,
        *,
        settings: Mapping[str, str | int | float | bool] | None = None,
        keep: bool | None = None,
        timeout: float = 60.0,
    ) -> PostgresServer:
        """Clone this server with ``pg_basebackup`` and start a streaming standby.

        The replica uses the same binaries, gets its own port and directory
        and is cleaned up together with this server.

        Args:
            settings: Extra settings for the replica only.
            keep: Keep its directory after cleanup (defaults to ours).
            timeout: How long to wait for the replica to accept connections.
        """
        from pgharbor.testing.server import PostgresServer  # the class mixing us in

        replica = PostgresServer(
            bindir=self.bindir,
            settings=settings,
            keep=self._res.keep if keep is None else keep,
        )
        self._owned.append(replica)
        replica._make_root()
        replica._run(
            "pg_basebackup",
            "-D",
            replica.data_dir,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "postgres",
        )
        if settings:
            replica._append_settings(settings)
        replica.start(timeout)
        replica._follow(self)
        return replica

    def _follow(self, primary: Replication) -> None:
        if self._upstream is not None and self in self._upstream._followers:
            self._upstream._followers.remove(self)
        self._upstream = primary
        primary._followers.append(self)

    def wait_for_replay(self, replica: PostgresServer | None = None, timeout: float = 10.0) -> None:
        """Block until *replica* (default: every running standby of ours) has
        replayed all WAL this server has written so far.

        Raises:
            TimeoutError: A standby is still behind after *timeout* seconds.
        """
        lsn = self._flushed_lsn()
        targets = [replica] if replica else [r for r in self._followers if r.is_running]
        deadline = time.monotonic() + timeout
        for target in targets:
            if not _replayed(target, lsn, deadline):
                raise TimeoutError(
                    f"{target!r} did not replay {lsn} within {timeout}s\n" + target.log_tail(10)
                )

    def _flushed_lsn(self) -> str:
        """Write a WAL record, flush it and return its end: a replay target.

        The insert position is no good target: it can point past a page
        header that no record has reached yet, so no standby ever "replays"
        it. A transactional logical message is a real record after every
        earlier one, and its synchronous commit flushes the WAL that the
        server's asynchronous commits may still hold in buffers.
        """
        info = self.conninfo(
            connect_timeout=5,
            application_name=HELPER_APP_NAME,
            options="-c synchronous_commit=on",
        )
        with psycopg.connect(info, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_logical_emit_message(true, 'pgharbor', 'sync')::text"
            ).fetchone()
        assert row is not None
        return str(row[0])

    def promote(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Turn this standby into a primary (``pg_ctl promote``)."""
        self._run(
            "pg_ctl",
            "promote",
            "-D",
            self.data_dir,
            "-w" if wait else "-W",
            "-t",
            str(int(timeout)),
            timeout=timeout + 5,
        )
        if self._upstream is not None and self in self._upstream._followers:
            self._upstream._followers.remove(self)
        self._upstream = None

    def demote_to_standby_of(self, new_primary: PostgresServer, timeout: float = 30.0) -> None:
        """Restart this server as a streaming standby of *new_primary*.

        The usual failover epilogue: the old primary rejoins behind the
        promoted replica. If its history diverged (it wrote WAL the new
        primary never saw), it is rewound with ``pg_rewind`` first.

        Raises:
            RuntimeError: It could not follow even after a rewind.
        """
        self.stop("fast")
        self._write_standby_config(new_primary)
        self.start(timeout)
        if self._follows(new_primary, min(timeout, 5.0)):
            self._follow(new_primary)
            return
        self.stop("fast")
        # pg_rewind copies changed blocks from a running source; without full
        # page writes there a torn copy could never be repaired by replay.
        new_primary.set("full_page_writes", True)
        new_primary.execute("CHECKPOINT")
        self._run(
            "pg_rewind",
            "-D",
            self.data_dir,
            f"--source-server={new_primary.conninfo()}",
            "--no-sync",
        )
        # pg_rewind copied the source's config, including its old standby
        # settings: point this one at the new primary again.
        self._write_standby_config(new_primary)
        self.start(timeout)
        if not self._follows(new_primary, timeout):
            raise RuntimeError(
                f"{self!r} does not follow {new_primary!r} even after pg_rewind\n"
                + self.log_tail(20)
            )
        self._follow(new_primary)

    def _write_standby_config(self, primary: PostgresServer) -> None:
        auto = Path(self.data_dir, "postgresql.auto.conf")
        kept = [
            line
            for line in auto.read_text().splitlines()
            if not line.lstrip().startswith(("primary_conninfo", "primary_slot_name"))
        ]
        info = primary.conninfo(application_name=f"standby-{self.port}")
        kept.append(f"primary_conninfo = {conf_value(info)}")
        auto.write_text("\n".join(kept) + "\n")
        Path(self.data_dir, "recovery.signal").unlink(missing_ok=True)
        signal_file = Path(self.data_dir, "standby.signal")
        signal_file.touch()
        chown_to_server_user(str(signal_file))

    def _follows(self, primary: PostgresServer, timeout: float) -> bool:
        """Wait until we stream *primary*'s timeline and replayed all its WAL."""
        deadline = time.monotonic() + timeout
        # The first 8 hex digits of a WAL file name are the timeline the
        # server inserts on; pg_control lags until the post-promote checkpoint.
        walfile = primary.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")
        timeline = int(walfile[0][0][:8], 16)
        while time.monotonic() < deadline:
            log = self._new_log()
            if "is not a child of" in log or "forked off" in log:
                return False  # diverged histories never heal by waiting
            rows = self.execute("SELECT status, received_tli FROM pg_stat_wal_receiver")
            # Streaming alone is not enough: a diverged standby briefly
            # streams the old timeline before noticing the fork.
            if rows and rows[0][0] == "streaming" and rows[0][1] == timeline:
                return _replayed(self, primary._flushed_lsn(), deadline)
            time.sleep(0.02)
        return False


def _replayed(standby: Replication, lsn: str, deadline: float) -> bool:
    """Poll *standby* on one connection until it has replayed *lsn*."""
    info = standby.conninfo(connect_timeout=5, application_name=HELPER_APP_NAME)
    with psycopg.connect(info, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)",
                [lsn],
            ).fetchone()
            if row is not None and row[0]:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
