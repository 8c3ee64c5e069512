"""When to run a failed statement or transaction again: one pure policy.

The rules (reliability study, G13):

- **never** on errors a retry cannot fix: authentication and authorization
  (28xxx, 42501), unknown database (3D000), syntax and other SQL errors
  (42xxx), data (22xxx) and integrity (23xxx) errors;
- a **statement** outside a transaction: when it provably never reached the
  server (the driver refused to send it — `statement_did_not_run`), always;
  when the connection was lost or the server ended the session or is
  overloaded (08xxx, 57P0x, 53300) only if the caller marked it
  ``idempotent``, since it may have run (a DBA's ``pg_terminate_backend``
  gives a running statement 57P01 too);
- a statement **inside** a transaction: never (the transaction is gone);
- a whole **transaction** (`run_transaction`): on serialization failures and
  deadlocks (40001, 40P01), and when its first statement did not run;
  ``CommitOutcomeUnknown`` never.

Attempts are bounded by ``max_attempts`` (the first included) and by
``max_elapsed`` seconds; delays follow a `Backoff`. Connecting and acquiring
are retried by the pool itself, in the background.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CommitOutcomeUnknown
from .backoff import Backoff
from .sqlstate import (
    is_disconnect,
    is_disconnect_message,
    is_retryable_transaction,
    is_transient,
    sqlstate_of,
    statement_did_not_run,
)
from .validate import count, seconds

__all__ = ["RetryPolicy"]

_NEVER_CLASSES = ("28", "3D", "42", "22", "23")


def _never(code: str | None) -> bool:
    return code is not None and code.startswith(_NEVER_CLASSES)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late to try again.

    Args:
        max_attempts: tries in total, the first included (≥ 1).
        backoff: the delay schedule between tries.
        max_elapsed: give up once this many seconds have passed since the
            first try (None: no bound but ``max_attempts``).
    """

    max_attempts: int = 3
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.05, max_delay=2.0))
    max_elapsed: float | None = 30.0

    def __post_init__(self) -> None:
        count("retry.max_attempts", self.max_attempts, 1)
        seconds("retry.max_elapsed", self.max_elapsed, optional=True, positive=True)

    def statement(
        self, attempt: int, elapsed: float, error: BaseException, *, idempotent: bool, rand: float
    ) -> float | None:
        """Delay before trying a statement (outside a transaction) again after
        its ``attempt``-th try failed with ``error``; None: do not."""
        code = sqlstate_of(error)
        if _never(code):
            return None
        if statement_did_not_run(error):
            # It did not run: resend at once, on another connection.
            return self._delay(attempt, elapsed, rand, first_free=True)
        if idempotent and (
            is_transient(code) or is_disconnect(code) or is_disconnect_message(str(error))
        ):
            return self._delay(attempt, elapsed, rand)
        return None

    def transaction(
        self, attempt: int, elapsed: float, error: BaseException, rand: float
    ) -> float | None:
        """Delay before re-running a whole transaction; None: do not."""
        if isinstance(error, CommitOutcomeUnknown):
            return None
        code = sqlstate_of(error)
        if is_retryable_transaction(code) or statement_did_not_run(error):
            return self._delay(attempt, elapsed, rand)
        return None

    def _delay(
        self, attempt: int, elapsed: float, rand: float, first_free: bool = False
    ) -> float | None:
        if attempt >= self.max_attempts:
            return None
        delay = 0.0 if first_free and attempt == 1 else self.backoff.delay(attempt - 1, rand)
        if self.max_elapsed is not None and elapsed + delay > self.max_elapsed:
            return None
        return delay
