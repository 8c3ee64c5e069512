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
from typing import Any, NamedTuple

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


class _Adapter(NamedTuple):
    """Where a driver's adapters live, and what installs the driver."""

    module: str  # pgharbor.drivers.<module>: the connection adapter
    driver: str  # its class
    queries_module: str  # pgharbor.drivers.<queries_module>: the query adapter
    queries: str  # its class
    package: str  # the driver's own package
    extra: str | None  # the pgharbor extra that installs it (None: always there)


# One table: (flavour, driver name) -> its adapters.
_ADAPTERS: dict[tuple[str, str], _Adapter] = {
    ("async", "psycopg"): _Adapter(
        "psycopg", "AsyncPsycopgDriver", "queries_psycopg", "AsyncPsycopgQueries", "psycopg", None
    ),
    ("async", "asyncpg"): _Adapter(
        "asyncpg", "AsyncpgDriver", "queries_asyncpg", "AsyncpgQueries", "asyncpg", "asyncpg"
    ),
    ("sync", "psycopg"): _Adapter(
        "psycopg", "PsycopgDriver", "queries_psycopg", "PsycopgQueries", "psycopg", None
    ),
    ("sync", "psycopg2"): _Adapter(
        "psycopg2", "Psycopg2Driver", "queries_psycopg2", "Psycopg2Queries", "psycopg2", "psycopg2"
    ),
}
_OPTIONS = frozenset({"prepared_statements"})


def names(flavour: str) -> list[str]:
    """The driver names of a flavour ("async" or "sync")."""
    return [name for f, name in _ADAPTERS if f == flavour]


def _load(flavour: str, name: str, queries: bool) -> Any:
    adapter = _ADAPTERS.get((flavour, name)) if isinstance(name, str) else None
    if adapter is None:
        raise ConfigError(
            "driver", f"must be one of {', '.join(map(repr, names(flavour)))} (got {name!r})"
        )
    try:
        importlib.import_module(adapter.package)
    except ImportError as exc:
        if adapter.extra is None:
            raise
        raise ImportError(
            f"the {name!r} driver needs the {adapter.package} package: "
            f"pip install 'pgharbor[{adapter.extra}]'",
            name=adapter.package,
        ) from exc
    module, cls = (
        (adapter.queries_module, adapter.queries) if queries else (adapter.module, adapter.driver)
    )
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
    cls = _load("async", name, queries=False)
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
    cls = _load("sync", name, queries=False)
    _check_options(options)
    driver: Driver = cls(**options)
    return driver


def get_async_queries(name: str = "psycopg", **options: Any) -> AsyncQueries:
    """The asyncio query adapter for driver ``name`` ("psycopg" or "asyncpg").

    Takes the same options as :func:`get_async_driver`.

    Raises:
        ConfigError: unknown name or option.
        ImportError: the driver's package is not installed; the message holds
            the ``pip install`` command.
    """
    cls = _load("async", name, queries=True)
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
    cls = _load("sync", name, queries=True)
    _check_options(options)
    queries: Queries = cls(**options)
    return queries
