"""`AsyncMigrations`: versioned SQL migrations applied under a lock. Source of
the generated `Migrations`.

What it does on ``up`` (see docs/migrations.md for the whole story):

1. Reads the files (`pgharbor._migrate.files`): versions, up and down parts
   split into statements by PostgreSQL's parser, checksums.
2. Takes the migration lock (`pgharbor._async.migration_session`). With
   ``lock="session"`` (direct connections, the default) a session advisory
   lock held for the whole run. Through a transaction-mode pooler
   (``pgbouncer=True``, or ``lock="transaction"``) a session lock means
   nothing, so each migration's own transaction takes a transaction-level
   lock instead, and a migration that cannot run in a transaction is
   refused there.
3. Reads the history table and plans (`pgharbor._migrate.plan`): refuses
   drift (an applied file edited or gone) and out-of-order pending files
   unless told otherwise.
4. Applies each migration in its own transaction, which first takes the
   transaction lock and checks the history again: whoever waited for the
   lock sees what the holder applied and skips it. Nothing is applied twice,
   with either lock. A migration that cannot run in a transaction runs
   statement by statement, its history row marked failed until its last
   statement is in, so an interrupted one is never mistaken for applied.

A statement that fails stops the run: its migration is rolled back (the
database stays at the last good version) and `MigrationFailed` names the
file, the line (from the server's error position when it gives one) and the
statement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Any, Literal

from .._acompat import aensure
from .._migrate.files import Migration, Part, load_directory
from .._migrate.history import History, LockKey, failure, quote_ident
from .._migrate.plan import (
    Applied,
    MigrationPlan,
    MigrationStatus,
    MigrationStep,
    current_version,
    plan_down,
    plan_up,
    status,
)
from .._pgparse import Statement
from .._policy.sqlstate import is_disconnect, sqlstate_of
from ..drivers import get_async_queries
from ..drivers.query import AsyncQueries
from ..errors import (
    ConfigError,
    MigrationError,
    MigrationFailed,
)
from .database import AsyncDatabase
from .migration_session import MigrationSession

__all__ = ["AsyncMigrations"]

logger = logging.getLogger("pgharbor.migrate")

LockMode = Literal["auto", "session", "transaction"]
#: Called with a step when it starts (seconds None) and when it is done.
StepCallback = Callable[[MigrationStep, float | None], Any]


class AsyncMigrations:
    """Versioned SQL migrations from ``directory``, applied to ``db``.

    Args:
        db: the database (statements go to its primary).
        directory: the migration files (see `pgharbor._migrate.files`).
        table: the history table, created on first ``up``.
        schema: its schema; None: the first of the ``search_path``.
        lock: ``"session"`` holds a session advisory lock for the whole run
            (direct connections); ``"transaction"`` takes a transaction lock
            in each migration's transaction (through PgBouncer in transaction
            mode, where a session lock holds nothing); ``"auto"`` picks
            ``"transaction"`` when the database was configured with
            ``pgbouncer=True``.
        lock_timeout: seconds to wait for another deployer's lock before
            `MigrationLockTimeout`; None waits as long as it takes.

    Raises:
        ConfigError: a bad argument, at once.
    """

    def __init__(
        self,
        db: AsyncDatabase,
        directory: str | Path,
        *,
        table: str = "pgharbor_migrations",
        schema: str | None = None,
        lock: LockMode = "auto",
        lock_timeout: float | None = 300.0,
    ) -> None:
        if not isinstance(db, AsyncDatabase):
            raise ConfigError("db", f"must be an AsyncDatabase, got {type(db).__name__}")
        if not isinstance(table, str) or not table:
            raise ConfigError("table", "must be a non-empty string")
        if schema is not None and (not isinstance(schema, str) or not schema):
            raise ConfigError("schema", "must be a non-empty string or None")
        if lock not in ("auto", "session", "transaction"):
            raise ConfigError("lock", "must be 'auto', 'session' or 'transaction'", lock)
        if lock_timeout is not None and (
            isinstance(lock_timeout, bool)
            or not isinstance(lock_timeout, int | float)
            or not lock_timeout > 0
        ):
            raise ConfigError("lock_timeout", "must be a number of seconds > 0, or None")
        self.db = db
        self.directory = Path(directory)
        self.lock: LockMode = lock
        self.lock_timeout = lock_timeout
        self._table, self._schema = table, schema
        self._lock = LockKey.for_table(schema, table)
        #: The advisory lock key (a bigint), derived from the table's name.
        self.lock_key = self._lock.key
        self._q: AsyncQueries = get_async_queries(db.driver)
        self._dollar = db.driver == "asyncpg"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.directory)!r} on {self.db.name!r}>"

    @property
    def mode(self) -> Literal["session", "transaction"]:
        """The lock this run takes (``lock`` with ``"auto"`` resolved)."""
        if self.lock != "auto":
            return self.lock
        settings = self.db.settings
        return "transaction" if settings is not None and settings.pgbouncer else "session"

    def load(self) -> list[Migration]:
        """Read and parse every file (again: files may have changed).

        Raises:
            MigrationError: a bad file; the message names it and the line.
        """
        return load_directory(self.directory)

    # -- reading ----------------------------------------------------------------

    async def _session(self, conn: Any) -> MigrationSession:
        """A session on ``conn``, the history table's name qualified once and
        for all: a migration that changes the ``search_path`` must not move
        the history table under the run's feet."""
        schema = self._schema
        if schema is None:
            schema = await self._q.fetchval(conn, "SELECT current_schema()", None, None)
            if schema is None:
                raise MigrationError(
                    f"database {self.db.name!r}: no schema of the search_path exists for "
                    "the history table: give schema="
                )
        table = f"{quote_ident(schema)}.{quote_ident(self._table)}"
        return MigrationSession(
            conn,
            self._q,
            dollar=self._dollar,
            history=History(table),
            lock=self._lock,
            lock_timeout=self.lock_timeout,
            db_name=self.db.name,
        )

    async def history(self) -> list[Applied]:
        """The rows of the history table ([] before the first ``up``)."""
        async with self.db.connection(route="primary") as conn:
            return await self._history(await self._session(conn))

    async def _history(self, s: MigrationSession) -> list[Applied]:
        if await s.fetchval("SELECT to_regclass(%s) IS NOT NULL", (s.h.table,)) is not True:
            return []
        return [Applied(*row) for row in await s.fetch(s.h.select())]

    async def status(self) -> list[MigrationStatus]:
        """Every migration the files or the history know, and its state
        (applied, pending, out-of-order, changed, missing, failed)."""
        migrations = self.load()
        return status(migrations, await self.history())

    async def current_version(self) -> int | None:
        """The newest applied version, or None."""
        return current_version(await self.history())

    async def plan(
        self, to: int | None = None, *, allow_drift: bool = False, out_of_order: bool = False
    ) -> MigrationPlan:
        """What `up` would run now (nothing is locked or changed)."""
        return await self.up(to, dry_run=True, allow_drift=allow_drift, out_of_order=out_of_order)

    # -- applying --------------------------------------------------------------

    async def up(
        self,
        to: int | None = None,
        *,
        dry_run: bool = False,
        allow_drift: bool = False,
        out_of_order: bool = False,
        on_step: StepCallback | None = None,
    ) -> MigrationPlan:
        """Apply pending migrations, oldest first, up to version ``to``.

        With ``dry_run`` only plan: nothing is locked, created or run.
        ``allow_drift`` goes on despite edited or missing applied files;
        ``out_of_order`` applies pending files older than the newest applied.
        ``on_step(step, None)`` is called as a migration starts and
        ``on_step(step, seconds)`` when it is in.

        Returns:
            The steps this call applied (another deployer may have applied
            some of the plan meanwhile: those are skipped, not repeated).

        Raises:
            MigrationError: bad files, a failed earlier run, or a migration
                that cannot run in a transaction with ``lock="transaction"``.
            MigrationDrift: see ``allow_drift`` and ``out_of_order``.
            MigrationFailed: a statement failed; the database stays at the
                last version applied.
            MigrationLockTimeout: another deployer held the lock too long.
        """
        migrations = self.load()
        files = {m.version: m for m in migrations}

        def make(history: list[Applied]) -> MigrationPlan:
            plan = plan_up(
                migrations, history, to, allow_drift=allow_drift, out_of_order=out_of_order
            )
            self._check_mode(plan, files)
            return plan

        return await self._run(make, files, dry_run, on_step)

    async def down(
        self,
        to: int | None = None,
        *,
        steps: int | None = None,
        dry_run: bool = False,
        allow_drift: bool = False,
        on_step: StepCallback | None = None,
    ) -> MigrationPlan:
        """Roll back applied migrations, newest first: every one above
        version ``to`` (0: all), or the newest ``steps`` (default: one).
        Each runs its down part in its own transaction (or statement by
        statement if the part cannot run in one).

        Raises:
            MigrationError: a migration to roll back has no down part or no
                file; see also `up`.
        """
        migrations = self.load()
        files = {m.version: m for m in migrations}

        def make(history: list[Applied]) -> MigrationPlan:
            plan = plan_down(migrations, history, to, steps=steps, allow_drift=allow_drift)
            self._check_mode(plan, files)
            return plan

        return await self._run(make, files, dry_run, on_step)

    async def repair(self) -> list[str]:
        """Accept the files as they are: forget failed entries (after you
        finished or undid them by hand), take the current checksum and name
        of edited files, and forget applied versions whose file is gone.

        Returns:
            One line per change made.
        """
        migrations = {m.version: m for m in self.load()}
        changes: list[str] = []
        async with self.db.connection(route="primary") as conn:
            s = await self._session(conn)
            await s.begin()
            try:
                await s.xact_lock()
                for a in await self._history(s):
                    m = migrations.get(a.version)
                    label = f"{a.version:04d}_{a.name}"
                    if not a.success:
                        await s.execute(s.h.delete(), (a.version,))
                        changes.append(f"{label}: failed entry removed (counts as not applied)")
                    elif m is None:
                        await s.execute(s.h.delete(), (a.version,))
                        changes.append(f"{label}: file gone, entry removed")
                    elif m.checksum != a.checksum or m.name != a.name:
                        await s.execute(s.h.realign(), (m.checksum, m.name, a.version))
                        changes.append(f"{label}: checksum now the file's")
                await s.commit()
            except BaseException:
                await s.abort()
                raise
        for line in changes:
            logger.warning("migrations repaired: %s", line)
        return changes

    def _check_mode(self, plan: MigrationPlan, files: dict[int, Migration]) -> None:
        if self.mode != "transaction":
            return
        for step in plan.steps:
            if not step.transactional:
                part = self._part(files[step.version], step.direction)
                raise MigrationError(
                    f"{step.file}: runs outside a transaction ({part.why_not}); with "
                    "lock='transaction' (PgBouncer in transaction mode) no lock can keep a "
                    "second deployer out while it runs. Apply it over a direct "
                    "connection to the server (pgbouncer=False, lock='session')"
                )

    @staticmethod
    def _part(m: Migration, direction: str) -> Part:
        part = m.up if direction == "up" else m.down
        assert part is not None
        return part

    async def _run(
        self,
        make: Callable[[list[Applied]], MigrationPlan],
        files: dict[int, Migration],
        dry_run: bool,
        on_step: StepCallback | None,
    ) -> MigrationPlan:
        async with self.db.connection(route="primary") as conn:
            s = await self._session(conn)
            if dry_run:
                return make(await self._history(s))
            session = self.mode == "session"
            if session:
                await s.session_lock()
            try:
                await self._ensure_table(s)
                plan = make(await self._history(s))
                version = plan.current
                ran: list[MigrationStep] = []
                for step in plan.steps:
                    m = files[step.version]
                    if on_step is not None:
                        await aensure(on_step, step, None)
                    started = monotonic()
                    if await self._apply(s, m, step, version):
                        ran.append(step)
                        elapsed = monotonic() - started
                        logger.info(
                            "database %r: %s %s (%.3f s)",
                            self.db.name,
                            "applied" if step.direction == "up" else "rolled back",
                            m.label,
                            elapsed,
                        )
                        if on_step is not None:
                            await aensure(on_step, step, elapsed)
                    version = await self._version(s)
                return MigrationPlan(plan.direction, plan.current, version, tuple(ran))
            finally:
                if session:
                    await s.session_unlock()

    async def _version(self, s: MigrationSession) -> int | None:
        value = await s.fetchval(s.h.newest())
        return None if value is None else int(value)

    # -- locks -------------------------------------------------------------------

    async def _ensure_table(self, s: MigrationSession) -> None:
        await s.begin()
        try:
            await s.xact_lock()  # concurrent CREATE TABLE IF NOT EXISTS can fail
            await s.execute(s.h.create())
            await s.commit()
        except BaseException:
            await s.abort()
            raise

    # -- one migration -----------------------------------------------------------

    async def _apply(
        self, s: MigrationSession, m: Migration, step: MigrationStep, version: int | None
    ) -> bool:
        """Run one step; False if another deployer got there first."""
        part = self._part(m, step.direction)
        if part.transactional:
            return await self._apply_in_transaction(s, m, part, step, version)
        return await self._apply_statement_by_statement(s, m, part, step, version)

    async def _apply_in_transaction(
        self,
        s: MigrationSession,
        m: Migration,
        part: Part,
        step: MigrationStep,
        version: int | None,
    ) -> bool:
        up = step.direction == "up"
        started = monotonic()
        await s.begin()
        try:
            await s.xact_lock()
            # The plan was made before the lock: look again.
            done = await s.fetchval(s.h.success_of(), (m.version,))
            if done is False:
                raise MigrationError(
                    f"{m.label}: another run stopped halfway through it; see status, then repair"
                )
            if (done is not None) == up:
                await s.rollback()
                return False
            for st in part.statements:
                await self._statement(s, m, part, st, version, done=None)
            if up:
                elapsed_ms = (monotonic() - started) * 1000.0
                await s.execute(
                    s.h.insert_applied(),
                    (m.version, m.name, m.checksum, len(part.statements), elapsed_ms),
                )
            else:
                await s.execute(s.h.delete(), (m.version,))
        except BaseException:
            await s.abort()
            raise
        try:
            await s.commit()
        except Exception as exc:
            code = sqlstate_of(exc)
            if code is None or is_disconnect(code):
                raise MigrationError(
                    f"{part.file}: the connection was lost while COMMIT was in flight: the "
                    "migration may or may not be in; see status (running up again is safe)"
                ) from exc
            raise  # refused at COMMIT (a deferred constraint...): rolled back
        return True

    async def _apply_statement_by_statement(
        self,
        s: MigrationSession,
        m: Migration,
        part: Part,
        step: MigrationStep,
        version: int | None,
    ) -> bool:
        # Only with the session lock (see _check_mode): nobody else may run.
        await s.check_session_lock(part)
        up = step.direction == "up"
        started = monotonic()
        if up:
            await s.execute(s.h.insert_started(), (m.version, m.name, m.checksum))
        else:
            await s.execute(s.h.rolling_back(), (m.version,))
        for i, st in enumerate(part.statements):
            try:
                await self._statement(s, m, part, st, version, done=i)
            except MigrationFailed as failed:
                await self._note_failure(s, m, i, str(failed))
                raise
            await s.execute(s.h.progress(), (i + 1, m.version))
        if up:
            await s.execute(s.h.finished(), ((monotonic() - started) * 1000.0, m.version))
        else:
            await s.execute(s.h.delete(), (m.version,))
        return True

    async def _note_failure(
        self, s: MigrationSession, m: Migration, done: int, message: str
    ) -> None:
        try:
            await s.execute(s.h.failed(), (message[:2000], done, m.version))
        except Exception as exc:  # the connection may be gone; the row says failed anyway
            logger.warning("database %r: recording the failure: %s", self.db.name, exc)

    async def _statement(
        self,
        s: MigrationSession,
        m: Migration,
        part: Part,
        st: Statement,
        version: int | None,
        *,
        done: int | None,
    ) -> None:
        """Run one statement of ``m``; ``done`` is how many of its statements
        are already in when it runs outside a transaction (None inside one)."""
        try:
            await s.run(st.sql)
        except Exception as exc:
            raise failure(exc, m, part, st, version, done) from exc
