"""Sagas, the pure part: steps, the context a step sees, what is worth a
retry, and the SQL of the step markers and of the saga log.

Each step database holds a marker table (``pgharbor_saga_steps``): one row
per (saga name, key, step), written *in the step's own transaction*, so the
row exists exactly when the step's effects do. That makes every step
idempotent (a retried or resumed step whose marker says ``applied`` is
skipped and returns its recorded result) and orders a step against its
compensation (a compensation that finds no marker leaves a ``cancelled``
one, so a late action can never apply after it). The optional saga log
(``pgharbor_sagas``, in one named database) records each saga's data and
direction, so a process that restarts finds the sagas it must resume or
compensate.

Statements use ``%s`` placeholders (turned into ``$n`` for asyncpg).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._policy.sqlstate import (
    is_disconnect,
    is_disconnect_message,
    is_retryable_transaction,
    is_transient,
    sqlstate_of,
)
from .errors import CommitOutcomeUnknown, ConfigError, ConnectionFailed, ConnectionLost, PoolError

__all__ = [
    "SagaContext",
    "SagaLog",
    "SagaResult",
    "Step",
    "StepMarkers",
    "dumps",
    "retryable",
    "setup_lock_key",
]

SagaState = Literal["running", "compensating", "done", "compensated", "failed"]


@dataclass(frozen=True, slots=True)
class SagaContext:
    """What a step's action or compensation is given besides its transaction.

    Attributes:
        name: the saga's name.
        key: this run's idempotency key.
        data: the input given to ``run`` (JSON values).
        results: the results of the steps completed before this one, by name.
        step: this step's name.
        result: in a compensation, what this step's action returned.
    """

    name: str
    key: str
    data: Any
    results: dict[str, Any]
    step: str
    result: Any = None


@dataclass(frozen=True, slots=True)
class Step:
    """One step: an action and its compensation, each run as one
    transaction on the database named ``database``."""

    name: str
    database: str
    action: Callable[..., Any]
    compensation: Callable[..., Any] | None


@dataclass(frozen=True, slots=True)
class SagaResult:
    """A saga that ran to its end: its key and each step's result, by name."""

    name: str
    key: str
    results: dict[str, Any] = field(default_factory=dict)


def dumps(value: Any, what: str) -> str:
    """``value`` as JSON text.

    Raises:
        TypeError: it is not JSON (the message says what it was for).
    """
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON (dict, list, str, number, bool, None): {exc}"
        ) from exc


def retryable(exc: BaseException) -> bool:
    """Whether a step's action that failed with ``exc`` is worth running
    again: the connection was lost (even at COMMIT: the step marker says
    whether it went in), no connection was available, or the server asks
    for a retry (serialization failure, deadlock, overload). A business
    error (a constraint, an exception the action raised) is not."""
    if isinstance(exc, CommitOutcomeUnknown | PoolError | ConnectionFailed | ConnectionLost):
        return True
    code = sqlstate_of(exc)
    if code is not None:
        return is_transient(code) or is_disconnect(code) or is_retryable_transaction(code)
    return is_disconnect_message(str(exc))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(schema: str | None, name: str) -> str:
    return _quote(name) if schema is None else f"{_quote(schema)}.{_quote(name)}"


def setup_lock_key(table: str) -> int:
    """A transaction lock key for creating ``table`` (concurrent ``CREATE
    TABLE IF NOT EXISTS`` can fail with a unique violation)."""
    digest = hashlib.sha256(f"pgharbor-saga:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class StepMarkers:
    """The statements on the step marker table of one database."""

    __slots__ = ("table",)

    def __init__(self, schema: str | None = None, name: str = "pgharbor_saga_steps") -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("table", "must be a non-empty string")
        self.table = _table(schema, name)

    def create(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            " saga text NOT NULL, key text NOT NULL, step text NOT NULL,"
            " state text NOT NULL CHECK (state IN ('applied', 'compensated', 'cancelled')),"
            " result jsonb, updated_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (saga, key, step))"
        )

    def claim(self, state: str) -> str:
        """Insert the marker unless one exists (waits for a concurrent one's
        transaction); 1 row if inserted. Parameters: saga, key, step."""
        return (
            f"INSERT INTO {self.table} (saga, key, step, state) VALUES (%s, %s, %s, '{state}')"
            " ON CONFLICT DO NOTHING"
        )

    def read(self) -> str:
        """State and result (JSON text), locked. Parameters: saga, key, step."""
        return (
            f"SELECT state, result::text FROM {self.table}"
            " WHERE saga = %s AND key = %s AND step = %s FOR UPDATE"
        )

    def set_result(self) -> str:
        """Parameters: result (JSON text), saga, key, step."""
        return (
            f"UPDATE {self.table} SET result = %s::jsonb, updated_at = now()"
            " WHERE saga = %s AND key = %s AND step = %s"
        )

    def compensated(self) -> str:
        """Parameters: saga, key, step."""
        return (
            f"UPDATE {self.table} SET state = 'compensated', updated_at = now()"
            " WHERE saga = %s AND key = %s AND step = %s"
        )


class SagaLog:
    """The statements on the saga log table."""

    __slots__ = ("table",)

    def __init__(self, schema: str | None = None, name: str = "pgharbor_sagas") -> None:
        self.table = _table(schema, name)

    def create(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            " saga text NOT NULL, key text NOT NULL,"
            " state text NOT NULL CHECK (state IN"
            " ('running', 'compensating', 'done', 'compensated', 'failed')),"
            " data jsonb, step text, error text,"
            " created_at timestamptz NOT NULL DEFAULT now(),"
            " updated_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (saga, key))"
        )

    def start(self) -> str:
        """Record a saga (keeping the first data given for its key). Returns
        its state and data. Parameters: saga, key, data (JSON text)."""
        return (
            f"INSERT INTO {self.table} AS s (saga, key, state, data)"
            " VALUES (%s, %s, 'running', %s::jsonb)"
            " ON CONFLICT (saga, key) DO UPDATE SET updated_at = now()"
            " RETURNING s.state, s.data::text"
        )

    def get(self) -> str:
        """State and data. Parameters: saga, key."""
        return f"SELECT state, data::text FROM {self.table} WHERE saga = %s AND key = %s"

    def set_state(self) -> str:
        """Parameters: state, step, error, saga, key."""
        return (
            f"UPDATE {self.table} SET state = %s, step = %s, error = %s, updated_at = now()"
            " WHERE saga = %s AND key = %s"
        )

    def unfinished(self) -> str:
        """Sagas not at an end, not touched for a while. Parameters: saga,
        seconds since the last update."""
        return (
            f"SELECT key, state, data::text, step FROM {self.table} WHERE saga = %s"
            " AND state IN ('running', 'compensating', 'failed')"
            " AND updated_at <= now() - make_interval(secs => %s) ORDER BY created_at"
        )
