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
└── CommitOutcomeUnknown                  the connection was lost while COMMIT was in flight
```

Driver errors (psycopg, asyncpg, psycopg2) raised by the user's own queries pass
through untouched: pgharbor only adds errors for conditions it owns. To tell
them apart, the SQLSTATE classification the pool and the router use is here
too: `sqlstate_of` (reads psycopg's, asyncpg's and psycopg2's errors, walking
the chain), `is_disconnect`, `is_transient`, `is_retryable_transaction`,
`is_fatal_config`, `is_read_only`, `statement_did_not_run`.
"""

from __future__ import annotations

from typing import Any

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
    "CircuitOpen",
    "CommitOutcomeUnknown",
    "ConfigError",
    "ConnectionFailed",
    "GuardRefused",
    "HarborError",
    "InsufficientPrivileges",
    "NoAvailableServer",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
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
