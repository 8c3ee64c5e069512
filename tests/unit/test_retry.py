"""The retry policy: what is tried again, how often, how late."""

from __future__ import annotations

import pytest

from pgharbor import Backoff, CommitOutcomeUnknown, ConfigError, RetryPolicy


class PgError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


POLICY = RetryPolicy(max_attempts=3, backoff=Backoff(initial=0.1, jitter=0.0), max_elapsed=5.0)


@pytest.mark.parametrize(
    ("error", "idempotent", "retried"),
    [
        # 57P01 is also what a running statement gets from pg_terminate_backend.
        (PgError("terminating connection due to administrator command", "57P01"), False, False),
        (PgError("terminating connection due to administrator command", "57P01"), True, True),
        (PgError("the connection is closed"), False, True),
        (PgError("server closed the connection unexpectedly"), False, False),
        (PgError("server closed the connection unexpectedly"), True, True),
        (PgError("sorry, too many clients already", "53300"), True, True),
        (PgError("connection failure", "08006"), True, True),
        (PgError("password authentication failed", "28P01"), True, False),
        (PgError("database does not exist", "3D000"), True, False),
        (PgError("syntax error", "42601"), True, False),
        (PgError("duplicate key", "23505"), True, False),
        (PgError("division by zero", "22012"), True, False),
        (PgError("statement timeout", "57014"), True, False),
    ],
)
def test_statement_rules(error: Exception, idempotent: bool, retried: bool) -> None:
    """Statements: resent when the driver refused to send them; when lost or
    ended by the server, only if idempotent; never for errors a retry cannot fix."""
    delay = POLICY.statement(1, 0.0, error, idempotent=idempotent, rand=0.5)
    assert (delay is not None) is retried


def test_did_not_run_is_resent_at_once_then_backs_off() -> None:
    """The first resend of a statement that was never sent is immediate."""
    error = PgError("the connection is closed")
    assert POLICY.statement(1, 0.0, error, idempotent=False, rand=0.5) == 0.0
    assert POLICY.statement(2, 0.0, error, idempotent=False, rand=0.5) == pytest.approx(0.2)
    assert POLICY.statement(3, 0.0, error, idempotent=False, rand=0.5) is None  # max_attempts


def test_transactions_retry_serialization_and_deadlock_only() -> None:
    """Whole transactions: 40001 and 40P01 (bounded), never an unknown commit."""
    assert POLICY.transaction(1, 0.0, PgError("could not serialize", "40001"), 0.5) is not None
    assert POLICY.transaction(2, 0.0, PgError("deadlock detected", "40P01"), 0.5) is not None
    assert POLICY.transaction(3, 0.0, PgError("deadlock detected", "40P01"), 0.5) is None
    assert POLICY.transaction(1, 0.0, CommitOutcomeUnknown("lost"), 0.5) is None
    assert POLICY.transaction(1, 0.0, PgError("duplicate key", "23505"), 0.5) is None
    assert POLICY.transaction(1, 4.95, PgError("could not serialize", "40001"), 0.5) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"max_elapsed": -1.0},
        {"max_elapsed": float("inf")},
    ],
)
def test_bad_policy(kwargs: dict[str, object]) -> None:
    """Retry nonsense fails with the field named (B29)."""
    with pytest.raises(ConfigError, match="retry"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
