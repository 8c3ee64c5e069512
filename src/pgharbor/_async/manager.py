"""`AsyncDatabaseManager`: several named databases (a *source* and a *target*,
say), opened side by side, each with its own pool. Source of the generated
`DatabaseManager`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from types import TracebackType
from typing import Any

from .._acompat import arun_all
from .._policy.health import DatabaseHealth
from .._typing import DatabaseStats
from ..checks import CheckReport, DatabaseCheck
from ..errors import ConfigError
from ..metrics import Event as PoolEvent
from ..privileges import WRITE_ACCESS, Requirement, write_access
from ..version import MINIMUM_SUPPORTED
from .database import AsyncDatabase

__all__ = ["AsyncDatabaseManager"]

logger = logging.getLogger("pgharbor.manager")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class AsyncDatabaseManager:
    """Named databases opened side by side.

    ``databases`` maps names to `AsyncDatabase` objects or to conninfo
    strings (each then becomes an `AsyncDatabase` with ``defaults``). One
    database failing never blocks the others: they open concurrently, each
    with its own pool, and `open` reports every failure at once::

        async with AsyncDatabaseManager({"source": src_url, "target": dst_url}) as mgr:
            rows = await mgr["source"].fetch("SELECT ...")
    """

    def __init__(self, databases: Mapping[str, AsyncDatabase | str], **defaults: Any) -> None:
        if not databases:
            raise ConfigError("databases", "at least one database is required")
        seen: dict[str, str] = {}
        self._dbs: dict[str, AsyncDatabase] = {}
        # Why a database failed to open (reported by `check` as the cause).
        self._open_errors: dict[str, Exception] = {}
        for name, spec in databases.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigError(f"databases.{name}", "names must match [A-Za-z_][A-Za-z0-9_-]*")
            if name.lower() in seen:
                raise ConfigError(
                    f"databases.{name}", f"duplicates {seen[name.lower()]!r} (names ignore case)"
                )
            seen[name.lower()] = name
            if isinstance(spec, AsyncDatabase):
                self._dbs[name] = spec
            elif isinstance(spec, str):
                self._dbs[name] = AsyncDatabase(spec, **{"name": name, **defaults})
            else:
                raise ConfigError(
                    f"databases.{name}", "must be a conninfo string or an AsyncDatabase"
                )

    @classmethod
    def from_settings(cls, settings: Any, *, metrics: Any = None) -> AsyncDatabaseManager:
        """Build from `pgharbor.config.HarborSettings` (one pool per database);
        ``metrics`` (a `MetricsSink`, or several) observes every pool."""
        dbs = {
            name: AsyncDatabase(name=name, settings=db, metrics=metrics)
            for name, db in settings.databases.items()
        }
        return cls(dbs)

    @classmethod
    def from_config(
        cls, path: str | None = None, *, metrics: Any = None, **overrides: Any
    ) -> AsyncDatabaseManager:
        """Build from a TOML file (``[databases.<name>]``), ``.env`` and the
        environment; see `pgharbor.config.load_settings`."""
        from ..config import load_settings

        return cls.from_settings(load_settings(path, **overrides), metrics=metrics)

    @classmethod
    def from_env(cls, *, metrics: Any = None, **overrides: Any) -> AsyncDatabaseManager:
        """Build from the environment (and ``.env``) only."""
        return cls.from_config(None, metrics=metrics, **overrides)

    def __getitem__(self, name: str) -> AsyncDatabase:
        try:
            return self._dbs[name]
        except KeyError:
            raise KeyError(f"no database named {name!r} (have: {', '.join(self._dbs)})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._dbs)

    def __len__(self) -> int:
        return len(self._dbs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {list(self._dbs)}>"

    async def __aenter__(self) -> AsyncDatabaseManager:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self, wait: bool = True, timeout: float | None = None) -> None:
        """Open every database concurrently.

        With ``wait``, block until each has its minimum of connections or has
        failed (a database that cannot open says why at once, and is closed:
        see `AsyncPool.open`); the healthy ones are then usable whatever
        happened to the others.

        Raises:
            ExceptionGroup: one or more databases could not be opened. Its
                message names each of them with its cause; each error is
                also in the group, with its database name in a note.
        """
        names = list(self._dbs)
        results = await arun_all(
            *(partial(self._dbs[n].open, wait=wait, timeout=timeout) for n in names)
        )
        errors: list[Exception] = []
        causes: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Exception):
                self._open_errors[name] = result
                result.add_note(f"database: {name}")
                errors.append(result)
                causes.append(f"{name}: {type(result).__name__}: {result}")
        if errors:
            raise ExceptionGroup(
                f"{len(errors)} of {len(names)} database(s) failed to open: " + "; ".join(causes),
                errors,
            )

    async def close(self, timeout: float = 5.0) -> None:
        """Close every database (each within ``timeout``)."""
        await arun_all(*(partial(db.close, timeout) for db in self._dbs.values()))

    async def drain(self) -> None:
        """Replace every connection of every database gracefully."""
        await arun_all(*(db.drain for db in self._dbs.values()))

    def stats(self) -> dict[str, DatabaseStats]:
        """Each database's pool stats, by name."""
        return {name: db.stats() for name, db in self._dbs.items()}

    def health(self) -> dict[str, DatabaseHealth]:
        """Each database's health (every endpoint of each), by name. No I/O:
        the reports come from what the pools recorded."""
        return {name: db.health() for name, db in self._dbs.items()}

    def on(self, event: str, fn: Callable[[PoolEvent], Any]) -> Callable[[], None]:
        """Call ``fn(event)`` on ``event`` in every pool of every database
        (see `AsyncPool.on`). Returns a function that unregisters it."""
        removers = [db.on(event, fn) for db in self._dbs.values()]

        def remove() -> None:
            for r in removers:
                r()

        return remove

    async def check(
        self,
        requirements: Mapping[str, list[Requirement]] | None = None,
        *,
        minimum_version: int = MINIMUM_SUPPORTED,
        timeout: float = 10.0,
    ) -> CheckReport:
        """Check every database: reachable, latency, TLS, version and
        compatibility, privileges (default: enough to diff the schema), pool
        size against ``max_connections``; never raises for a failing one.
        ``timeout`` bounds the wait for a connection to each database."""
        names = list(self._dbs)
        results = await arun_all(
            *(
                partial(self._check_one, n, (requirements or {}).get(n), minimum_version, timeout)
                for n in names
            )
        )
        checks = [
            r
            if isinstance(r, DatabaseCheck)
            else DatabaseCheck(name=n, target=self._dbs[n].pool.target, error=str(r))
            for n, r in zip(names, results, strict=True)
        ]
        return CheckReport(checks)

    async def _check_one(
        self,
        name: str,
        requirements: list[Requirement] | None,
        minimum_version: int,
        timeout: float,
    ) -> DatabaseCheck:
        db = self._dbs[name]
        check = DatabaseCheck(
            name=name, target=db.pool.target, pool_max_size=db.pool.options.max_size
        )
        failed = self._open_errors.get(name)
        if failed is not None:
            # It could not open: the cause, not the closed pool it left.
            check.error = f"{type(failed).__name__}: {failed}"
            return check
        try:
            async with db.connection(timeout):
                check.reachable = True
            start = time.perf_counter()
            await db.fetchval("SELECT 1")
            check.latency_ms = (time.perf_counter() - start) * 1000.0
            facts = await db.facts()
            check.version = str(facts.version)
            check.compatible = facts.version.is_compatible(minimum_version)
            check.tls = facts.tls
            check.user, check.database = facts.user, facts.database
            check.max_connections = facts.max_connections
            info = await db.info()
            check.warnings.extend(info["warnings"])
            report = await db.check_privileges(requirements)
            check.privileges_sufficient = report.sufficient
            check.privileges_missing = [
                f"{m} ({', '.join(m.objects)})" if m.objects else str(m) for m in report.missing
            ]
            check.write_access = write_access(await db.fetchrow(WRITE_ACCESS))
            check.can_write = bool(check.write_access)
            if not check.tls:
                check.warnings.append("connection is not encrypted (sslmode)")
        except Exception as exc:  # reported in the check, not raised
            check.error = f"{type(exc).__name__}: {exc}"
            return check
        problems = []
        if not check.compatible:
            problems.append(f"server {check.version} is older than {minimum_version}")
        if not check.privileges_sufficient:
            problems.append("insufficient privileges")
        check.error = "; ".join(problems) or None
        check.ok = not problems
        return check
