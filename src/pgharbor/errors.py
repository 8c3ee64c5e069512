"""The whole pgharbor error tree, and SQLSTATE classification shared by every layer.

```
HarborError(Exception)                    root of everything pgharbor raises
├── ConfigError(HarborError, ValueError)  a setting is invalid; names the field and the rule
├── DatabaseUnavailable                   the database cannot serve the call now: retry later,
│   │                                     or answer 503 (also the base of the (U) classes below)
│   ├── ConnectionFailed                  connecting failed; .reason says why
│   │   └── AuthenticationFailed          28xxx: wrong password, unknown role, no pg_hba entry
│   └── ConnectionLost(DatabaseError, DatabaseUnavailable)
│                                         the connection was lost under a statement (class 08,
│                                         57P01-57P05, 25P03, or the driver saw it break)
├── PoolError(HarborError)                a pool condition (not a database error)
│   ├── PoolClosed                        the pool is closed (or closing)
│   ├── PoolTimeout(PoolError, DatabaseUnavailable, TimeoutError)          (U)
│   │                                     no connection within the timeout; names the pool,
│   │                                     its counts and the last connect error (as __cause__)
│   ├── TooManyRequests                   the wait queue is full (max_waiting)            (U)
│   ├── CircuitOpen                       the endpoint's breaker is open; .retry_after     (U)
│   └── NoAvailableServer                 no node can serve the requested role            (U)
├── DatabaseError                         a statement failed: .sqlstate, the driver's error
│   │                                     as __cause__ (raised by Database, see below)
│   ├── ConnectionLost                    (see above)
│   ├── DataError                         22xxx: a value the type refuses, division by zero...
│   ├── IntegrityError                    23xxx: a constraint refused the change
│   │   ├── NotNullViolation              23502
│   │   ├── ForeignKeyViolation           23503
│   │   ├── UniqueViolation               23505
│   │   ├── CheckViolation                23514
│   │   └── ExclusionViolation            23P01
│   ├── ReadOnlySqlTransaction            25006: a write on a standby or a read-only transaction
│   ├── TransactionRollback               40xxx: run the whole transaction again
│   │   ├── SerializationFailure          40001
│   │   └── DeadlockDetected              40P01
│   ├── ProgrammingError                  42xxx: syntax, unknown table or column, privilege
│   ├── LockNotAvailable                  55P03: lock_timeout, or NOWAIT met a lock
│   └── QueryCanceled                     57014: statement_timeout, pg_cancel_backend
├── UnsupportedServerVersion              the server is older than the supported minimum
├── InsufficientPrivileges                required privileges are missing; .missing lists them
├── GuardRefused                          untrusted SQL broke a guard rule; .rule names it
├── CommitOutcomeUnknown                  the connection was lost while COMMIT was in flight
├── MigrationError                        migrations cannot be loaded, planned or applied
│   ├── MigrationDrift                    an applied file changed or is gone, or one is out of order
│   ├── MigrationFailed                   a statement failed; names the file, line and statement
│   └── MigrationLockTimeout(MigrationError, TimeoutError)
│                                         another deployer held the migration lock too long
├── SagaError                             a saga could not complete; .key names it
│   ├── SagaFailed                        a step failed and the completed steps were compensated
│   └── SagaCompensationFailed            a compensation kept failing: the saga needs recovery
└── BatchError                            a chunked batch failed; .committed rows are in
```

**Statement errors, the same whatever the driver.** `Database` and
`AsyncDatabase` (their helpers — ``fetch``, ``execute``... — and their
transactions) raise a `DatabaseError` for an error the server sent (it has a
SQLSTATE) or a lost connection: the class from the table above (the exact
code first, then its two-character class, else `DatabaseError` itself),
with ``.sqlstate`` and the driver's error as ``__cause__``. The object
raised is *also* an instance of the driver's own class — a class made once
per pair, e.g. ``UniqueViolation`` under both `pgharbor.UniqueViolation` and
``psycopg.errors.UniqueViolation`` (``asyncpg.UniqueViolationError``,
``psycopg2.errors.UniqueViolation``) — carrying the driver's attributes
(``diag``, ``constraint_name``, ``pgcode``...). So ``except
pgharbor.UniqueViolation`` works with every driver, and code written
against one driver (``except psycopg.Error``) keeps working. Errors the
driver raises before sending (wrong number of parameters...) and the
``TimeoutError`` of a call's ``timeout=`` pass through as they are.

At the pool level (``pool.connection()``, ``db.connection()``), driver
errors pass through untouched: the connection is the driver's, and so are
its errors. To tell them apart, the SQLSTATE classification the pool and the
router use is here too: `sqlstate_of` (reads psycopg's, asyncpg's and
psycopg2's errors, walking the chain), `is_disconnect`, `is_transient`,
`is_retryable_transaction`, `is_fatal_config`, `is_read_only`,
`statement_did_not_run`; `error_class` maps a SQLSTATE to its class.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._policy.sqlstate import (
    is_disconnect,
    is_fatal_config,
    is_read_only,
    is_retryable_transaction,
    is_transient,
    sqlstate_of,
    statement_did_not_run,
)

__all__ = [
    "AuthenticationFailed",
    "BatchError",
    "CheckViolation",
    "CircuitOpen",
    "CommitOutcomeUnknown",
    "ConfigError",
    "ConnectionFailed",
    "ConnectionLost",
    "DataError",
    "DatabaseError",
    "DatabaseUnavailable",
    "DeadlockDetected",
    "ExclusionViolation",
    "ForeignKeyViolation",
    "GuardRefused",
    "HarborError",
    "InsufficientPrivileges",
    "IntegrityError",
    "LockNotAvailable",
    "MigrationDrift",
    "MigrationError",
    "MigrationFailed",
    "MigrationLockTimeout",
    "NoAvailableServer",
    "NotNullViolation",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "ProgrammingError",
    "QueryCanceled",
    "ReadOnlySqlTransaction",
    "SagaCompensationFailed",
    "SagaError",
    "SagaFailed",
    "SerializationFailure",
    "TooManyRequests",
    "TransactionRollback",
    "UniqueViolation",
    "UnsupportedServerVersion",
    "error_class",
    "is_disconnect",
    "is_fatal_config",
    "is_read_only",
    "is_retryable_transaction",
    "is_transient",
    "sqlstate_of",
    "statement_did_not_run",
]


E = TypeVar("E", bound=BaseException)


class HarborError(Exception):
    """Base class of every error pgharbor raises itself."""

    __module__ = "pgharbor"


class ConfigError(HarborError, ValueError):
    """A setting is invalid. Raised at construction; the message names the field."""

    __module__ = "pgharbor"

    def __init__(self, field: str, rule: str, value: Any = None) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class DatabaseUnavailable(HarborError):
    """The database cannot serve the call now: no connection could be had
    (connecting failed, the pool timed out or is overloaded, the breaker is
    open, no node has the role asked for) or the one in use was lost.

    Worth trying again later; a web service answers 503. A base class: what
    is raised is one of its subclasses (see the tree in `pgharbor.errors`).
    """

    __module__ = "pgharbor"


class PoolError(HarborError):
    """A pool condition: closed, exhausted, overloaded, or failing fast."""

    __module__ = "pgharbor"


class PoolClosed(PoolError):
    """The pool is closed, or was closed while the caller waited."""

    __module__ = "pgharbor"


class PoolTimeout(PoolError, DatabaseUnavailable, TimeoutError):
    """No connection could be handed out within the timeout."""

    __module__ = "pgharbor"


class TooManyRequests(PoolError, DatabaseUnavailable):
    """The pool's wait queue is full (``max_waiting``); raised at once."""

    __module__ = "pgharbor"


