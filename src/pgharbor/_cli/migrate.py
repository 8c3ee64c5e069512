"""``pgharbor migrate``: status, plan, up, down and repair of SQL migrations.

``pgharbor migrate COMMAND [TARGET] [--database NAME] [--config FILE]
[--dir DIR]`` works on one database: TARGET (a URL or keyword DSN), else the
configuration's database ``NAME`` (``--config`` file, ``.env``, environment;
``--database`` may be left out when only one is configured). Migrations are
read from ``--dir`` (default ``migrations``). Commands:

- ``status``: every migration and its state; exit 1 if one needs attention
  (failed, changed or missing).
- ``plan``: what ``up`` would run, and which migrations run outside a
  transaction; nothing is changed.
- ``up [--to V]``: apply pending migrations (``--allow-drift``,
  ``--out-of-order``, ``--dry-run``).
- ``down [--to V | --steps N]``: roll back (default: the newest one).
- ``repair``: accept the files as they are (after fixing a failed run by hand).

``--json`` prints JSON on stdout. A failure exits with status 1 and says
which file, line and statement; bad options exit 2. Passwords never appear.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._conninfo import parse_conninfo, redact, secrets_of
from ..errors import ConfigError, HarborError

if TYPE_CHECKING:
    from .._migrate.plan import MigrationPlan, MigrationStep
    from .._sync.database import Database
    from .._sync.migrations import Migrations

__all__ = ["app"]

app = typer.Typer(
    name="migrate",
    help="Versioned SQL migrations: status, plan, up, down, repair.",
    no_args_is_help=True,
    add_completion=False,
)

_APPLICATION_NAME = "pgharbor-migrate"

Target = Annotated[
    str | None,
    typer.Argument(help="URL or keyword DSN; none: the configured database.", show_default=False),
]
DatabaseName = Annotated[
    str | None,
    typer.Option("--database", "-d", help="Which configured database.", show_default=False),
]
ConfigFile = Annotated[
    str | None, typer.Option("--config", "-c", help="A pgharbor TOML file.", show_default=False)
]
Directory = Annotated[str, typer.Option("--dir", help="The migrations directory.")]
Table_ = Annotated[str, typer.Option("--table", help="The history table.")]
Schema = Annotated[
    str | None,
    typer.Option("--schema", help="Its schema (default: the search_path's).", show_default=False),
]
LockTimeout = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for another deployer.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
To = Annotated[int | None, typer.Option("--to", help="Target version.", show_default=False)]
AllowDrift = Annotated[
    bool, typer.Option("--allow-drift", help="Go on although applied files changed or are gone.")
]
OutOfOrder = Annotated[
    bool, typer.Option("--out-of-order", help="Apply pending files older than the newest applied.")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Only show what would run.")]


@contextlib.contextmanager
def _migrations(
    target: str | None,
    database: str | None,
    config: str | None,
    directory: str,
    table: str,
    schema: str | None,
    lock_timeout: float,
) -> Iterator[Migrations]:
    """Open the database and its migrations for the block. pgharbor's errors
    (connecting, configuration, migrations) end the command with status 1
    and their message, without secrets."""
    from .._sync.migrations import Migrations

    if not lock_timeout > 0:
        raise typer.BadParameter("must be > 0", param_hint="'--lock-timeout'")
    secrets: list[str] = []
    params: dict[str, str] = {}
    if target is not None:
        try:
            params = parse_conninfo(target, field="TARGET")
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="'TARGET'") from None
        secrets = secrets_of(params)
    try:
        db = _open(target, params, database, config)
        migrations = Migrations(
            db, directory, table=table, schema=schema, lock_timeout=lock_timeout
        )
        with db:
            yield migrations
    except HarborError as exc:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        err.print(f"[red]error:[/red] {escape(redact(str(exc), secrets))}")
        raise typer.Exit(code=1) from None


def _open(
    target: str | None, params: dict[str, str], database: str | None, config: str | None
) -> Database:
    """The Database to migrate: the target, else the configured ``database``."""
    from .._sync.database import Database
    from ..config import load_settings

    if target is not None:
        kwargs = {} if "application_name" in params else {"application_name": _APPLICATION_NAME}
        return Database(target, name=database or "db", min_size=1, max_size=2, kwargs=kwargs)
    settings = load_settings(config)
    names = list(settings.databases)
    if not names:
        raise typer.BadParameter(
            "no database configured: give a URL, or --config with [databases.NAME]",
            param_hint="'TARGET'",
        )
    if database is None:
        if len(names) > 1:
            raise typer.BadParameter(
                f"say which database: one of {', '.join(names)}", param_hint="'--database'"
            )
        database = names[0]
    if database not in settings.databases:
        raise typer.BadParameter(
            f"no database {database!r} configured (have: {', '.join(names)})",
            param_hint="'--database'",
        )
    spec = settings.databases[database].model_copy(update={"min_size": 1, "max_size": 2})
    return Database.from_settings(spec, database)


def _render_plan(plan: MigrationPlan, console: Console, *, done: bool) -> None:
    verb = {"up": "apply", "down": "roll back"}[plan.direction]
    if not plan.steps:
        where = "no migration applied" if plan.current is None else f"version {plan.current}"
        console.print(f"nothing to {verb}: the database is at {where}")
        return
    if not done:
        console.print(f"{len(plan.steps)} migration(s) to {verb}:")
        for step in plan.steps:
            how = "in a transaction" if step.transactional else "[yellow]no transaction[/yellow]"
            console.print(
                f"  {escape(step.label)}  {step.statements} statement(s), {how}"
                f"  [dim]{escape(step.file)}[/dim]"
            )
            for note in step.notes:
                console.print(f"      [yellow]{escape(note)}[/yellow]")
    target = "no migration applied" if plan.target is None else f"version {plan.target}"
    console.print(f"the database {'is' if done else 'would be'} at {target}")


def _progress(console: Console) -> Any:
    def on_step(step: MigrationStep, seconds: float | None) -> None:
        verb = "applying" if step.direction == "up" else "rolling back"
        if seconds is None:
            console.print(f"{verb} {escape(step.label)} ...")
        else:
            console.print(f"  [green]ok[/green] {escape(step.label)} ({seconds:.3f} s)")

    return on_step


@app.command()
def status(
    target: Target = None,
    database: DatabaseName = None,
    config: ConfigFile = None,
    directory: Directory = "migrations",
    table: Table_ = "pgharbor_migrations",
    schema: Schema = None,
    as_json: AsJson = False,
) -> None:
    """Show every migration and its state; exit 1 if one needs attention."""
    with _migrations(target, database, config, directory, table, schema, 60.0) as m:
        states = m.status()
    if as_json:
        sys.stdout.write(json.dumps([s.to_dict() for s in states], indent=2) + "\n")
    else:
        view = Table(box=None, padding=(0, 2, 0, 0))
        for column in ("version", "name", "state", "applied at", "detail"):
            view.add_column(column, overflow="fold")
        colors = {"applied": "green", "pending": "cyan", "out-of-order": "yellow"}
        for s in states:
            color = colors.get(s.state, "red")
            when = s.applied_at.strftime("%Y-%m-%d %H:%M:%S") if s.applied_at else ""
            view.add_row(
                str(s.version),
                escape(s.name),
                f"[{color}]{s.state}[/{color}]",
                when,
                escape(s.detail or ""),
            )
        Console(highlight=False).print(view)
    if any(s.state in ("failed", "changed", "missing") for s in states):
        raise typer.Exit(code=1)


@app.command()
def plan(
    target: Target = None,
    database: DatabaseName = None,
    config: ConfigFile = None,
    directory: Directory = "migrations",
    table: Table_ = "pgharbor_migrations",
    schema: Schema = None,
    to: To = None,
    allow_drift: AllowDrift = False,
    out_of_order: OutOfOrder = False,
    as_json: AsJson = False,
) -> None:
    """Show what up would run (nothing is changed)."""
    with _migrations(target, database, config, directory, table, schema, 60.0) as m:
        result = m.plan(to, allow_drift=allow_drift, out_of_order=out_of_order)
    _output(result, as_json, done=False)


@app.command()
def up(
    target: Target = None,
    database: DatabaseName = None,
    config: ConfigFile = None,
    directory: Directory = "migrations",
    table: Table_ = "pgharbor_migrations",
    schema: Schema = None,
    to: To = None,
    allow_drift: AllowDrift = False,
    out_of_order: OutOfOrder = False,
    dry_run: DryRun = False,
    lock_timeout: LockTimeout = 300.0,
    as_json: AsJson = False,
) -> None:
    """Apply pending migrations, oldest first, each in its own transaction."""
    args = (target, database, config, directory, table, schema, lock_timeout)
    console = Console(stderr=as_json, highlight=False, soft_wrap=True)
    with _migrations(*args) as m:
        result = m.up(
            to,
            dry_run=dry_run,
            allow_drift=allow_drift,
            out_of_order=out_of_order,
            on_step=None if dry_run else _progress(console),
        )
    _output(result, as_json, done=not dry_run)


@app.command()
def down(
    target: Target = None,
    database: DatabaseName = None,
    config: ConfigFile = None,
    directory: Directory = "migrations",
    table: Table_ = "pgharbor_migrations",
    schema: Schema = None,
    to: Annotated[
        int | None,
        typer.Option("--to", help="Roll back every migration above this version (0: all)."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Roll back this many (default: 1).", show_default=False),
    ] = None,
    allow_drift: AllowDrift = False,
    dry_run: DryRun = False,
    lock_timeout: LockTimeout = 300.0,
    as_json: AsJson = False,
) -> None:
    """Roll back applied migrations, newest first, running their down parts."""
    if to is not None and steps is not None:
        raise typer.BadParameter("give --to or --steps, not both", param_hint="'--steps'")
    if steps is not None and steps < 1:
        raise typer.BadParameter("must be at least 1", param_hint="'--steps'")
    args = (target, database, config, directory, table, schema, lock_timeout)
    console = Console(stderr=as_json, highlight=False, soft_wrap=True)
    with _migrations(*args) as m:
        result = m.down(
            to,
            steps=steps,
            dry_run=dry_run,
            allow_drift=allow_drift,
            on_step=None if dry_run else _progress(console),
        )
    _output(result, as_json, done=not dry_run)


@app.command()
def repair(
    target: Target = None,
    database: DatabaseName = None,
    config: ConfigFile = None,
    directory: Directory = "migrations",
    table: Table_ = "pgharbor_migrations",
    schema: Schema = None,
    lock_timeout: LockTimeout = 300.0,
) -> None:
    """Accept the files as they are (after fixing a failed run by hand).

    Forgets failed entries, adopts the checksums of edited files, forgets
    applied versions whose file is gone.
    """
    args = (target, database, config, directory, table, schema, lock_timeout)
    with _migrations(*args) as m:
        changes = m.repair()
    console = Console(highlight=False, soft_wrap=True)
    for line in changes or ["nothing to repair"]:
        console.print(escape(line))


def _output(result: MigrationPlan, as_json: bool, *, done: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        _render_plan(result, Console(highlight=False, soft_wrap=True), done=done)
