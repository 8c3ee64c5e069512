"""`AsyncSaga`: work spanning several databases, each step a transaction with
a compensation. Source of the generated `Saga`.

::

    saga = AsyncSaga(mgr, "transfer", log="ledger")
    saga.step("debit", "source", action=debit, compensation=refund)
    saga.step("credit", "target", action=credit, compensation=take_back)
    result = await saga.run({"account": 7, "amount": 10}, key="transfer-42")

``run`` runs the steps in order; when one fails, the steps before it (and
the failed one, in case its COMMIT was lost) are compensated in reverse, each
compensation retried with a backoff, and `SagaFailed` is raised. The ``key``
makes the whole saga idempotent: running it again with the same key skips
the steps already applied (their recorded results are returned) and refuses
one that was compensated. With a ``log`` database, a saga interrupted by a
crash is found again by `recover` on restart, and resumed or compensated.
How steps stay exactly-once: see `pgharbor._saga`.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .._acompat import aensure, asleep
from .._policy.backoff import Backoff
from .._saga import (
    SagaContext,
    SagaLog,
    SagaResult,
    SagaState,
    Step,
    StepMarkers,
    dumps,
    retryable,
    setup_lock_key,
)
from ..errors import ConfigError, SagaCompensationFailed, SagaError, SagaFailed
from ..facts import to_dollar
from .database import AsyncDatabase, AsyncTransaction
from .manager import AsyncDatabaseManager

__all__ = ["AsyncSaga"]

logger = logging.getLogger("pgharbor.saga")

#: A step's action or compensation: ``fn(tx, ctx)``; a coroutine function or not.
AsyncStepFn = Callable[[AsyncTransaction, SagaContext], Any]


class _Cancelled(Exception):
    """The step was compensated (or cancelled) before its action could run."""


class AsyncSaga:
    """A named sequence of steps over named databases.

    Args:
        databases: an `AsyncDatabaseManager`, a mapping of names to
            `AsyncDatabase`, or one `AsyncDatabase` (named by its ``name``).
        name: the saga's name (part of every marker and log key).
        log: the name of the database holding the saga log; None: no log
            (``run`` is still idempotent by key; `recover` needs a log).
        schema: schema of pgharbor's tables; None: the ``search_path``'s.
        step_attempts: tries of an action failing with a connection loss, an
            unknown COMMIT outcome or a serialization failure (the step
            marker makes a retry safe). A business error is not retried.
        compensation_attempts: tries of a compensation, whatever the error.
        backoff: the delays between tries.

    Raises:
        ConfigError: a bad argument, at once.
    """

    def __init__(
        self,
        databases: AsyncDatabaseManager | Mapping[str, AsyncDatabase] | AsyncDatabase,
        name: str,
        *,
        log: str | None = None,
        schema: str | None = None,
        step_attempts: int = 3,
        compensation_attempts: int = 8,
        backoff: Backoff | None = None,
    ) -> None:
        if isinstance(databases, AsyncDatabase):
            databases = {databases.name: databases}
        self._dbs = databases
        if not isinstance(name, str) or not name:
            raise ConfigError("name", "must be a non-empty string")
        for field, value in (
            ("step_attempts", step_attempts),
            ("compensation_attempts", compensation_attempts),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(field, "must be an integer >= 1", value)
        if log is not None:
            self._db(log, "log")
        self.name = name
        self.log = log
        self.step_attempts = step_attempts
        self.compensation_attempts = compensation_attempts
        self.backoff = backoff or Backoff(initial=0.1, max_delay=5.0)
        self.steps: list[Step] = []
        self._markers = StepMarkers(schema)
        self._log = SagaLog(schema)
        self._ready: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.steps)
        return f"<{type(self).__name__} {self.name!r} steps=[{names}] log={self.log!r}>"

    def _db(self, name: str, field: str = "database") -> AsyncDatabase:
        try:
            return self._dbs[name]
        except KeyError:
            known = ", ".join(self._dbs)
            raise ConfigError(field, f"no database named {name!r} (have: {known})") from None

    def step(
        self,
        name: str,
        database: str,
        action: AsyncStepFn,
        compensation: AsyncStepFn | None = None,
    ) -> AsyncSaga:
        """Add a step: ``action(tx, ctx)`` runs in a transaction on
        ``database`` and returns a JSON value (its result); on failure of a
        later step, ``compensation(tx, ctx)`` undoes it in a transaction on
        the same database (``ctx.result`` is what the action returned).
        Without a compensation the step is left as it is. Returns the saga,
        for chaining.

        Raises:
            ConfigError: a duplicate name, an unknown database.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError("step", "a step name must be a non-empty string")
        if any(s.name == name for s in self.steps):
            raise ConfigError("step", f"a step named {name!r} exists already")
        self._db(database)
        if not callable(action) or (compensation is not None and not callable(compensation)):
            raise ConfigError("step", f"{name!r}: action and compensation must be callables")
        self.steps.append(Step(name, database, action, compensation))
        return self

    # -- running -------------------------------------------------------------------

    async def run(self, data: Any = None, *, key: str | None = None) -> SagaResult:
        """Run every step in order; compensate in reverse if one fails.

        ``data`` (JSON values) is given to every step as ``ctx.data``; with a
        log it is recorded, so `resume` and `recover` need nothing else.
        ``key`` identifies this saga run (default: a new UUID): running again
        with a key seen before skips the steps already applied.

        Raises:
            SagaFailed: a step failed (the cause) and every step before it
                was compensated.
            SagaCompensationFailed: a compensation kept failing; the saga
                stays recorded as failed for `compensate` or `recover`.
            SagaError: the saga with this key was compensated already.
        """
        if not self.steps:
            raise ConfigError("steps", "a saga needs at least one step")
        key = str(uuid.uuid4()) if key is None else key
        if not isinstance(key, str) or not key:
            raise ConfigError("key", "must be a non-empty string")
        dumps(data, "saga data")
        await self._setup()
        if self.log is not None:
            state, _ = await self._start(key, data)
            if state in ("compensating", "compensated", "failed"):
                raise SagaError(
                    f"saga {self.name!r} {key!r} is {state}: it cannot run again "
                    "(compensate it, or use a new key)",
                    key,
                )
        return await self._forward(key, data)

    async def resume(self, key: str) -> SagaResult:
        """Carry on a saga recorded in the log: run the steps not applied yet
        (those applied are skipped), compensating as `run` does.

        Raises:
            SagaError: no log, or no saga with this key in it.
        """
        data = await self._recorded(key)
        return await self.run(data, key=key)

    async def compensate(self, key: str, data: Any = None) -> None:
        """Undo a saga: compensate every applied step in reverse, and make sure
        the steps not applied never will be (a late retry of one is refused).
        With a log, ``data`` is read from it.

        Raises:
            SagaCompensationFailed: a compensation kept failing.
        """
        await self._setup()
        if self.log is not None:
            data = await self._recorded(key)
        await self._note(key, "compensating", None, "compensate requested")
        await self._backward(key, data, len(self.steps) - 1, {})
        await self._note(key, "compensated", None, None)

    async def recover(
        self, mode: Literal["resume", "compensate"] = "resume", *, older_than: float = 0.0
    ) -> dict[str, SagaState]:
        """Finish every saga the log shows unfinished (a process died in the
        middle): resume the running ones (``mode="resume"``) or compensate
        them; carry on compensating those that were compensating. Only sagas
        not updated for ``older_than`` seconds are touched: with several
        processes running sagas, give it more than your longest step.

        Returns:
            What became of each saga, by key (``done``, ``compensated``,
            ``failed``).

        Raises:
            SagaError: the saga has no log.
        """
        if self.log is None:
            raise SagaError(f"saga {self.name!r} has no log to recover from", "")
        if mode not in ("resume", "compensate"):
            raise ConfigError("mode", "must be 'resume' or 'compensate'", mode)
        await self._setup()
        rows = await self._log_fetch(self._log.unfinished(), (self.name, float(older_than)))
        outcome: dict[str, SagaState] = {}
        for key, state, data_text, step in rows:
            data = json.loads(data_text) if data_text is not None else None
            logger.warning(
                "saga %r %r was %s (at step %r): %s",
                self.name,
                key,
                state,
                step,
                "resuming" if state == "running" and mode == "resume" else "compensating",
            )
            try:
                if state == "running" and mode == "resume":
                    await self._forward(key, data)
                    outcome[key] = "done"
                else:
                    await self._note(key, "compensating", step, "recovered")
                    await self._backward(key, data, len(self.steps) - 1, {})
                    await self._note(key, "compensated", None, None)
                    outcome[key] = "compensated"
            except SagaFailed:
                outcome[key] = "compensated"
            except SagaCompensationFailed:
                outcome[key] = "failed"
        return outcome

    async def _forward(self, key: str, data: Any) -> SagaResult:
        results: dict[str, Any] = {}
        for i, step in enumerate(self.steps):
            ctx = SagaContext(self.name, key, data, dict(results), step.name)
            await self._note(key, "running", step.name, None)
            try:
                results[step.name] = await self._action(step, ctx)
            except _Cancelled:
                raise SagaError(
                    f"saga {self.name!r} {key!r}: step {step.name!r} was compensated "
                    "already; the saga cannot run again (use a new key)",
                    key,
                ) from None
            except Exception as exc:
                reason = f"{step.name}: {type(exc).__name__}: {exc}"
                logger.warning(
                    "saga %r %r: step %r failed (%s); compensating", self.name, key, step.name, exc
                )
                await self._note(key, "compensating", step.name, reason[:2000])
                await self._backward(key, data, i, results, cause=exc)
                await self._note(key, "compensated", step.name, reason[:2000])
                raise SagaFailed(
                    f"saga {self.name!r} {key!r}: step {step.name!r} failed "
                    f"({type(exc).__name__}: {exc}); the steps before it were compensated",
                    key,
                    step.name,
                ) from exc
        await self._note(key, "done", None, None)
        return SagaResult(self.name, key, results)

    async def _backward(
        self,
        key: str,
        data: Any,
        last: int,
        results: dict[str, Any],
        cause: BaseException | None = None,
    ) -> None:
        """Compensate steps ``last`` down to 0, each retried with the backoff."""
        for step in reversed(self.steps[: last + 1]):
            ctx = SagaContext(self.name, key, data, dict(results), step.name)
            attempt = 0
            while True:
                try:
                    await self._compensation(step, ctx)
                    break
                except Exception as exc:
                    attempt += 1
                    if attempt >= self.compensation_attempts:
                        await self._note(key, "failed", step.name, f"compensation: {exc}"[:2000])
                        raise SagaCompensationFailed(
                            f"saga {self.name!r} {key!r}: the compensation of step "
                            f"{step.name!r} failed {attempt} times ({type(exc).__name__}: "
                            f"{exc}); the steps before it are not compensated yet: "
                            "compensate(key) or recover() carries on",
                            key,
                            step.name,
                        ) from exc
                    delay = self.backoff.delay(attempt - 1, random.random())
                    logger.warning(
                        "saga %r %r: compensation of %r failed (%s); retry %d in %.2f s",
                        self.name,
                        key,
                        step.name,
                        exc,
                        attempt,
                        delay,
                    )
                    await asleep(delay)

    # -- one step ------------------------------------------------------------------

    def _sql(self, db: AsyncDatabase, sql: str) -> str:
        return to_dollar(sql) if db.driver == "asyncpg" else sql

    async def _action(self, step: Step, ctx: SagaContext) -> Any:
        """Run the action unless its marker exists; its result either way."""
        db = self._db(step.database)
        marker = (self.name, ctx.key, step.name)
        attempt = 0
        while True:
            try:
                async with db.transaction(isolation="read committed") as tx:
                    claimed = await tx.execute(
                        self._sql(db, self._markers.claim("applied")), marker
                    )
                    if not claimed:
                        row = await tx.fetchrow(self._sql(db, self._markers.read()), marker)
                        assert row is not None
                        if row[0] != "applied":
                            raise _Cancelled(row[0])
                        return None if row[1] is None else json.loads(row[1])
                    result = await aensure(step.action, tx, ctx)
                    text = dumps(result, f"the result of step {step.name!r}")
                    await tx.execute(self._sql(db, self._markers.set_result()), (text, *marker))
                return result
            except Exception as exc:
                attempt += 1
                if attempt >= self.step_attempts or not retryable(exc):
                    raise
                delay = self.backoff.delay(attempt - 1, random.random())
                logger.info(
                    "saga %r %r: step %r failed (%s); retry %d in %.2f s",
                    self.name,
                    ctx.key,
                    step.name,
                    exc,
                    attempt,
                    delay,
                )
                await asleep(delay)

    async def _compensation(self, step: Step, ctx: SagaContext) -> None:
        """Compensate an applied step once; leave a ``cancelled`` marker on
        one that never was."""
        db = self._db(step.database)
        marker = (self.name, ctx.key, step.name)
        async with db.transaction(isolation="read committed") as tx:
            if await tx.execute(self._sql(db, self._markers.claim("cancelled")), marker):
                return  # never applied, and now never will be
            row = await tx.fetchrow(self._sql(db, self._markers.read()), marker)
            assert row is not None
            if row[0] != "applied":
                return  # compensated (or cancelled) already
            if step.compensation is not None:
                result = None if row[1] is None else json.loads(row[1])
                ctx = SagaContext(ctx.name, ctx.key, ctx.data, ctx.results, step.name, result)
                await aensure(step.compensation, tx, ctx)
            await tx.execute(self._sql(db, self._markers.compensated()), marker)

    # -- tables and the log ----------------------------------------------------------

    async def _setup(self) -> None:
        """Create the marker table in every step database and the log table
        (once per saga object), each under a transaction lock."""
        names = {s.database for s in self.steps}
        jobs = [(n, self._markers.create(), self._markers.table) for n in sorted(names)]
        if self.log is not None:
            jobs.append((self.log, self._log.create(), self._log.table))
        for name, create, table in jobs:
            if (name, table) in self._ready:
                continue
            db = self._db(name)
            async with db.transaction() as tx:
                await tx.execute(
                    self._sql(db, "SELECT pg_advisory_xact_lock(%s)"), (setup_lock_key(table),)
                )
                await tx.execute(create)
            self._ready.add((name, table))

    async def _log_fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        assert self.log is not None
        db = self._db(self.log)
        return await db.fetch(self._sql(db, sql), params, route="primary")

    async def _start(self, key: str, data: Any) -> tuple[str, Any]:
        rows = await self._log_fetch(self._log.start(), (self.name, key, dumps(data, "data")))
        state, text = rows[0]
        return state, None if text is None else json.loads(text)

    async def _recorded(self, key: str) -> Any:
        if self.log is None:
            raise SagaError(f"saga {self.name!r} has no log: give data to run()", key)
        rows = await self._log_fetch(self._log.get(), (self.name, key))
        if not rows:
            raise SagaError(f"saga {self.name!r} has no record of key {key!r}", key)
        return None if rows[0][1] is None else json.loads(rows[0][1])

    async def _note(self, key: str, state: str, step: str | None, error: str | None) -> None:
        """Record where the saga is, if it has a log. The step markers are
        the truth; the log only helps find unfinished sagas, so a failure to
        write it is logged and the saga goes on."""
        if self.log is None:
            return
        db = self._db(self.log)
        try:
            await db.execute(
                self._sql(db, self._log.set_state()), (state, step, error, self.name, key)
            )
        except Exception as exc:
            logger.warning("saga %r %r: cannot record state %r: %s", self.name, key, state, exc)
