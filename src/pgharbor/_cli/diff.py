"""``pgharbor diff [SOURCE TARGET]``: what differs between two databases' schemas.

SOURCE and TARGET are URLs, keyword DSNs or names of databases in
``--config`` (or the environment); with neither, the config's ``source`` and
``target``, else a temporary server with two sample databases that differ.
Both open side by side (an `AsyncDatabaseManager`), both are checked first
(reachable, version, privileges to read the catalogue), then both snapshots
are taken at once and compared (`pgharbor.schema.diff`). The report is text
(grouped by schema and object, coloured) or ``--json``. Nothing is changed
and no SQL is written. Exit status: 0 equal, 1 different, 2 error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .._acompat import arun_all
from ..checks import CheckReport
from ..privileges import schema_diff_requirements
from ..schema import Difference, SchemaSnapshot, diff, quote_ident
from .samples import embedded_schema_targets
from .schema import _message
from .targets import env_configured, named_or_url, small_async_database

__all__ = ["diff_command", "render_differences"]

_SIGN = {"added": "[green]+[/green]", "removed": "[red]-[/red]", "changed": "[yellow]~[/yellow]"}


@dataclass
class _Outcome:
    """What the run produced: snapshots and differences, or why not."""

    snapshots: dict[str, SchemaSnapshot] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    checks: CheckReport | None = None
    error: str | None = None
    differences: list[Difference] = field(default_factory=list)


def diff_command(
    source: Annotated[
        str | None, typer.Argument(help="URL, keyword DSN or a name from --config.")
    ] = None,
    target: Annotated[
        str | None, typer.Argument(help="URL, keyword DSN or a name from --config.")
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="A pgharbor TOML file.")
    ] = None,
    schemas: Annotated[
        list[str] | None,
        typer.Option("--schema", "-s", help="A schema to compare (repeat); default: all."),
    ] = None,
    ignore_default_names: Annotated[
        bool,
        typer.Option(help="Match constraints and indexes named by PostgreSQL by definition."),
    ] = False,
    ignore_owners: Annotated[bool, typer.Option(help="Leave owners out.")] = False,
    ignore_grants: Annotated[bool, typer.Option(help="Leave privileges out.")] = False,
    ignore_comments: Annotated[bool, typer.Option(help="Leave comments out.")] = False,
    column_order: Annotated[bool, typer.Option(help="Report column positions too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each database.")] = 10.0,
) -> None:
    """Compare the schemas of SOURCE and TARGET: exit 0 when equal, 1 when
    they differ, 2 when they could not be compared."""
    console = Console(stderr=as_json)
    options = {
        "ignore_default_names": ignore_default_names,
        "ignore_owners": ignore_owners,
        "ignore_grants": ignore_grants,
        "ignore_comments": ignore_comments,
        "column_order": column_order,
    }
    with contextlib.ExitStack() as stack:
        if (source is None) != (target is None):
            console.print("[red]error:[/red] give both SOURCE and TARGET, or neither")
            raise typer.Exit(code=2)
        if source is not None and target is not None:
            specs = {"source": named_or_url(source, config), "target": named_or_url(target, config)}
        elif config or env_configured():
            specs = {n: named_or_url(n, config) for n in ("source", "target")}
        else:
            specs = dict(stack.enter_context(embedded_schema_targets(console)))
        outcome = asyncio.run(_run(specs, schemas or None, timeout, options))
    if as_json:
        sys.stdout.write(json.dumps(_to_json(outcome), indent=2, ensure_ascii=False) + "\n")
    else:
        _render(outcome, console)
    if outcome.error is not None:
        raise typer.Exit(code=2)
    if outcome.differences:
        raise typer.Exit(code=1)


async def _run(
    specs: dict[str, Any], schemas: list[str] | None, timeout: float, options: dict[str, bool]
) -> _Outcome:
    from .._async.manager import AsyncDatabaseManager

    outcome = _Outcome()
    try:
        dbs = {n: small_async_database(n, s, timeout, "pgharbor-diff") for n, s in specs.items()}
    except Exception as exc:  # a bad URL or setting: ConfigError naming it
        outcome.error = _message(exc)
        return outcome
    manager = AsyncDatabaseManager(dbs)
    outcome.targets = {n: db.pool.target for n, db in dbs.items()}
    try:
        with contextlib.suppress(Exception):
            # Failures are reported per database by check(), not raised here.
            await manager.open(timeout=timeout)
        needs = schema_diff_requirements(schemas or ())
        outcome.checks = await manager.check({n: needs for n in dbs}, timeout=timeout)
        if not outcome.checks.ok:
            outcome.error = "checks failed: " + "; ".join(
                f"{d.name}: {d.error}" for d in outcome.checks.databases if not d.ok
            )
            return outcome
        results = await arun_all(*(partial(dbs[n].schema, schemas) for n in ("source", "target")))
        for name, result in zip(("source", "target"), results, strict=True):
            if isinstance(result, BaseException):
                outcome.error = f"{name}: {_message(result)}"
                return outcome
            outcome.snapshots[name] = result
    finally:
        await manager.close()
    outcome.differences = diff(outcome.snapshots["source"], outcome.snapshots["target"], **options)
    return outcome


def _header(name: str, snap: SchemaSnapshot, target: str) -> dict[str, Any]:
    return {
        "name": name,
        "target": target,
        "database": snap.database,
        "user": snap.user,
        "server_version": snap.server_version,
        "in_recovery": snap.in_recovery,
        "counts": snap.counts(),
    }


def _to_json(outcome: _Outcome) -> dict[str, Any]:
    data: dict[str, Any] = {
        "equal": None if outcome.error else not outcome.differences,
        "error": outcome.error,
        "databases": [
            _header(n, s, outcome.targets.get(n, "")) for n, s in outcome.snapshots.items()
        ],
        "differences": [d.to_dict() for d in outcome.differences],
    }
    if outcome.error and outcome.checks is not None:
        data["checks"] = outcome.checks.to_dict()
    return data


def _render(outcome: _Outcome, console: Console) -> None:
    if outcome.error:
        if outcome.checks is not None and not outcome.checks.ok:
            from ..cli import _render_report

            _render_report(outcome.checks, console)
        console.print(f"[red]error:[/red] {escape(outcome.error)}")
        return
    for name, snap in outcome.snapshots.items():
        standby = " (standby)" if snap.in_recovery else ""
        console.print(
            f"[bold]{name}[/bold]  PostgreSQL {snap.server_version}{standby}"
            f"  [dim]{escape(outcome.targets.get(name, snap.database))}[/dim]"
        )
    versions = {s.server_version_num // 10000 for s in outcome.snapshots.values()}
    if len(versions) > 1:
        console.print(
            "[yellow]warning:[/yellow] different major versions: definitions and default"
            " privileges may be rendered differently"
        )
    render_differences(outcome.differences, console)


def render_differences(differences: list[Difference], console: Console) -> None:
    """The differences grouped by schema, then object (its parts indented
    beneath it), with a count at the end."""
    if not differences:
        console.print("[green]the schemas are the same[/green]")
        return
    group: str | None = None
    table: str | None = None
    for d in differences:
        # A schema's own difference heads its group; else a plain header.
        label = d.name if d.kind == "schema" else quote_ident(d.schema or "")
        if label != group:
            group, table = label, None
            if d.kind != "schema":
                console.print(f"[bold]schema {escape(label)}[/bold]")
        indent = "  "
        if d.table is not None:
            if d.table != table:
                table = d.table
                console.print(f"  [dim]{escape(d.table)}[/dim]")
            indent = "    "
        elif d.kind in ("table", "view"):
            table = d.name
        _render_one(d, "" if d.kind == "schema" else indent, console)
    counts = {
        c: sum(1 for d in differences if d.change == c) for c in ("added", "removed", "changed")
    }
    summary = ", ".join(f"{n} {c}" for c, n in counts.items() if n)
    console.print(f"[bold]{len(differences)} difference(s)[/bold]: {summary}")


def _render_one(d: Difference, indent: str, console: Console) -> None:
    detail = f"  [dim]{escape(_short(d.detail))}[/dim]" if d.detail else ""
    console.print(f"{indent}{_SIGN[d.change]} {d.kind} [bold]{escape(d.name)}[/bold]{detail}")
    for c in d.changes:
        console.print(f"{indent}    {escape(c.attribute)}: {_change_text(c.source, c.target)}")


def _short(text: str, limit: int = 120) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _change_text(source: Any, target: Any) -> str:
    if isinstance(source, list) and isinstance(target, list):
        gone = [x for x in source if x not in target]
        new = [x for x in target if x not in source]
        if gone or new:
            parts = [f"[red]-{escape(_item(x))}[/red]" for x in gone]
            parts += [f"[green]+{escape(_item(x))}[/green]" for x in new]
            return " ".join(parts)
    return f"[red]{escape(_value(source))}[/red] → [green]{escape(_value(target))}[/green]"


def _item(x: Any) -> str:
    if isinstance(x, dict) and {"grantee", "privilege"} <= x.keys():
        return f"{x['privilege']} to {x['grantee']}" + (
            " (grantable)" if x.get("grantable") else ""
        )
    return _value(x)


def _value(x: Any) -> str:
    if x is None:
        return "(none)"
    if isinstance(x, str):
        return _short(x)
    return _short(json.dumps(x, ensure_ascii=False))
