"""What the soak's clients share: settings, the ledger, error classes, budgets.

Every client records into one `Recorder` (threads and the event-loop thread
alike, under one lock): each acknowledged write by its unique key, each
failed one with the error it raised, every success time per worker (the
recovery figures come from these), the duration of every pgharbor call that
overran its budget, and every error by fault and by class.

Error classes are what docs/pool.md and docs/database.md say a caller may
see: pgharbor's pool conditions (`PoolTimeout`, `CircuitOpen`,
`TooManyRequests`), `CommitOutcomeUnknown`, `ConnectionLost` (what a
`Database` raises for a lost connection, whatever the driver), `TimeoutError` (a statement's
``timeout=``), and the driver's own errors for a lost connection or a server
going away (SQLSTATE classes 08, 57 and 53, or no SQLSTATE and a lost-connection
message). Anything else is *undocumented*.
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from pgharbor._policy.sqlstate import is_disconnect_message
from pgharbor.errors import (
    CircuitOpen,
    CommitOutcomeUnknown,
    ConnectionLost,
    HarborError,
    PoolTimeout,
    TooManyRequests,
    sqlstate_of,
)
from pgharbor.facts import to_dollar

#: Seconds of timing slack on a small shared machine; CI sets 2.
SLACK = float(os.environ.get("PGHARBOR_TIMING_SLACK", "1.0"))
#: Acquire timeout of every pool, and the ``timeout=`` of every statement.
ACQUIRE = 2.0
STATEMENT = 2.0
#: The pools' ``check_timeout`` (bounds the rollback on return).
CHECK_TIMEOUT = 2.0
#: libpq's minimum: a connect into a blackhole gives up after this.
CONNECT_TIMEOUT = 2
#: Per client: ``min_size = max_size = POOL_SIZE``, served to ``WORKERS`` workers,
#: so callers queue for connections all the time.
POOL_SIZE = 2
WORKERS = 3
#: A write sleeps this long server-side this often, so that faults meet
#: statements that are running, not only idle connections.
SLOW_WRITE = 0.1
SLOW_WRITE_SHARE = 0.15
#: A worker's pause after a successful operation is up to this (uniform).
THINK = 0.01
#: A worker's pause after a failed operation (the recovery figures' resolution).
ERROR_PAUSE = 0.02
#: A call may take its budget plus this (times SLACK).
OVERRUN = 1.0

SCHEMA = """
CREATE TABLE ledger (
    key bigint NOT NULL,
    client text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ledger_key ON ledger (key);
CREATE FUNCTION soak_write(k bigint, c text, pause float8) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    -- Logged even if the transaction is rolled back: the server log counts
    -- how often each key's statement ran, the table how often it committed.
    RAISE LOG 'soak-exec %', k;
    IF pause > 0 THEN
        PERFORM pg_sleep(pause);
    END IF;
    INSERT INTO ledger (key, client) VALUES (k, c);
    RETURN k;
END
$$;
"""
WRITE = "SELECT soak_write(%s, %s, %s)"
READ = "SELECT count(*) FROM ledger WHERE key = %s"

#: Errors raised before anything was sent: the key must not be in the ledger.
NOT_SENT = (PoolTimeout, CircuitOpen, TooManyRequests)


@dataclass(frozen=True)
class ClientSpec:
    """One pool or database under test, and how it reaches the server."""

    name: str  # e.g. "Database/psycopg"
    kind: str  # "Pool" or "Database"
    driver: str
    is_async: bool
    via_proxy: bool
    app: str  # its application_name: the server counts its sessions

    def sql(self, text: str) -> str:
        """``text`` (written with ``%s``) in the driver's placeholder style."""
        return to_dollar(text) if self.driver == "asyncpg" else text


def classify(exc: BaseException) -> tuple[str, bool]:
    """A label for ``exc`` (type and SQLSTATE) and whether a caller may see it."""
    code = sqlstate_of(exc)
    kind = type(exc)
    label = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    if code:
        label += f"[{code}]"
    if isinstance(
        exc, PoolTimeout | CircuitOpen | TooManyRequests | CommitOutcomeUnknown | ConnectionLost
    ):
        return label, True  # ConnectionLost: a Database's lost connection, whatever the driver
    if isinstance(exc, HarborError):
        return label, False  # PoolClosed, ConnectionFailed, ...: not in a soak
    if kind is TimeoutError:
        return label, True
    if code is not None:
        return label, code[:2] in ("08", "57", "53")
    module = kind.__module__.partition(".")[0]
    if module in ("psycopg", "psycopg2", "asyncpg"):
        if kind.__name__ == "ConnectionDoesNotExistError":
            return label, True  # asyncpg: lost in the middle of an operation
        return label, is_disconnect_message(str(exc))
    return label, False


@dataclass
class Overrun:
    """A pgharbor call that took longer than its budget (+ OVERRUN x SLACK)."""

    client: str
    call: str
    seconds: float
    budget: float
    phase: str
    outcome: str


@dataclass
class Recorder:
    """Everything the clients saw; thread-safe."""

    phase: str = "warm-up"  # the fault under way (or recovering from)
    keys: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    acked: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    unknown: set[int] = field(default_factory=set)  # CommitOutcomeUnknown
    failed: dict[int, str] = field(default_factory=dict)  # key -> error label
    failed_where: dict[int, str] = field(default_factory=dict)  # key -> client, op, phase
    not_sent: set[int] = field(default_factory=set)  # failed with a pool error
    pairs: list[tuple[int, int]] = field(default_factory=list)  # keys of one transaction
    successes: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    undocumented: list[tuple[str, str, str]] = field(default_factory=list)
    overruns: list[Overrun] = field(default_factory=list)
    slowest: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    reads_missing: list[tuple[str, int, int, str]] = field(default_factory=list)
    checkout: list[tuple[str, str, str]] = field(default_factory=list)
    sizes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)  # stats after quiescing
    lock: threading.Lock = field(default_factory=threading.Lock)

    def key(self) -> int:
        """A fresh ledger key (unique across clients)."""
        with self.lock:
            return next(self.keys)

    def success(self, spec: ClientSpec, worker: int, op: str) -> None:
        now = monotonic()
        with self.lock:
            self.successes[spec.name, worker].append(now)
            self.ops[op] += 1

    def ack(self, spec: ClientSpec, *keys: int) -> None:
        with self.lock:
            self.acked[spec.name].extend(keys)

    def acked_key(self, spec: ClientSpec, pick: float) -> int | None:
        """An acknowledged key of this client (``pick`` in [0, 1) chooses)."""
        with self.lock:
            keys = self.acked[spec.name]
            return keys[int(pick * len(keys))] if keys else None

    def fail(
        self, spec: ClientSpec, exc: BaseException, keys: tuple[int, ...] = (), op: str = ""
    ) -> None:
        label, allowed = classify(exc)
        with self.lock:
            self.errors[self.phase][f"{spec.name}: {label}"] += 1
            if not allowed:
                self.undocumented.append((spec.name, self.phase, f"{label}: {exc}"[:300]))
            for k in keys:
                if isinstance(exc, CommitOutcomeUnknown):
                    self.unknown.add(k)
                else:
                    self.failed[k] = label
                    self.failed_where[k] = f"{spec.name} {op} in {self.phase}"
                    if isinstance(exc, NOT_SENT):
                        self.not_sent.add(k)

    def timed(
        self, spec: ClientSpec, call: str, seconds: float, budget: float, outcome: str
    ) -> None:
        """Record a call's duration against its budget."""
        name = f"{spec.name} {call}"
        with self.lock:
            if seconds > self.slowest[name]:
                self.slowest[name] = seconds
            if seconds > budget + OVERRUN * SLACK:
                self.overruns.append(Overrun(spec.name, call, seconds, budget, self.phase, outcome))

    def read_missing(self, spec: ClientSpec, key: int, count: int) -> None:
        with self.lock:
            self.reads_missing.append((spec.name, key, count, self.phase))

    def bad_checkout(self, spec: ClientSpec, what: str) -> None:
        with self.lock:
            self.checkout.append((spec.name, what, self.phase))

    def bad_sizes(self, spec: ClientSpec, stats: Mapping[str, Any]) -> None:
        with self.lock:
            if len(self.sizes) < 100:
                self.sizes.append((spec.name, self.phase, dict(stats)))

    def first_success(self, spec: ClientSpec, since: float) -> float | None:
        """When any worker of ``spec`` first succeeded at or after ``since``."""
        best: float | None = None
        with self.lock:
            lists = [v for (name, _), v in self.successes.items() if name == spec.name]
            for times in lists:
                i = bisect.bisect_left(times, since)  # each worker's list is in order
                if i < len(times) and (best is None or times[i] < best):
                    best = times[i]
        return best


def sizes_ok(stats: Mapping[str, Any]) -> bool:
    """The pool's counts are consistent and within its bounds."""
    size, idle, in_use = stats["size"], stats["idle"], stats["in_use"]
    connecting, waiting = stats["connecting"], stats["waiting"]
    return bool(
        min(size, idle, in_use, connecting, waiting) >= 0
        and size + connecting <= stats["max_size"]
        and idle + in_use <= size
    )
