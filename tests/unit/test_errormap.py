"""Driver errors turned into pgharbor's (no server: errors built by hand)."""

from __future__ import annotations

import pickle

import asyncpg
import psycopg
import psycopg.errors
import psycopg2
import pytest

import pgharbor
from pgharbor import errors
from pgharbor._errormap import database_error
from pgharbor.errors import (
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    DataError,
    HarborError,
    IntegrityError,
    UniqueViolation,
    error_class,
)


def never(exc: BaseException) -> bool:
    return False


def always(exc: BaseException) -> bool:
    return True


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("23505", "UniqueViolation"),
        ("23503", "ForeignKeyViolation"),
        ("23502", "NotNullViolation"),
        ("23514", "CheckViolation"),
        ("23P01", "ExclusionViolation"),
        ("23001", "IntegrityError"),
        ("40001", "SerializationFailure"),
        ("40P01", "DeadlockDetected"),
        ("40002", "TransactionRollback"),
        ("57014", "QueryCanceled"),
        ("55P03", "LockNotAvailable"),
        ("25006", "ReadOnlySqlTransaction"),
        ("22012", "DataError"),
        ("42P01", "ProgrammingError"),
        ("57P01", "ConnectionLost"),
        ("08006", "ConnectionLost"),
        ("XX000", "DatabaseError"),
        (None, "DatabaseError"),
    ],
)
def test_error_class_by_code_then_class(code: str | None, name: str) -> None:
    """The exact code picks the class, else its two-character class, else DatabaseError."""
    assert error_class(code) is getattr(pgharbor, name)


def test_psycopg_error_becomes_both_classes() -> None:
    """A psycopg UniqueViolation becomes an object of pgharbor's class and
    psycopg's, with psycopg's arguments and the original as __cause__."""
    original = psycopg.errors.UniqueViolation("duplicate key")
    error = database_error(original, never)
    assert isinstance(error, UniqueViolation) and isinstance(error, IntegrityError)
    assert isinstance(error, psycopg.errors.UniqueViolation) and isinstance(error, psycopg.Error)
    assert error.sqlstate == "23505" and error.__cause__ is original
    assert str(error) == "duplicate key" and error.args == original.args
    assert type(error).__name__ == "UniqueViolation" and type(error).__module__ == "pgharbor"
    again = database_error(psycopg.errors.UniqueViolation("again"), never)
    assert type(again) is type(error)  # one class per pair


def test_asyncpg_error_becomes_both_classes() -> None:
    """An asyncpg error keeps its attributes; its metaclass's SQLSTATE map is
    left alone (asyncpg still raises its own class for 23505)."""
    original = asyncpg.UniqueViolationError("duplicate key")
    original.__dict__.update(constraint_name="t_pkey", detail="Key (id)=(1) exists.")
    error = database_error(original, never)
    assert isinstance(error, UniqueViolation) and isinstance(error, asyncpg.UniqueViolationError)
    assert error.constraint_name == "t_pkey" and error.sqlstate == "23505"
    meta = type(asyncpg.PostgresError)
    assert meta.get_message_class_for_sqlstate("23505") is asyncpg.UniqueViolationError


def test_psycopg2_fields_are_read_from_the_original() -> None:
    """psycopg2 keeps pgcode and friends in the C object: the combined class
    reads them from the original error."""
    original = psycopg2.errors.DivisionByZero("division by zero")
    original.__setstate__({"pgcode": "22012", "pgerror": "ERROR: division by zero"})  # type: ignore[no-untyped-call]
    error = database_error(original, never)
    assert isinstance(error, DataError) and isinstance(error, psycopg2.errors.DivisionByZero)
    assert error.pgcode == "22012" and error.pgerror == "ERROR: division by zero"
    assert error.sqlstate == "22012"


def test_what_is_left_alone() -> None:
    """pgharbor's own errors, non-driver errors and driver errors without a
    SQLSTATE (raised before sending) are not translated."""
    assert database_error(pgharbor.PoolTimeout("x"), always) is None
    assert database_error(ValueError("x"), never) is None
    assert database_error(psycopg.ProgrammingError("2 placeholders, 1 parameter"), never) is None
    assert database_error(KeyboardInterrupt(), always) is None


def test_lost_connections() -> None:
    """What the driver's adapter calls a disconnect is ConnectionLost, also a
    DatabaseUnavailable; a non-driver error (a socket's) is wrapped, not combined."""
    lost = database_error(psycopg.OperationalError("server closed the connection"), always)
    assert lost is not None
    assert isinstance(lost, ConnectionLost) and isinstance(lost, psycopg.OperationalError)
    assert isinstance(lost, DatabaseUnavailable)
    assert lost.sqlstate is None
    reset = ConnectionResetError(104, "Connection reset by peer")
    wrapped = database_error(reset, always)
    assert type(wrapped) is ConnectionLost and wrapped.__cause__ is reset
    assert not isinstance(wrapped, OSError)


def test_combined_errors_pickle() -> None:
    """A combined error pickles as (pgharbor's class, the driver's error)."""
    error = database_error(psycopg.errors.UniqueViolation("dup"), never)
    clone: DatabaseError = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error) and clone.sqlstate == "23505" and str(clone) == "dup"
    plain = pickle.loads(pickle.dumps(ConnectionLost("gone", "57P01")))
    assert plain.sqlstate == "57P01" and str(plain) == "gone"


def test_unavailable_family() -> None:
    """Everything that means "try later" is a DatabaseUnavailable; a closed
    pool or a statement error is not."""
    for cls in (
        pgharbor.ConnectionFailed,
        pgharbor.AuthenticationFailed,
        pgharbor.PoolTimeout,
        pgharbor.TooManyRequests,
        pgharbor.CircuitOpen,
        pgharbor.NoAvailableServer,
        ConnectionLost,
    ):
        assert issubclass(cls, DatabaseUnavailable) and issubclass(cls, HarborError)
    assert not issubclass(pgharbor.PoolClosed, DatabaseUnavailable)
    assert not issubclass(UniqueViolation, DatabaseUnavailable)
    assert issubclass(pgharbor.PoolTimeout, TimeoutError)


def test_the_tree_drawing_names_every_error() -> None:
    """The docstring of pgharbor.errors draws every error class it exports."""
    doc = errors.__doc__ or ""
    classes = [
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), BaseException)
    ]
    missing = [name for name in classes if f"{name}(" not in doc and f" {name} " not in doc]
    assert not missing
    assert all(issubclass(getattr(errors, name), HarborError) for name in classes)
    assert issubclass(DatabaseError, HarborError)
