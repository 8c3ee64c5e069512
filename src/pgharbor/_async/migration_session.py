"""The session a migration run works on, and the migration lock.

Two ways to hold the lock: a session advisory lock for the whole run
(`MigrationSession.session_lock`), or a transaction lock taken at the start
of each migration's transaction (`MigrationSession.xact_lock`), which is what
holds through a transaction-mode pooler. Both are asked for with
``pg_try_advisory_*lock`` and a backoff, never with a blocking call: a
deployer blocked in ``pg_advisory_lock`` is a running transaction, the
holder's ``CREATE INDEX CONCURRENTLY`` waits for it while it waits for the
holder, and the server fails the waiter with "deadlock detected"
(flyway#1654). A statement reaching another server session than the one
that took the session lock (an undeclared pooler) stops the run with what
to do.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from time import monotonic
from typing import Any

from .._acompat import asleep
from .._migrate.files import Part
from .._migrate.history import History, LockKey
from .._policy.backoff import Backoff
from ..drivers.query import AsyncQueries, Isolation, Row
from ..errors import MigrationError, MigrationLockTimeout
from ..facts import to_dollar

__all__ = ["MigrationSession"]

logger = logging.getLogger("pgharbor.migrate")

# Polling for the lock: a first retry soon (the holder may be finishing),
# then about a second apart; each try is one short statement.
_LOCK_BACKOFF = Backoff(initial=0.05, multiplier=2.0, max_delay=1.0, jitter=0.2)


class MigrationSession:
    """One lent connection a run migrates on: the driver's query adapter
    speaking ``%s``, the history table's statements (``h``), and the
    migration lock, taken for the whole run (`session_lock`) or in each
    transaction (`xact_lock`)."""

    __slots__ = (
        "_dollar",
        "_q",
        "conn",
        "db_name",
        "h",
        "in_transaction",
        "lock",
        "lock_pid",
        "lock_timeout",
    )

    def __init__(
        self,
        conn: Any,
        q: AsyncQueries,
        *,
        dollar: bool,
        history: History,
        lock: LockKey,
        lock_timeout: float | None,
        db_name: str,
    ) -> None:
        self.conn, self._q, self._dollar = conn, q, dollar
        self.lock, self.lock_timeout, self.db_name = lock, lock_timeout, db_name
        self.in_transaction = False
        #: The server process that took the session lock, if one was taken.
        self.lock_pid: int | None = None
        #: The history table's statements, its name qualified for this run.
        self.h = history

    def _sql(self, sql: str) -> str:
        return to_dollar(sql) if self._dollar else sql

    async def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return await self._q.fetch(self.conn, self._sql(sql), params, None)

    async def fetchval(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return await self._q.fetchval(self.conn, self._sql(sql), params, None)

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return await self._q.execute(self.conn, self._sql(sql), params, None)

    async def run(self, sql: str) -> None:
        """A statement from a migration file, sent as written (no parameters)."""
        await self._q.execute(self.conn, sql, None, None)

    async def begin(self) -> None:
        # Read committed, whatever the session's default: after waiting for
        # the lock, the next statement must see what the holder committed.
        await self._q.begin(self.conn, Isolation.READ_COMMITTED, False, False)
        self.in_transaction = True

    async def commit(self) -> None:
        self.in_transaction = False
        await self._q.commit(self.conn)

    async def rollback(self) -> None:
        self.in_transaction = False
        await self._q.rollback(self.conn)

    async def abort(self) -> None:
        """Roll back if a transaction is open; never raises (the pool's
        return path cleans or discards the connection anyway)."""
        if self.in_transaction:
            try:
                await self.rollback()
            except Exception as exc:
                logger.debug("rollback after a failed migration failed: %s", exc)

    # -- the lock -------------------------------------------------------------

    async def holder(self) -> str:
        """Who holds the lock, as the server sees it (for messages)."""
        try:
            row = await self.fetch(LockKey.HOLDER, self.lock.halves)
        except Exception:  # only for the message
            return "another session"
        if not row:
            return "another session"
        pid, app, addr = row[0]
        return f"pid {pid} (application_name {app!r}, client {addr or 'local'})"

    async def _wait(self, attempt_lock: Callable[[], Any]) -> None:
        """Call ``attempt_lock`` until it returns True, with a backoff, up to
        ``lock_timeout``; log once who holds the lock."""
        deadline = None if self.lock_timeout is None else monotonic() + self.lock_timeout
        attempt = 0
        while not await attempt_lock():
            if attempt == 0:
                logger.info(
                    "database %r: waiting for the migration lock, held by %s",
                    self.db_name,
                    await self.holder(),
                )
            delay = _LOCK_BACKOFF.delay(attempt, random.random())
            if deadline is not None and monotonic() + delay > deadline:
                raise MigrationLockTimeout(
                    f"database {self.db_name!r}: the migration lock ({self.h.table}) stayed "
                    f"held by {await self.holder()} for more than {self.lock_timeout} s"
                )
            await asleep(delay)
            attempt += 1

    async def session_lock(self) -> None:
        """Take the session lock for the whole run (polling: see the module)."""

        async def attempt() -> bool:
            rows = await self.fetch(
                "SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (self.lock.key,)
            )
            got, pid = rows[0]
            if got:
                self.lock_pid = pid
            return bool(got)

        await self._wait(attempt)

    def same_session(self, pid: int, part: Part | None = None) -> None:
        """Refuse to go on when the connection's statements reach another
        server session than the one holding the session lock: a
        transaction-mode pooler is in between, where that lock holds nothing."""
        if self.lock_pid is None or pid == self.lock_pid:
            return
        where = f"{part.file}: " if part is not None else ""
        raise MigrationError(
            f"{where}this connection's statements reach different server sessions (pid "
            f"{self.lock_pid}, then {pid}): a transaction-mode pooler (PgBouncer) is in "
            "between, where a session lock holds nothing. Configure the database with "
            "pgbouncer=True (migrations then take a lock in each transaction), or connect "
            f"directly. The lock stays with server session {self.lock_pid} until it ends "
            f"(SELECT pg_terminate_backend({self.lock_pid}) frees it at once)"
        )

    async def session_unlock(self) -> None:
        # Leave the connection as the pool lent it: no lock, and no setting a
        # migration changed with SET (it lasts for the session otherwise). A
        # broken connection is discarded by the pool, which ends the lock.
        await self.abort()
        try:
            released = await self.fetchval("SELECT pg_advisory_unlock(%s)", (self.lock.key,))
            await self.execute("RESET ALL")
        except Exception as exc:
            logger.warning("database %r: releasing the migration lock: %s", self.db_name, exc)
            return
        if not released:
            logger.error(
                "database %r: the migration lock was not held by the session releasing it: "
                "a transaction-mode pooler is in between? Server session %s keeps it until "
                "it ends; configure pgbouncer=True",
                self.db_name,
                self.lock_pid,
            )

    async def check_session_lock(self, part: Part) -> None:
        """Make sure this session really holds the lock before statements no
        transaction protects: through a transaction-mode pooler the lock was
        taken by whichever server connection ran that statement."""
        rows = await self.fetch(LockKey.HELD_HERE, self.lock.halves)
        held, pid = rows[0]
        self.same_session(pid, part)
        if not held:
            raise MigrationError(
                f"{part.file}: runs outside a transaction, but this session does not hold "
                "the migration lock it took: is a transaction-mode pooler (PgBouncer) in "
                "between? Say so (pgbouncer=True) and apply this one over a direct connection"
            )

    async def xact_lock(self) -> None:
        """Inside an open transaction: take the transaction lock, rolling
        back and beginning again while someone else holds it (waiting holds
        no transaction, so no server connection through a pooler)."""

        async def attempt() -> bool:
            rows = await self.fetch(
                "SELECT pg_try_advisory_xact_lock(%s), pg_backend_pid()", (self.lock.key,)
            )
            got, pid = rows[0]
            self.same_session(pid)
            if not got:
                await self.rollback()
                await self.begin()
            return bool(got)

        await self._wait(attempt)
