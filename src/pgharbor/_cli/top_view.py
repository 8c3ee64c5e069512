"""How ``pgharbor top`` draws a snapshot: a header, a Pools and a Clients table.

Pure: `render` turns the data `top_data.snapshot` returns into rich
renderables, with no I/O and no clock of its own, so a frame can be tested
(or printed once) without a terminal.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["render"]

_ROLE_STYLE = {"primary": "bold green", "replica": "cyan", "unknown": "yellow"}


def _num(value: Any) -> str:
    return "-" if value is None else str(int(value))


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _pair_ms(p50: Any, p99: Any) -> str:
    return f"{_ms(p50)}/{_ms(p99)}"


def _age(seconds: Any) -> str:
    """``0.4 s``, ``12 s``, ``3m05s``, ``2h10m``; ``-`` for None."""
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def _bytes(n: Any) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _lag(row: Mapping[str, Any]) -> str:
    if row["role"] != "replica" or (row["lag_seconds"] is None and row["lag_bytes"] is None):
        return "-"
    seconds = "?" if row["lag_seconds"] is None else _age(row["lag_seconds"])
    size = "?" if row["lag_bytes"] is None else _bytes(row["lag_bytes"])
    return f"{seconds} / {size}"


def _header(snap: Mapping[str, Any]) -> Text:
    when = datetime.datetime.fromtimestamp(snap["time"]).strftime("%H:%M:%S")
    pools = snap["pools"]
    header = Text.assemble(
        ("pgharbor top", "bold"),
        f"  {when}  every {snap['interval']:g} s  ",
        f"{snap['reachable']}/{len(pools)} nodes answering",
    )
    if snap["errors"]:
        header.append(f"  {len(snap['errors'])} error(s)", style="bold red")
    return header


def _has_nodes(rows: list[Mapping[str, Any]]) -> bool:
    """Whether some database has replicas (else the node column is left out)."""
    return any(row["node"] != "-" for row in rows)


def _pools_table(snap: Mapping[str, Any]) -> Table:
    nodes = _has_nodes(snap["pools"])
    table = Table(title="Pools", title_justify="left", expand=False)
    table.add_column("database", no_wrap=True)
    if nodes:
        table.add_column("node", no_wrap=True)
    table.add_column("target", overflow="fold")
    table.add_column("role", no_wrap=True)
    table.add_column("lag", no_wrap=True)
    table.add_column("breaker", no_wrap=True)
    for heading in ("size", "in use", "idle", "waiting"):
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("wait ms p50/p99", justify="right", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    table.add_column("rtt ms p50/p99", justify="right", no_wrap=True)
    for row in snap["pools"]:
        role = row["role"]
        breaker = row["breaker"] or "-"
        errors = _num(row["errors"])
        table.add_row(
            escape(row["database"]),
            *([escape(row["node"])] if nodes else []),
            escape(row["target"]),
            Text(role, style=_ROLE_STYLE.get(role, "")),
            _lag(row),
            Text(breaker, style="bold red" if breaker == "open" else ""),
            _num(row["size"]),
            _num(row["in_use"]),
            _num(row["idle"]),
            Text(_num(row["waiting"]), style="bold yellow" if row["waiting"] else ""),
            _pair_ms(row["wait_p50_ms"], row["wait_p99_ms"]),
            Text(errors, style="red" if row["errors"] else ""),
            Text("ERROR", style="bold red")
            if row["error"] is not None
            else Text(_pair_ms(row["rtt_p50_ms"], row["rtt_p99_ms"])),
        )
    return table


def _clients_table(snap: Mapping[str, Any]) -> RenderableType:
    rows = snap["clients"]
    table = Table(title="Clients (pg_stat_activity)", title_justify="left", expand=False)
    nodes = _has_nodes(rows)
    table.add_column("database", no_wrap=True)
    if nodes:
        table.add_column("node", no_wrap=True)
    table.add_column("application", overflow="fold")
    for heading in ("conns", "active", "idle", "idle in tx", "lock waits"):
        table.add_column(heading, justify="right", no_wrap=True)
    table.add_column("oldest xact", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            escape(row["database"]),
            *([escape(row["node"])] if nodes else []),
            escape(row["application"]),
            str(row["connections"]),
            str(row["active"]),
            str(row["idle"]),
            Text(
                str(row["idle_in_transaction"]),
                style="yellow" if row["idle_in_transaction"] else "",
            ),
            Text(str(row["waiting_lock"]), style="bold red" if row["waiting_lock"] else ""),
            _age(row["oldest_xact"]),
        )
    if not rows:
        return Group(table, Text("  no other clients", style="dim"))
    return table


def render(snap: Mapping[str, Any]) -> Group:
    """One frame: a header line (time, interval, nodes answering), the error
    messages (already masked), the Pools table and the Clients table."""
    parts: list[RenderableType] = [_header(snap)]
    for message in snap["errors"]:
        parts.append(Text(f"  error: {message}", style="red"))
    for message in snap.get("log", ()):
        parts.append(Text(f"  log: {message}", style="yellow"))
    parts.append(_pools_table(snap))
    parts.append(_clients_table(snap))
    return Group(*parts)