class CircuitOpen(PoolError, DatabaseUnavailable):
    """The endpoint's circuit breaker is open: failing fast without connecting."""

    __module__ = "pgharbor"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoAvailableServer(PoolError, DatabaseUnavailable):
    """No node of the database can serve the requested role right now."""

    __module__ = "pgharbor"


class ConnectionFailed(DatabaseUnavailable):
    """A connection attempt failed; ``reason`` classifies why.

    Reasons: ``network``, ``dns``, ``tls``, ``auth``, ``database-missing``,
    ``server-starting``, ``too-many-connections``, ``timeout``, ``protocol``,
    ``unknown``.
    """

    __module__ = "pgharbor"

    def __init__(self, message: str, reason: str = "unknown") -> None:
        super().__init__(message)
        self.reason = reason


class AuthenticationFailed(ConnectionFailed):
    """The server rejected the credentials (SQLSTATE class 28). Never retried blindly."""

    __module__ = "pgharbor"

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="auth")


class DatabaseError(HarborError):
    """A statement failed (see "Statement errors" in `pgharbor.errors`).

    ``sqlstate`` is the code the server sent (None for a connection the
    client saw break); the driver's error is ``__cause__``, and the object
    raised by `Database` is also an instance of the driver's own class.
    """

    __module__ = "pgharbor"
    sqlstate: str | None

    def __init__(self, message: str = "", sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ConnectionLost(DatabaseError, DatabaseUnavailable):
    """The connection was lost under a statement: the server ended the
    session (a restart, ``pg_terminate_backend``, a timeout) or the network
    failed. The statement may or may not have run (see ``idempotent=``)."""

    __module__ = "pgharbor"


class DataError(DatabaseError):
    """22xxx: a value its type refuses, a number out of range, division by zero."""

    __module__ = "pgharbor"


class IntegrityError(DatabaseError):
    """23xxx: a constraint refused the change."""

    __module__ = "pgharbor"


class NotNullViolation(IntegrityError):
    """23502: NULL in a NOT NULL column."""

    __module__ = "pgharbor"


class ForeignKeyViolation(IntegrityError):
    """23503: a reference to a row that does not exist, or to a row still referenced."""

    __module__ = "pgharbor"


class UniqueViolation(IntegrityError):
    """23505: a duplicate key."""

    __module__ = "pgharbor"


class CheckViolation(IntegrityError):
    """23514: a CHECK constraint failed."""

    __module__ = "pgharbor"


class ExclusionViolation(IntegrityError):
    """23P01: an exclusion constraint failed."""

    __module__ = "pgharbor"


class ReadOnlySqlTransaction(DatabaseError):
    """25006: a write on a standby, or in a read-only transaction."""

    __module__ = "pgharbor"


class TransactionRollback(DatabaseError):
    """40xxx: the server rolled the transaction back; running the whole
    transaction again may succeed (`Database.run_transaction` does)."""

    __module__ = "pgharbor"


class SerializationFailure(TransactionRollback):
    """40001: concurrent transactions could not be serialized."""

    __module__ = "pgharbor"


class DeadlockDetected(TransactionRollback):
    """40P01: this transaction was chosen to end a deadlock."""

    __module__ = "pgharbor"


class ProgrammingError(DatabaseError):
    """42xxx: a syntax error, an unknown table or column, a missing privilege."""

    __module__ = "pgharbor"


class LockNotAvailable(DatabaseError):
    """55P03: a lock could not be had (``lock_timeout``, or ``NOWAIT``)."""

    __module__ = "pgharbor"


class QueryCanceled(DatabaseError):
    """57014: the server cancelled the statement (``statement_timeout``,
    ``pg_cancel_backend``). A call's own ``timeout=`` raises ``TimeoutError``."""

    __module__ = "pgharbor"


_BY_CODE: dict[str, type[DatabaseError]] = {
    "23502": NotNullViolation,
    "23503": ForeignKeyViolation,
    "23505": UniqueViolation,
    "23514": CheckViolation,
    "23P01": ExclusionViolation,
    "25006": ReadOnlySqlTransaction,
    "40001": SerializationFailure,
    "40P01": DeadlockDetected,
    "55P03": LockNotAvailable,
    "57014": QueryCanceled,
}
_BY_CLASS: dict[str, type[DatabaseError]] = {
    "22": DataError,
    "23": IntegrityError,
    "40": TransactionRollback,
    "42": ProgrammingError,
}


def error_class(sqlstate: str | None) -> type[DatabaseError]:
    """The `DatabaseError` class for a SQLSTATE: the code's own, else its
    class's (the first two characters), else `DatabaseError`. Lost
    connections (class 08, 57P01...) are `ConnectionLost`."""
    if sqlstate is None:
        return DatabaseError
    if is_disconnect(sqlstate):
        return ConnectionLost
    return _BY_CODE.get(sqlstate) or _BY_CLASS.get(sqlstate[:2], DatabaseError)


class UnsupportedServerVersion(HarborError):
    """The server is older than the minimum supported version."""

    __module__ = "pgharbor"


class InsufficientPrivileges(HarborError):
    """The connected role lacks required privileges; ``missing`` lists them."""

    __module__ = "pgharbor"

    def __init__(self, message: str, missing: list[Any] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])


