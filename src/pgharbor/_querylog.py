"""Statement outcomes of a `Database`: counters, timings and the slow-query log.

Shared by both flavours (nothing here awaits). Each statement run through a
`Database` (outside or inside a transaction) is timed; its outcome feeds the
database's counters, the health window of the pool it ran on, and — when it
took at least ``slow_query`` seconds — a warning on the ``pgharbor.query``
logger with its duration, rows and statement (truncated; parameter values
only with ``log_parameters=True``, as they may hold personal data or secrets).
"""

from __future__ import annotations

import logging
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from ._policy.sqlstate import sqlstate_of

if TYPE_CHECKING:
    from ._typing import QueryStats

__all__ = ["QueryLog"]

logger = logging.getLogger("pgharbor.query")

#: Characters of a statement a slow-query line shows at most.
STATEMENT_CHARS: Final = 500
PARAMS_CHARS: Final = 200


def _rows(result: Any) -> int | None:
    """Rows a statement returned or affected, from what the driver returned."""
    if isinstance(result, list):
        return len(result)
    if isinstance(result, bool):
        return None
    if isinstance(result, int):
        return result
    return None


#: SQLSTATE classes that say something about the server or the connection (not
#: about the statement): connection exceptions, insufficient resources,
#: operator intervention, system errors, internal errors.
_SERVER_CLASSES: Final = frozenset({"08", "53", "57", "58", "XX"})


def server_fault(error: BaseException) -> bool:
    """Whether a statement's error reflects on the endpoint's health. A syntax
    error, a constraint violation or a serialization failure is the
    statement's business; a lost connection, a timeout or a shutdown is not."""
    code = sqlstate_of(error)
    if code is None:
        return True  # no server verdict: connection lost, client-side timeout...
    return code[:2] in _SERVER_CLASSES


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class QueryLog:
    """Counters and the slow-query log of one database."""

    __slots__ = ("_lock", "database", "errors", "log_parameters", "n", "n_slow", "slow", "total")

    def __init__(self, database: str, slow: float | None, log_parameters: bool) -> None:
        self.database = database
        self.slow = slow
        self.log_parameters = log_parameters
        self._lock = threading.Lock()
        self.n = 0
        self.errors = 0
        self.n_slow = 0
        self.total = 0.0

    def done(
        self,
        pool: Any,
        query: str,
        params: Any,
        started: float,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """A statement started at ``started`` finished (``error`` if it raised)."""
        seconds = monotonic() - started
        with self._lock:
            self.n += 1
            self.total += seconds
            if error is not None:
                self.errors += 1
        fault = None
        if error is not None and server_fault(error):
            fault = pool.connector.safe(error)
        pool.observation.query(seconds, error, fault)
        if self.slow is not None and seconds >= self.slow:
            with self._lock:
                self.n_slow += 1
            self._log_slow(pool, query, params, seconds, result, error)

    def _log_slow(
        self,
        pool: Any,
        query: str,
        params: Any,
        seconds: float,
        result: Any,
        error: BaseException | None,
    ) -> None:
        rows = _rows(result)
        outcome = (
            f"failed ({type(error).__name__})"
            if error is not None
            else ("ok" if rows is None else f"{rows} row{'s' if rows != 1 else ''}")
        )
        shown = ""
        if self.log_parameters and params is not None:
            shown = f" params={_clip(repr(params), PARAMS_CHARS)}"
        logger.warning(
            "database %r: slow query (%.0f ms, %s) on %s: %s%s",
            self.database,
            seconds * 1000.0,
            outcome,
            pool.name,
            _clip(query, STATEMENT_CHARS),
            shown,
        )

    def stats(self) -> QueryStats:
        """``queries``, ``queries_failed``, ``queries_slow``, ``query_ms``."""
        with self._lock:
            return {
                "queries": self.n,
                "queries_failed": self.errors,
                "queries_slow": self.n_slow,
                "query_ms": round(self.total * 1000.0, 3),
            }
