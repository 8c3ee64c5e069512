"""`DatabaseWrapper` of the ``pgharbor.django`` backend: Django's PostgreSQL
backend with its connections lent by a pgharbor `Pool`.

Django opens a connection when a thread first needs one and closes it at the
end of each request (``CONN_MAX_AGE = 0``, which pooling requires). Here
"open" takes a connection from the alias's pgharbor pool and "close" gives it
back — as with Django's own ``OPTIONS={"pool": True}``, but with pgharbor's
checkout check, reconnect backoff, breaker, leak detection, health and
metrics. One pool per alias and process, shared by every thread.

Settings, in ``DATABASES[alias]``:

- ``NAME``, ``USER``, ``PASSWORD``, ``HOST``, ``PORT`` and libpq parameters in
  ``OPTIONS`` (``sslmode``, ``application_name``...), as for Django's backend;
  also ``isolation_level``, ``assume_role``, ``server_side_binding`` and
  ``prepare_threshold``.
- ``OPTIONS["pool"]``: a dict of pgharbor pool settings (``min_size``,
  ``max_size``, ``timeout``, ``max_lifetime``, ``max_idle``, ``breaker``,
  ``metrics``, ``leak_threshold``, ``name``...; see `pgharbor.Pool`); True or
  absent for the defaults; False for no pooling (Django's behaviour: a new
  connection per request).
"""

from __future__ import annotations

import atexit
import difflib
import inspect
import threading
import weakref
from typing import Any, ClassVar

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base as _postgresql
from django.db.backends.postgresql.psycopg_any import IsolationLevel, is_psycopg3
from django.utils.asyncio import async_unsafe

from .._conninfo import _libpq_keywords
from .._sync.pool import Pool
from ..drivers.psycopg import PsycopgDriver, connect_timeout
from ..errors import ConfigError, HarborError

__all__ = ["DatabaseWrapper"]

# Pool settings the backend sets itself, from DATABASES.
_OWN = frozenset({"conninfo", "driver", "password", "kwargs", "configure", "prepared_statements"})
_SETTINGS = frozenset(inspect.signature(Pool.__init__).parameters) - {"self"} - _OWN


class _DjangoDriver(PsycopgDriver):
    """psycopg 3 with Django's connection arguments that are not libpq
    parameters (its cursor class, its adapters — JSON left undecoded, time
    zones — and ``prepare_threshold``)."""

    def __init__(self, extra: dict[str, Any], *, prepared_statements: bool) -> None:
        super().__init__(prepared_statements=prepared_statements)
        self._extra = extra

    def connect(self, params: dict[str, Any], timeout: float) -> Any:
        """Open an autocommit connection with Django's arguments (see
        `PsycopgDriver.connect`)."""
        kwargs = {
            **params,
            "connect_timeout": connect_timeout(params, timeout),
            **self._extra,
            "autocommit": True,
        }
        if not self.prepared_statements:
            kwargs["prepare_threshold"] = None
        return psycopg.Connection.connect(**kwargs)


