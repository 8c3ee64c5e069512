"""pgharbor: PostgreSQL connection management for Python services and tools.

Fast sync and async pools over psycopg 3, asyncpg and psycopg2; the user gets
the driver's native connection. Names are imported on first use, so that
``import pgharbor`` (and the pytest plugin that ships with it) stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgharbor._async.database import AsyncDatabase, AsyncTransaction
    from pgharbor._async.manager import AsyncDatabaseManager
    from pgharbor._async.migrations import AsyncMigrations
    from pgharbor._async.pool import AsyncPool
    from pgharbor._async.saga import AsyncSaga
    from pgharbor._batch import BatchProgress
    from pgharbor._migrate.plan import MigrationPlan, MigrationStatus, MigrationStep
    from pgharbor._policy.autoscale import Autoscale, AutoscaleStatus
    from pgharbor._policy.backoff import Backoff
    from pgharbor._policy.breaker import BreakerOptions
    from pgharbor._policy.health import Alerts, DatabaseHealth, HealthReport, HealthThresholds
    from pgharbor._policy.options import PoolOptions
    from pgharbor._policy.retry import RetryPolicy
    from pgharbor._saga import SagaContext, SagaResult
    from pgharbor._sync.database import Database, Transaction
    from pgharbor._sync.manager import DatabaseManager
    from pgharbor._sync.migrations import Migrations
    from pgharbor._sync.pool import Pool
    from pgharbor._sync.saga import Saga
    from pgharbor._typing import (
        AsyncDatabaseKwargs,
        AsyncPoolKwargs,
        DatabaseKwargs,
        DatabaseStats,
        PoolKwargs,
        PoolStats,
    )
    from pgharbor.checks import CheckReport, DatabaseCheck
    from pgharbor.config import DatabaseSettings, HarborSettings, load_settings
    from pgharbor.drivers.query import Isolation, Row, Rows
    from pgharbor.errors import (
        AuthenticationFailed,
        BatchError,
        CheckViolation,
        CircuitOpen,
        CommitOutcomeUnknown,
        ConfigError,
        ConnectionFailed,
        ConnectionLost,
        DatabaseError,
        DatabaseUnavailable,
        DataError,
        DeadlockDetected,
        ExclusionViolation,
        ForeignKeyViolation,
        GuardRefused,
        HarborError,
        InsufficientPrivileges,
        IntegrityError,
        LockNotAvailable,
        MigrationDrift,
        MigrationError,
        MigrationFailed,
        MigrationLockTimeout,
        NoAvailableServer,
        NotNullViolation,
        PoolClosed,
        PoolError,
        PoolTimeout,
        ProgrammingError,
        QueryCanceled,
        ReadOnlySqlTransaction,
        SagaCompensationFailed,
        SagaError,
        SagaFailed,
        SerializationFailure,
        TooManyRequests,
        TransactionRollback,
        UniqueViolation,
        UnsupportedServerVersion,
    )
    from pgharbor.guard import Guard
    from pgharbor.metrics import Event, MetricsSink
    from pgharbor.schema import Difference, SchemaSnapshot, diff
    from pgharbor.version import ServerVersion

__version__ = "0.1.0.dev0"

# A library leaves handlers to the application; without one configured,
# pgharbor's warnings are not printed on stderr by Python's last resort.
logging.getLogger("pgharbor").addHandler(logging.NullHandler())

__all__ = [
    "Alerts",
    "AsyncDatabase",
    "AsyncDatabaseKwargs",
    "AsyncDatabaseManager",
    "AsyncMigrations",
    "AsyncPool",
    "AsyncPoolKwargs",
    "AsyncSaga",
    "AsyncTransaction",
    "AuthenticationFailed",
    "Autoscale",
    "AutoscaleStatus",
    "Backoff",
    "BatchError",
    "BatchProgress",
    "BreakerOptions",
    "CheckReport",
    "CheckViolation",
    "CircuitOpen",
    "CommitOutcomeUnknown",
    "ConfigError",
    "ConnectionFailed",
    "ConnectionLost",
    "DataError",
    "Database",
    "DatabaseCheck",
    "DatabaseError",
    "DatabaseHealth",
    "DatabaseKwargs",
    "DatabaseManager",
    "DatabaseSettings",
    "DatabaseStats",
    "DatabaseUnavailable",
    "DeadlockDetected",
    "Difference",
    "Event",
    "ExclusionViolation",
    "ForeignKeyViolation",
    "Guard",
    "GuardRefused",
    "HarborError",
    "HarborSettings",
    "HealthReport",
    "HealthThresholds",
    "InsufficientPrivileges",
    "IntegrityError",
    "Isolation",
    "LockNotAvailable",
    "MetricsSink",
    "MigrationDrift",
    "MigrationError",
    "MigrationFailed",
    "MigrationLockTimeout",
    "MigrationPlan",
    "MigrationStatus",
    "MigrationStep",
    "Migrations",
    "NoAvailableServer",
    "NotNullViolation",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolKwargs",
    "PoolOptions",
    "PoolStats",
    "PoolTimeout",
    "ProgrammingError",
    "QueryCanceled",
    "ReadOnlySqlTransaction",
    "RetryPolicy",
    "Row",
    "Rows",
    "Saga",
    "SagaCompensationFailed",
    "SagaContext",
    "SagaError",
    "SagaFailed",
    "SagaResult",
    "SchemaSnapshot",
    "SerializationFailure",
    "ServerVersion",
    "TooManyRequests",
    "Transaction",
    "TransactionRollback",
    "UniqueViolation",
    "UnsupportedServerVersion",
    "__version__",
    "diff",
    "load_settings",
]

_ERRORS = "pgharbor.errors"
_HEALTH = "pgharbor._policy.health"
_MIGRATE = "pgharbor._migrate.plan"
_TYPING = "pgharbor._typing"
_HOMES = {
    "AsyncDatabaseKwargs": _TYPING,
    "AsyncPoolKwargs": _TYPING,
    "DatabaseKwargs": _TYPING,
    "DatabaseStats": _TYPING,
    "PoolKwargs": _TYPING,
    "PoolStats": _TYPING,
    "Alerts": _HEALTH,
    "DatabaseHealth": _HEALTH,
    "Event": "pgharbor.metrics",
    "HealthReport": _HEALTH,
    "HealthThresholds": _HEALTH,
    "MetricsSink": "pgharbor.metrics",
    "AsyncDatabase": "pgharbor._async.database",
    "AsyncDatabaseManager": "pgharbor._async.manager",
    "AsyncMigrations": "pgharbor._async.migrations",
    "Migrations": "pgharbor._sync.migrations",
    "MigrationPlan": _MIGRATE,
    "MigrationStatus": _MIGRATE,
    "MigrationStep": _MIGRATE,
    "BatchError": _ERRORS,
    "BatchProgress": "pgharbor._batch",
    "AsyncSaga": "pgharbor._async.saga",
    "Saga": "pgharbor._sync.saga",
    "SagaContext": "pgharbor._saga",
    "SagaResult": "pgharbor._saga",
    "MigrationDrift": _ERRORS,
    "MigrationError": _ERRORS,
    "MigrationFailed": _ERRORS,
    "MigrationLockTimeout": _ERRORS,
    "SagaCompensationFailed": _ERRORS,
    "SagaError": _ERRORS,
    "SagaFailed": _ERRORS,
    "AsyncPool": "pgharbor._async.pool",
    "AsyncTransaction": "pgharbor._async.database",
    "CheckReport": "pgharbor.checks",
    "Database": "pgharbor._sync.database",
    "DatabaseCheck": "pgharbor.checks",
    "DatabaseManager": "pgharbor._sync.manager",
    "DatabaseSettings": "pgharbor.config",
    "Difference": "pgharbor.schema",
    "SchemaSnapshot": "pgharbor.schema",
    "diff": "pgharbor.schema",
    "HarborSettings": "pgharbor.config",
    "Isolation": "pgharbor.drivers.query",
    "Row": "pgharbor.drivers.query",
    "Rows": "pgharbor.drivers.query",
    "Guard": "pgharbor.guard",
    "GuardRefused": _ERRORS,
    "ServerVersion": "pgharbor.version",
    "Transaction": "pgharbor._sync.database",
    "load_settings": "pgharbor.config",
    "AuthenticationFailed": _ERRORS,
    "Autoscale": "pgharbor._policy.autoscale",
    "AutoscaleStatus": "pgharbor._policy.autoscale",
    "Backoff": "pgharbor._policy.backoff",
    "BreakerOptions": "pgharbor._policy.breaker",
    "CircuitOpen": _ERRORS,
    "CommitOutcomeUnknown": _ERRORS,
    "ConfigError": _ERRORS,
    "ConnectionFailed": _ERRORS,
    "HarborError": _ERRORS,
    "InsufficientPrivileges": _ERRORS,
    "NoAvailableServer": _ERRORS,
    "Pool": "pgharbor._sync.pool",
    "PoolClosed": _ERRORS,
    "PoolError": _ERRORS,
    "PoolOptions": "pgharbor._policy.options",
    "PoolTimeout": _ERRORS,
    "RetryPolicy": "pgharbor._policy.retry",
    "TooManyRequests": _ERRORS,
    "UnsupportedServerVersion": _ERRORS,
    "CheckViolation": _ERRORS,
    "ConnectionLost": _ERRORS,
    "DataError": _ERRORS,
    "DatabaseError": _ERRORS,
    "DatabaseUnavailable": _ERRORS,
    "DeadlockDetected": _ERRORS,
    "ExclusionViolation": _ERRORS,
    "ForeignKeyViolation": _ERRORS,
    "IntegrityError": _ERRORS,
    "LockNotAvailable": _ERRORS,
    "NotNullViolation": _ERRORS,
    "ProgrammingError": _ERRORS,
    "QueryCanceled": _ERRORS,
    "ReadOnlySqlTransaction": _ERRORS,
    "SerializationFailure": _ERRORS,
    "TransactionRollback": _ERRORS,
    "UniqueViolation": _ERRORS,
}


def __getattr__(name: str) -> Any:
    try:
        home = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module 'pgharbor' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
