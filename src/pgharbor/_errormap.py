"""A driver's statement error, raised again as pgharbor's (see `pgharbor.errors`).

`database_error` picks the `DatabaseError` class for an error the server
sent (its SQLSTATE, `pgharbor.errors.error_class`) or a lost connection
(`ConnectionLost`), and builds the object to raise. When the driver raised
one of its own errors, that object is an instance of a class made (once per
pair) under both pgharbor's class and the driver's::

    class UniqueViolation(pgharbor.UniqueViolation, psycopg.errors.UniqueViolation)

with the driver's error's arguments and attributes copied in, so that
``except pgharbor.UniqueViolation`` and ``except psycopg.Error`` both catch
it, and ``e.diag``, ``e.constraint_name`` or ``e.pgcode`` read as they did.
Attributes that C drivers keep outside the instance dict (psycopg2's
``pgcode``, ``pgerror``, ``diag``, ``cursor``) are read from the original
error, which is also ``__cause__``. A pair that cannot be combined (a
layout conflict) gives pgharbor's class alone, caused by the driver's error.

Only the error path pays: a class is made the first time a pair is met.
"""

from __future__ import annotations

import inspect
import threading
import types
from collections.abc import Callable
from typing import Any

from .errors import ConnectionLost, DatabaseError, HarborError, error_class

__all__ = ["database_error"]

_DRIVERS = frozenset({"psycopg", "asyncpg", "psycopg2"})
_COMBINED: dict[tuple[type[DatabaseError], type[BaseException]], type[DatabaseError] | None] = {}
_LOCK = threading.Lock()


def database_error(
    exc: BaseException, is_disconnect: Callable[[BaseException], bool]
) -> DatabaseError | None:
    """The pgharbor error to raise instead of ``exc`` (from it), or None to let
    ``exc`` through: it is already pgharbor's, not an ``Exception``, or a
    client-side error of the driver (no SQLSTATE, connection fine).

    ``is_disconnect`` is the driver adapter's test for a lost connection.
    """
    if isinstance(exc, HarborError) or not isinstance(exc, Exception):
        return None
    native = _is_native(exc)
    code = _code(exc) if native else None
    if is_disconnect(exc):
        cls: type[DatabaseError] = ConnectionLost
    elif code is not None:
        cls = error_class(code)
    else:
        return None
    return _make(cls, exc, code, native)


def _is_native(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the drivers' own error classes."""
    return type(exc).__module__.partition(".")[0] in _DRIVERS


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def _make(
    cls: type[DatabaseError], exc: BaseException, code: str | None, native: bool
) -> DatabaseError:
    combined = _combined(cls, type(exc)) if native else None
    if combined is None:
        error = cls(str(exc), code)
    else:
        # Not through __init__: each driver's takes other arguments. The
        # instance gets what the driver's error holds instead.
        error = combined.__new__(combined, *exc.args)
        error.args = exc.args
        error.__dict__.update(exc.__dict__)
        error.sqlstate = code
    error.__cause__ = exc
    return error


def _combined(ours: type[DatabaseError], theirs: type[BaseException]) -> type[DatabaseError] | None:
    """The class under ``ours`` and ``theirs`` (made once; None if impossible)."""
    key = (ours, theirs)
    try:
        return _COMBINED[key]
    except KeyError:
        pass
    with _LOCK:
        if key not in _COMBINED:
            namespace: dict[str, Any] = {
                "__module__": ours.__module__,
                "__qualname__": ours.__qualname__,
                "__doc__": ours.__doc__,
                "__reduce__": _reduce,
            }
            for name in _fields_outside_dict(theirs):
                namespace[name] = property(_from_cause(name))
            try:
                made: type[DatabaseError] | None = types.new_class(
                    ours.__name__, (ours, theirs), exec_body=lambda ns: ns.update(namespace)
                )
            except TypeError:  # the two cannot share an instance layout
                made = None
            _COMBINED[key] = made
    return _COMBINED[key]


def _fields_outside_dict(cls: type[BaseException]) -> list[str]:
    """Attributes a C extension keeps in the instance itself (member and
    getset descriptors), beyond those every exception has."""
    names = []
    for name in dir(cls):
        if name == "__weakref__" or hasattr(BaseException, name):
            continue
        value = inspect.getattr_static(cls, name)
        if isinstance(value, types.MemberDescriptorType | types.GetSetDescriptorType):
            names.append(name)
    return names


def _from_cause(name: str) -> Callable[[Any], Any]:
    def get(self: BaseException) -> Any:
        return getattr(self.__cause__, name)

    return get


def _reduce(self: DatabaseError) -> tuple[Any, ...]:
    """Pickle a combined error as (pgharbor's class, the driver's error)."""
    ours = next(c for c in type(self).__mro__[1:] if c.__module__ == "pgharbor")
    return (_rebuild, (ours, self.__cause__, self.sqlstate))


def _rebuild(ours: type[DatabaseError], exc: BaseException, code: str | None) -> DatabaseError:
    return _make(ours, exc, code, native=True)
