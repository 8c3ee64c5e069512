"""Driver adapters: pick one by name; optional drivers import only when asked for.

=========  =====================================  ============================
name       async (:func:`get_async_driver`)       sync (:func:`get_driver`)
=========  =====================================  ============================
psycopg    :class:`~.psycopg.AsyncPsycopgDriver`  :class:`~.psycopg.PsycopgDriver`
asyncpg    :class:`~.asyncpg.AsyncpgDriver`       --
psycopg2   --                                     :class:`~.psycopg2.Psycopg2Driver`
=========  =====================================  ============================

Options (keyword arguments, the same for every driver):

* ``prepared_statements`` (default True): False turns off server-side prepared
  statements (psycopg ``prepare_threshold=None``, asyncpg
  ``statement_cache_size=0``), as PgBouncer in transaction mode needs.
  psycopg2 never prepares, so it ignores the option.
"""

from __future__ import annotations

import importlib
from typing import Any

from pgharbor.drivers.base import AsyncDriver, ConnStatus, Driver
from pgharbor.drivers.query import AsyncQueries, Queries
from pgharbor.errors import ConfigError

__all__ = [
    "AsyncDriver",
    "ConnStatus",
    "Driver",
    "get_async_driver",
    "get_async_queries",
    "get_driver",
    "get_queries",
]

# name -> (module, class, the package it needs, the extra that installs it)
_ASYNC = {
    "psycopg": ("psycopg", "AsyncPsycopgDriver", "psycopg", None),
    "asyncpg": ("asyncpg", "AsyncpgDriver", "asyncpg", "asyncpg"),
}
_SYNC = {
    "psycopg": ("psycopg", "PsycopgDriver", "psycopg", None),
    "psycopg2": ("psycopg2", "Psycopg2Driver", "psycopg2", "psycopg2"),
}
_OPTIONS = frozenset({"prepared_statements"})


def _load(table: dict[str, tuple[str, str, str, str | None]], name: str) -> Any:
    try:
        module, cls, package, extra = table[name]
    except (KeyError, TypeError):
        raise ConfigError(
            "driver", f"must be one of {', '.join(map(repr, table))} (got {name!r})"
        ) from None
    try:
        importlib.import_module(package)
    except ImportError as exc:
        if extra is None:
            raise
        raise ImportError(
            f"the {name!r} driver needs the {package} package: pip install 'pgharbor[{extra}]'",
            name=package,
        ) from exc
    return getattr(importlib.import_module(f"pgharbor.drivers.{module}"), cls)


def _check_options(options: dict[str, Any]) -> None:
    for key in options:
        if key not in _OPTIONS:
            raise ConfigError(key, f"is not a driver option ({', '.join(_OPTIONS)})")
    value = options.get("prepared_statements", True)
    if not isinstance(value, bool):
        raise ConfigError("prepared_statements", "must be a bool", value)


def get_async_driver(name: str = "psycopg", **options: Any) -> AsyncDriver:
    """The asyncio adapter called ``name`` ("psycopg" or "asyncpg").

    Raises:
        ConfigError: unknown name or option.
        ImportError: the driver's package is not installed; the message holds
            the ``pip install`` command.
    """
    cls = _load(_ASYNC, name)
    _check_options(options)
    driver: AsyncDriver = cls(**options)
    return driver


def get_driver(name: str = "psycopg", **options: Any) -> Driver:
    """The blocking adapter called ``name`` ("psycopg" or "psycopg2").

    Raises:
        ConfigError: unknown name or option.
        ImportError: the driver's package is not installed; the message holds
            the ``pip install`` command.
    """
    cls = _load(_SYNC, name)
    _check_options(options)
    driver: Driver = cls(**options)
    return driver


# The query protocol (pgharbor.drivers.query), one adapter per driver flavour.
_ASYNC_QUERIES = {
    "psycopg": ("queries_psycopg", "AsyncPsycopgQueries", "psycopg", None),
    "asyncpg": ("queries_asyncpg", "AsyncpgQueries", "asyncpg", "asyncpg"),
}
_SYNC_QUERIES = {
    "psycopg": ("queries_psycopg", "PsycopgQueries", "psycopg", None),
    "psycopg2": ("queries_psycopg2", "Psycopg2Queries", "psycopg2", "psycopg2"),
}


def get_async_queries(name: str = "psycopg", **options: Any) -> AsyncQueries:
    """The asyncio query adapter for driver ``name`` ("psycopg" or "asyncpg").

    Takes the same options as :func:`get_async_driver`.

    Raises:
        ConfigError: unknown name or option.
        ImportError: the driver's package is not installed; the message holds
            the ``pip install`` command.
    """
    cls = _load(_ASYNC_QUERIES, name)
    _check_options(options)
    queries: AsyncQueries = cls(**options)
    return queries


def get_queries(name: str = "psycopg", **options: Any) -> Queries:
    """The blocking query adapter for driver ``name`` ("psycopg" or "psycopg2").

    Takes the same options as :func:`get_driver`.

    Raises:
        ConfigError: unknown name or option.
        ImportError: the driver's package is not installed; the message holds
            the ``pip install`` command.
    """
    cls = _load(_SYNC_QUERIES, name)
    _check_options(options)
    queries: Queries = cls(**options)
    return queries
