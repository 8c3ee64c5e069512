"""Types of the public signatures: native connections per driver, keyword
arguments, stats.

- ``ConnT``: the native connection type a `Pool`, `AsyncPool`, `Database` or
  `AsyncDatabase` lends. The constructors' overloads pick it from ``driver=``
  (``"psycopg"`` -> ``psycopg.AsyncConnection[tuple[Any, ...]]`` ...); it
  defaults to ``Any``, so a bare ``AsyncPool`` annotation stays valid.
- The keyword TypedDicts (`AsyncPoolKwargs`, `AsyncDatabaseKwargs` and their
  sync twins) spell every setting the constructors take, so that a type
  checker refuses a misspelt one. At run time the same keys decide what
  `AsyncDatabase` accepts (`check_database_kwargs`): a misspelt setting is a
  `ConfigError` naming the class and the setting meant. The database keys
  mirror `pgharbor.config.DatabaseSettings` (a unit test keeps them equal).
- `PoolStats`, `QueryStats`, `DatabaseStats`: what ``stats()`` returns.

Driver modules are imported for type checkers only: nothing here imports
asyncpg or psycopg2 at run time.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from typing_extensions import TypeVar

from .errors import ConfigError

if TYPE_CHECKING:
    import asyncpg
    import psycopg
    import psycopg2.extensions
    from pydantic import SecretStr

    from ._acompat import AStrFactory, StrFactory
    from ._config.database import AutoscaleSettings, BreakerSettings, RetrySettings
    from ._policy.autoscale import Autoscale
    from ._policy.backoff import Backoff
    from ._policy.breaker import BreakerOptions
    from ._policy.health import Alerts, HealthThresholds
    from ._policy.retry import RetryPolicy
    from .guard import Guard

    #: The connections each driver lends (psycopg's default row factory: tuples).
    AsyncPsycopgConn = psycopg.AsyncConnection[tuple[Any, ...]]
    PsycopgConn = psycopg.Connection[tuple[Any, ...]]
    AsyncpgConn = asyncpg.Connection
    Psycopg2Conn = psycopg2.extensions.connection

__all__ = [
    "AsyncDatabaseHooks",
    "AsyncDatabaseKwargs",
    "AsyncPoolKwargs",
    "ConnT",
    "DatabaseHooks",
    "DatabaseKwargs",
    "DatabaseStats",
    "PoolKwargs",
    "PoolStats",
    "QueryStats",
    "check_database_kwargs",
]

#: The native connection type lent by a pool or database (Any unless known).
ConnT = TypeVar("ConnT", default=Any)

Callback = Callable[[Any], Any]
Reset = Literal["rollback", "session", "discard"]


# -- pools ------------------------------------------------------------------------


class _PoolKwargs(TypedDict, total=False):
    """`AsyncPool` / `Pool` settings but ``conninfo``, ``driver`` and ``password``."""

    name: str | None
    min_size: int
    max_size: int | None
    timeout: float
    max_waiting: int
    max_lifetime: float | None
    max_idle: float | None
    max_uses: int | None
    check_window: float
    check_timeout: float
    keepalive: float | None
    leak_threshold: float | None
    connect_timeout: float
    reconnect_timeout: float
    backoff: Backoff | None
    kwargs: dict[str, Any] | None
    configure: Callback | None
    reset: Reset | Callback | None
    reconnect_failed: Callback | None
    prepared_statements: bool
    minimum_version: int | None
    breaker: BreakerOptions | bool | None
    autoscale: Autoscale | bool | None
    metrics: Any
    health: HealthThresholds | None
    alerts: Alerts | None
    labels: Mapping[str, str] | None


class AsyncPoolKwargs(_PoolKwargs, total=False):
    """The keyword settings of `AsyncPool` (but ``driver``)."""

    password: str | AStrFactory | None


class PoolKwargs(_PoolKwargs, total=False):
    """The keyword settings of `Pool` (but ``driver``)."""

    password: str | StrFactory | None


# -- databases --------------------------------------------------------------------


class _DatabaseHooks(TypedDict, total=False):
    """What `AsyncDatabase` passes to its pools as is: callbacks and objects
    that are not settings (see `AsyncPool`)."""

    backoff: Backoff | None
    kwargs: dict[str, Any] | None
    configure: Callback | None
    reset: Reset | Callback | None
    reconnect_failed: Callback | None
    prepared_statements: bool
    metrics: Any
    health: HealthThresholds | None
    alerts: Alerts | None
    labels: Mapping[str, str] | None


class AsyncDatabaseHooks(_DatabaseHooks, total=False):
    """What `AsyncDatabase` takes beside ``settings=``: the pools' callbacks
    and objects, a password callable, a `RetryPolicy`."""

    password: AStrFactory
    retry: RetryPolicy


class DatabaseHooks(_DatabaseHooks, total=False):
    """What `Database` takes beside ``settings=`` (see `AsyncDatabaseHooks`)."""

    password: StrFactory
    retry: RetryPolicy


class _DatabaseFields(TypedDict, total=False):
    """The fields of `pgharbor.config.DatabaseSettings` as Python callers give
    them, but ``driver`` (an overload's own parameter), ``password`` and
    ``retry`` (wider in each flavour)."""

    # -- endpoint
    url: str | SecretStr | None
    host: str | None
    port: str | int | None
    dbname: str | None
    user: str | None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None
    sslrootcert: str | None
    sslcert: str | None
    sslkey: str | None
    service: str | None
    target_session_attrs: (
        Literal["any", "read-write", "read-only", "primary", "standby", "prefer-standby"] | None
    )
    connect_timeout: float | None
    ignore_libpq_env: bool
    # -- topology
    primary: str | SecretStr | None
    replicas: Sequence[str | SecretStr]
    reads: Literal["primary", "replica", "any"]
    probe_interval: float
    probe_timeout: float
    max_replica_lag: float | None
    max_replica_lag_bytes: int | None
    fallback_to_primary: bool
    ban_time: float
    read_your_writes: float | None
    balance: Literal["round_robin", "least_busy"]
    # -- session settings: seconds, or a PostgreSQL duration ("250ms")
    application_name: str
    statement_timeout: float | str | None
    lock_timeout: float | str | None
    idle_in_transaction_session_timeout: float | str | None
    search_path: str | Sequence[str] | None
    timezone: str | None
    default_transaction_isolation: (
        Literal["read committed", "repeatable read", "serializable"] | None
    )
    client_encoding: str | None
    server_settings: Mapping[str, str | int | float | bool]
    # -- pool
    min_size: int | None
    max_size: int | None
    timeout: float
    max_waiting: int
    max_lifetime: float | None
    max_idle: float | None
    max_uses: int | None
    check_window: float
    check_timeout: float
    keepalive: float | None
    leak_threshold: float | None
    reconnect_timeout: float
    pgbouncer: bool
    pgbouncer_prepared_statements: bool
    minimum_version: int
    breaker: BreakerSettings | Mapping[str, Any]
    autoscale: AutoscaleSettings | Autoscale | Mapping[str, Any] | bool | None
    # -- untrusted SQL
    guard: Guard | Mapping[str, Any] | None
    # -- observability
    slow_query: float | None
    log_parameters: bool


class AsyncDatabaseKwargs(_DatabaseFields, _DatabaseHooks, total=False):
    """The keyword settings of `AsyncDatabase` (but ``name`` and ``driver``):
    every `pgharbor.config.DatabaseSettings` field and the pools' callbacks."""

    password: str | SecretStr | AStrFactory | None
    retry: RetrySettings | Mapping[str, Any] | RetryPolicy


class DatabaseKwargs(_DatabaseFields, _DatabaseHooks, total=False):
    """The keyword settings of `Database` (see `AsyncDatabaseKwargs`)."""

    password: str | SecretStr | StrFactory | None
    retry: RetrySettings | Mapping[str, Any] | RetryPolicy


#: Every keyword `AsyncDatabase` / `Database` takes beside ``name`` and ``settings``.
DATABASE_KEYS = frozenset({"driver", *AsyncDatabaseKwargs.__annotations__})
#: Those that go to the pools as they are (not `DatabaseSettings` fields).
DATABASE_HOOKS = frozenset(_DatabaseHooks.__annotations__)


def check_database_kwargs(owner: str, options: Mapping[str, Any]) -> None:
    """Refuse a keyword ``owner`` (``"Database"``...) does not take, at once.

    Raises:
        ConfigError: naming the keyword, ``owner`` and the setting it is
            closest to.
    """
    for key in options:
        if key not in DATABASE_KEYS:
            close = difflib.get_close_matches(key, sorted(DATABASE_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(key, f"unknown setting of {owner}{hint}")


# -- stats ------------------------------------------------------------------------


class PoolStats(TypedDict):
    """What `AsyncPool.stats` / `Pool.stats` returns: sizes, counters, times in
    milliseconds (see docs/observability.md)."""

    size: int
    idle: int
    in_use: int
    connecting: int
    waiting: int
    min_size: int
    max_size: int
    target_size: int
    acquired: int
    waited: int
    wait_ms: float
    wait_p50_ms: float
    wait_p99_ms: float
    usage_ms: float
    timeouts: int
    rejected: int
    connections_created: int
    connect_ms: float
    connections_failed: int
    connections_lost: int
    connections_expired: int
    checks: int
    checks_failed: int
    leaks: int
    breaker_open: int
    breaker_opened: int
    # An autoscaled pool's (see pgharbor._policy.autoscale).
    autoscale_demand: NotRequired[float]
    autoscale_wait_p99_ms: NotRequired[float]
    autoscale_cap: NotRequired[int]
    autoscale_resizes: NotRequired[int]


class QueryStats(TypedDict):
    """A database's statement counters."""

    queries: int
    queries_failed: int
    queries_slow: int
    query_ms: float


class DatabaseStats(QueryStats):
    """What `AsyncDatabase.stats` / `Database.stats` returns: the statement
    counters, and the stats of the pool writes go to — every `PoolStats`
    key, absent only while a database with replicas has no primary."""

    size: NotRequired[int]
    idle: NotRequired[int]
    in_use: NotRequired[int]
    connecting: NotRequired[int]
    waiting: NotRequired[int]
    min_size: NotRequired[int]
    max_size: NotRequired[int]
    target_size: NotRequired[int]
    acquired: NotRequired[int]
    waited: NotRequired[int]
    wait_ms: NotRequired[float]
    wait_p50_ms: NotRequired[float]
    wait_p99_ms: NotRequired[float]
    usage_ms: NotRequired[float]
    timeouts: NotRequired[int]
    rejected: NotRequired[int]
    connections_created: NotRequired[int]
    connect_ms: NotRequired[float]
    connections_failed: NotRequired[int]
    connections_lost: NotRequired[int]
    connections_expired: NotRequired[int]
    checks: NotRequired[int]
    checks_failed: NotRequired[int]
    leaks: NotRequired[int]
    breaker_open: NotRequired[int]
    breaker_opened: NotRequired[int]
    autoscale_demand: NotRequired[float]
    autoscale_wait_p99_ms: NotRequired[float]
    autoscale_cap: NotRequired[int]
    autoscale_resizes: NotRequired[int]