class DatabaseWrapper(_postgresql.DatabaseWrapper):  # type: ignore[misc]
    """Django's PostgreSQL `DatabaseWrapper`, pooled by pgharbor."""

    display_name = "PostgreSQL (pgharbor)"
    connection: Any  # the psycopg connection lent, or None (set by Django)

    # alias -> (the settings the pool was built from, the pool); shared by
    # every thread's wrapper of the alias.
    _pgharbor_pools: ClassVar[dict[str, tuple[tuple[Any, ...], Pool]]] = {}
    _pgharbor_lock: ClassVar[threading.Lock] = threading.Lock()
    _pgharbor_opened: ClassVar[weakref.WeakSet[Pool]] = weakref.WeakSet()
    _pgharbor_open_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not is_psycopg3:
            raise ImproperlyConfigured("pgharbor.django needs psycopg 3")
        self._pgharbor_lender: Pool | None = None

    @property
    def pool(self) -> Pool | None:
        """The alias's pgharbor `Pool` (not yet opened until a connection is
        needed), or None without pooling (``OPTIONS["pool"] = False``, or
        Django's connection to the ``postgres`` database)."""
        options = self.settings_dict["OPTIONS"].get("pool", True)
        if self.alias == NO_DB_ALIAS or options is False:
            return None
        key = self._pgharbor_key()
        entry = self._pgharbor_pools.get(self.alias)
        if entry is not None and entry[0] == key:
            return entry[1]
        with self._pgharbor_lock:
            entry = self._pgharbor_pools.get(self.alias)
            if entry is not None:
                if entry[0] == key:
                    return entry[1]
                # Another database behind the alias (the test runner switched
                # NAME to the test database): a new pool.
                entry[1].close()
            pool = self._pgharbor_new_pool(options)
            self._pgharbor_pools[self.alias] = (key, pool)
            return pool

    def close_pool(self) -> None:
        """Close the alias's pgharbor pool (Django calls it before dropping or
        cloning a test database, and when the time zone changes)."""
        with self._pgharbor_lock:
            entry = self._pgharbor_pools.pop(self.alias, None)
        if entry is not None:
            entry[1].close()

    @async_unsafe  # type: ignore[untyped-decorator]
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """Take a connection from the pool (or open one without pooling).

        Raises:
            django.db.OperationalError: no connection within the pool's
                timeout, the breaker is open, or connecting failed (the
                pgharbor error is the cause).
        """
        options = self.settings_dict["OPTIONS"]
        set_isolation_level = "isolation_level" in options
        if set_isolation_level:
            try:
                self.isolation_level = IsolationLevel(options["isolation_level"])
            except ValueError:
                raise ImproperlyConfigured(
                    f"Invalid transaction isolation level {options['isolation_level']} "
                    "specified. Use one of the psycopg.IsolationLevel values."
                ) from None
        else:
            self.isolation_level = IsolationLevel.READ_COMMITTED
        pool = self.pool
        if pool is None:
            connection = self.Database.connect(**conn_params)
        else:
            try:
                if pool not in self._pgharbor_opened:
                    self._pgharbor_open(pool)
                connection = pool.acquire()
            except HarborError as exc:
                if isinstance(exc, ConfigError):
                    raise
                raise OperationalError(str(exc)) from exc
            self._pgharbor_lender = pool
        if set_isolation_level:
            connection.isolation_level = self.isolation_level
        return connection

    def _close(self) -> None:
        lender, self._pgharbor_lender = self._pgharbor_lender, None
        if self.connection is None or lender is None:
            super()._close()
            return
        connection, self.connection = self.connection, None
        # Rolled back (with a warning) if Django closes it mid-transaction;
        # its attributes (autocommit, isolation level) are set back.
        lender.release(connection)

    # -- internals ---------------------------------------------------------

    def _pgharbor_open(self, pool: Pool) -> None:
        """Open ``pool`` once, whichever thread comes first."""
        with self._pgharbor_open_lock:
            if pool in self._pgharbor_opened:
                return
            try:
                pool.open()
            except BaseException:
                # A pool that fails to open is closed: the next connection
                # attempt builds a new one.
                self._pgharbor_forget(pool)
                raise
            self._pgharbor_opened.add(pool)

    def _pgharbor_forget(self, pool: Pool) -> None:
        with self._pgharbor_lock:
            entry = self._pgharbor_pools.get(self.alias)
            if entry is not None and entry[1] is pool:
                del self._pgharbor_pools[self.alias]

    def _pgharbor_key(self) -> tuple[Any, ...]:
        s = self.settings_dict
        return (s["NAME"], s["USER"], s["HOST"], s["PORT"])

    def _pgharbor_new_pool(self, options: Any) -> Pool:
        """A pgharbor pool for this alias's settings (checked now)."""
        if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured(
                "Pooling doesn't support persistent connections: set CONN_MAX_AGE to 0 "
                "(connections go back to pgharbor's pool instead)."
            )
        settings = {} if options is True or options is None else options
        if not isinstance(settings, dict):
            raise ConfigError("pool", "must be True, False or a dict of pgharbor pool settings")
        for key in settings:
            if key in _OWN:
                raise ConfigError(key, "is set by the backend from DATABASES")
            if key not in _SETTINGS:
                close = difflib.get_close_matches(key, sorted(_SETTINGS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(key, f"is not a pgharbor pool setting{hint}")
        params = self.get_connection_params()
        password = params.pop("password", None)
        libpq = _libpq_keywords()
        extra = {k: params.pop(k) for k in list(params) if k not in libpq}
        threshold = extra.pop("prepare_threshold", None)
        if threshold is not None:
            extra["prepare_threshold"] = threshold
        settings.setdefault("name", f"django-{self.alias}")
        return Pool(
            psycopg.conninfo.make_conninfo(**params),
            driver=_DjangoDriver(extra, prepared_statements=threshold is not None),
            password=password,
            configure=self._configure_connection,
            **settings,
        )


@atexit.register
def _close_pools() -> None:
    """End the pools' sessions cleanly when the process exits."""
    with DatabaseWrapper._pgharbor_lock:
        pools = [pool for _, pool in DatabaseWrapper._pgharbor_pools.values()]
        DatabaseWrapper._pgharbor_pools.clear()
    for pool in pools:
        pool.close(timeout=1.0)
