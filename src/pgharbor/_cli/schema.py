"""``pgharbor schema [TARGET] [--json]``: print a schema snapshot.

TARGET is a URL, a keyword DSN or the name of a database in ``--config`` (or
the environment). With none, a temporary server with the sample ``source``
database is started, as ``check`` does. The text form lists each schema's
objects with what matters about them; ``--json`` prints the snapshot's
``to_json()``. Exit status 2 when the database cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..schema import SchemaSnapshot, Table, View
from .samples import embedded_schema_targets
from .targets import named_or_url, small_async_database

__all__ = ["render_snapshot", "schema"]


def schema(
    target: Annotated[
        str | None,
        typer.Argument(help="URL, keyword DSN or a name from --config; none: a sample."),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="A pgharbor TOML file.")
    ] = None,
    schemas: Annotated[
        list[str] | None,
        typer.Option("--schema", "-s", help="A schema to read (repeat); default: all."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the database.")] = 10.0,
) -> None:
    """Print what the catalogue holds: schemas, tables, columns, constraints,
    indexes, triggers, views, sequences, functions, types, extensions."""
    console = Console(stderr=as_json)
    with contextlib.ExitStack() as stack:
        if target is None:
            target = stack.enter_context(embedded_schema_targets(console))["source"]
            spec: Any = target
        else:
            spec = named_or_url(target, config)
        try:
            snap = asyncio.run(_snapshot(spec, schemas, timeout))
        except Exception as exc:
            console.print(f"[red]error:[/red] {escape(_message(exc))}")
            raise typer.Exit(code=2) from None
    if as_json:
        sys.stdout.write(snap.to_json() + "\n")
    else:
        render_snapshot(snap, console)


async def _snapshot(spec: Any, schemas: list[str] | None, timeout: float) -> SchemaSnapshot:
    db = small_async_database("db", spec, timeout, "pgharbor-schema")
    try:
        # A failed open leaves the pool to close, as any other failure.
        await db.open(timeout=timeout)
        snap: SchemaSnapshot = await db.schema(schemas or None)
    finally:
        await db.close()
    return snap


def _message(exc: BaseException) -> str:
    """One line per error, for a group too (the pool says which database)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_message(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _about(owner: str, comment: str | None) -> str:
    text = f"  [dim]owner {escape(owner)}[/dim]" if owner else ""
    return text + (f"  [italic]-- {escape(comment)}[/italic]" if comment else "")


def render_snapshot(snap: SchemaSnapshot, console: Console) -> None:
    """The snapshot as an indented listing, one schema after another."""
    console.print(
        f"[bold]{escape(snap.database)}[/bold]  PostgreSQL {snap.server_version}"
        f"  [dim]read as {escape(snap.user)}"
        + ("  (standby)" if snap.in_recovery else "")
        + "[/dim]"
    )
    for ext in snap.extensions:
        console.print(f"extension [bold]{escape(ext.name)}[/bold] {escape(ext.version)}")
    for sch in snap.schemas:
        console.print(
            f"schema [bold]{escape(sch.qualified_name)}[/bold]" + _about(sch.owner, sch.comment)
        )
        for line in _schema_lines(snap, sch.name):
            console.print("  " + line)
    counts = ", ".join(f"{n} {kind}" for kind, n in snap.counts().items() if n)
    console.print(f"[dim]{counts}[/dim]")


def _schema_lines(snap: SchemaSnapshot, name: str) -> list[str]:
    out: list[str] = []
    for t in (t for t in snap.tables if t.schema == name):
        out.extend(_relation_lines(t))
    for v in (v for v in snap.views if v.schema == name):
        out.extend(_relation_lines(v))
    for s in (s for s in snap.sequences if s.schema == name):
        owned = f" owned by {escape(s.owned_by)}" if s.owned_by else ""
        out.append(
            f"sequence [bold]{escape(s.qualified_name)}[/bold] {escape(s.type)} start {s.start}"
            f" increment {s.increment}{owned}" + _about(s.owner, s.comment)
        )
    for f in (f for f in snap.functions if f.schema == name):
        result = f" → {escape(f.result)}" if f.result else ""
        out.append(
            f"{f.kind} [bold]{escape(f.signature)}[/bold]{result}  [dim]{escape(f.language)},"
            f" {f.volatility}{', security definer' if f.security_definer else ''}[/dim]"
            + _about(f.owner, f.comment)
        )
    for e in (e for e in snap.enums if e.schema == name):
        out.append(f"enum [bold]{escape(e.qualified_name)}[/bold] ({escape(', '.join(e.labels))})")
    for d in (d for d in snap.domains if d.schema == name):
        checks = "".join(f" {escape(c.definition)}" for c in d.constraints)
        out.append(f"domain [bold]{escape(d.qualified_name)}[/bold] {escape(d.base_type)}{checks}")
    for c in (c for c in snap.composites if c.schema == name):
        attrs = ", ".join(f"{a.name} {a.type}" for a in c.attributes)
        out.append(f"type [bold]{escape(c.qualified_name)}[/bold] ({escape(attrs)})")
    for r in (r for r in snap.ranges if r.schema == name):
        out.append(f"range [bold]{escape(r.qualified_name)}[/bold] of {escape(r.subtype)}")
    return out


def _relation_lines(rel: Table | View) -> list[str]:
    kind = rel.kind if isinstance(rel, View) else _table_kind(rel)
    out = [f"{kind} [bold]{escape(rel.qualified_name)}[/bold]" + _about(rel.owner, rel.comment)]
    if isinstance(rel, Table):
        if rel.partition_key:
            out.append(f"  [dim]partitioned by {escape(rel.partition_key)}[/dim]")
        if rel.partition_of:
            out.append(
                f"  [dim]partition of {escape(rel.partition_of)}"
                f" {escape(rel.partition_bound or '')}[/dim]"
            )
        if rel.inherits:
            out.append(f"  [dim]inherits {escape(', '.join(rel.inherits))}[/dim]")
    for col in rel.columns:
        extra = [
            "not null" if col.not_null else "",
            f"default {col.default}" if col.default else "",
            f"identity {col.identity}" if col.identity else "",
            f"generated {col.generated} as {col.expression}" if col.generated else "",
            f"collate {col.collation}" if col.collation else "",
        ]
        out.append(
            f"  {escape(col.name)} [cyan]{escape(col.type)}[/cyan] "
            + escape("  ".join(e for e in extra if e))
        )
    if isinstance(rel, Table):
        for con in rel.constraints:
            out.append(f"  [dim]constraint[/dim] {escape(con.name)} {escape(con.definition)}")
    for idx in rel.indexes:
        if idx.constraint is None:
            out.append(f"  [dim]index[/dim] {escape(idx.definition)}")
    for trg in rel.triggers:
        off = "" if trg.enabled == "origin" else f" [yellow]({trg.enabled})[/yellow]"
        out.append(f"  [dim]trigger[/dim] {escape(trg.definition)}{off}")
    return out


def _table_kind(t: Table) -> str:
    prefix = {"unlogged": "unlogged ", "temporary": "temporary "}.get(t.persistence, "")
    return prefix + t.kind