class CommitOutcomeUnknown(HarborError):
    """The connection was lost while COMMIT was in flight: it may or may not have
    been applied. Never retried automatically."""

    __module__ = "pgharbor"


def fresh_copy(error: E) -> E:
    """A new exception equal to ``error`` (same class, message and
    attributes), caused by it, to raise in its place.

    Raising a stored exception object again appends the raiser's frames to
    its traceback: a pool that re-raised its last connect error at every
    call grew it without bound (two frames a call).
    """
    cls = type(error)
    new = cls.__new__(cls)
    new.args = error.args
    new.__dict__.update(error.__dict__)
    new.__cause__ = error
    new.__suppress_context__ = True
    return new


class MigrationError(HarborError):
    """Migrations cannot be loaded (a bad file name, SQL the parser rejects),
    planned (an earlier run failed halfway) or applied."""

    __module__ = "pgharbor"


class MigrationDrift(MigrationError):
    """The history and the files disagree: an applied file was edited (its
    checksum changed) or removed, or a pending one is older than the newest
    applied. Refused unless the caller allows it (``allow_drift``,
    ``out_of_order``) or accepts the files as they are (``repair``)."""

    __module__ = "pgharbor"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class MigrationFailed(MigrationError):
    """A statement of a migration failed (the driver's error is the cause).

    ``file`` and ``line`` say where the statement (or, when the server says,
    the failing part of it) is; ``applied_version`` is the version the
    database is at now. ``partial`` is True when the migration ran outside a
    transaction and some of its statements are in: the history keeps it as
    failed until ``repair``.
    """

    __module__ = "pgharbor"

    def __init__(
        self,
        message: str,
        *,
        version: int,
        file: str,
        line: int,
        statement: str,
        applied_version: int | None,
        partial: bool = False,
    ) -> None:
        super().__init__(message)
        self.version = version
        self.file = file
        self.line = line
        self.statement = statement
        self.applied_version = applied_version
        self.partial = partial


