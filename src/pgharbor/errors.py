"""The whole pgharbor error tree, and SQLSTATE classification shared by every layer.

```
HarborError(Exception)                    root of everything pgharbor raises
├── ConfigError(HarborError, ValueError)  a setting is invalid; names the field and the rule
├── PoolError(HarborError)                a pool condition (not a database error)
│   ├── PoolClosed                        the pool is closed (or closing)
│   ├── PoolTimeout(PoolError, TimeoutError)
│   │                                     no connection within the timeout; names the pool,
│   │                                     its counts and the last connect error (as __cause__)
│   ├── TooManyRequests                   the wait queue is full (max_waiting)
│   ├── CircuitOpen                       the endpoint's breaker is open; .retry_after seconds
│   └── NoAvailableServer                 no node can serve the requested role
├── ConnectionFailed(HarborError)         connecting failed; .reason says why
│   └── AuthenticationFailed              28xxx: wrong password, unknown role, no pg_hba entry
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

Driver errors (psycopg, asyncpg, psycopg2) raised by the user's own queries pass
through untouched: pgharbor only adds errors for conditions it owns. To tell
them apart, the SQLSTATE classification the pool and the router use is here
too: `sqlstate_of` (reads psycopg's, asyncpg's and psycopg2's errors, walking
the chain), `is_disconnect`, `is_transient`, `is_retryable_transaction`,
`is_fatal_config`, `is_read_only`, `statement_did_not_run`.
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
    "CircuitOpen",
    "CommitOutcomeUnknown",
    "ConfigError",
    "ConnectionFailed",
    "GuardRefused",
    "HarborError",
    "InsufficientPrivileges",
    "MigrationDrift",
    "MigrationError",
    "MigrationFailed",
    "MigrationLockTimeout",
    "NoAvailableServer",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "SagaCompensationFailed",
    "SagaError",
    "SagaFailed",
    "TooManyRequests",
    "UnsupportedServerVersion",
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


class PoolError(HarborError):
    """A pool condition: closed, exhausted, overloaded, or failing fast."""

    __module__ = "pgharbor"


class PoolClosed(PoolError):
    """The pool is closed, or was closed while the caller waited."""

    __module__ = "pgharbor"


class PoolTimeout(PoolError, TimeoutError):
    """No connection could be handed out within the timeout."""

    __module__ = "pgharbor"


class TooManyRequests(PoolError):
    """The pool's wait queue is full (``max_waiting``); raised at once."""

    __module__ = "pgharbor"


class CircuitOpen(PoolError):
    """The endpoint's circuit breaker is open: failing fast without connecting."""

    __module__ = "pgharbor"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoAvailableServer(PoolError):
    """No node of the database can serve the requested role right now."""

    __module__ = "pgharbor"


class ConnectionFailed(HarborError):
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