class MigrationLockTimeout(MigrationError, TimeoutError):
    """The migration lock stayed held by another session for longer than
    ``lock_timeout``; the message names who holds it when the server says."""

    __module__ = "pgharbor"


class SagaError(HarborError):
    """A saga could not run to its end; ``key`` is its idempotency key."""

    __module__ = "pgharbor"

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class SagaFailed(SagaError):
    """A step failed (the cause) and every completed step was compensated:
    the saga had no lasting effect. ``step`` names the step that failed."""

    __module__ = "pgharbor"

    def __init__(self, message: str, key: str, step: str) -> None:
        super().__init__(message, key)
        self.step = step


class SagaCompensationFailed(SagaError):
    """A compensation still failed after its retries: some effects remain.
    The saga stays recorded as compensating; ``compensate(key)`` (or
    ``recover()`` with a saga log) carries on later. ``step`` names the step
    whose compensation failed (the cause)."""

    __module__ = "pgharbor"

    def __init__(self, message: str, key: str, step: str) -> None:
        super().__init__(message, key)
        self.step = step


class BatchError(HarborError):
    """A chunked batch failed (the cause). ``committed`` items were committed
    before the failure (0 when the batch ran as one transaction); ``done``
    were sent, including those of a rolled-back transaction."""

    __module__ = "pgharbor"

    def __init__(self, message: str, *, committed: int, done: int) -> None:
        super().__init__(message)
        self.committed = committed
        self.done = done


class GuardRefused(HarborError):
    """A `pgharbor.Guard` refused a statement before it reached the server.

    ``rule`` names the rule it broke (``one-statement``, ``statement-kind``,
    ``transaction-control``, ``session-change``, ``function``, ``locking``...,
    see docs/untrusted-sql.md); the message says what was found. Nothing was
    sent to the server.
    """

    __module__ = "pgharbor"

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"refused by the guard ({rule}): {message}")
        self.rule = rule
