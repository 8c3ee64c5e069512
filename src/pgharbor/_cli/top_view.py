"""How ``pgharbor top`` draws a snapshot: a header, a Clients and a Nodes table.

Pure: `render` turns the data `top_data.snapshot` returns into rich
renderables for a given width, with no I/O and no clock of its own, so a
frame can be tested (or printed once) without a terminal.

The width decides the columns: each has a rank, and the lowest-ranked ones
are left out until the table fits (an 80-column terminal keeps what matters:
who is connected, how busy, how long the oldest transaction, each node's role
and round trip). Targets are in the header, one line each, not in a column.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["DEFAULT_WIDTH", "render"]

#: The width a frame is laid out for when none is given.
DEFAULT_WIDTH = 80

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


def _label(row: Mapping[str, Any]) -> str:
    """``database``, or ``database/node`` for a node of a database with replicas."""
    return row["database"] if row["node"] == "-" else f"{row['database']}/{row['node']}"


def _header(snap: Mapping[str, Any]) -> list[Text]:
    """The status line, then one line per target (labelled as in the tables,
    shown as ``host:port/dbname as user``): the target is the first thing a
    reader checks, and no column has to hold it."""
    when = datetime.datetime.fromtimestamp(snap["time"]).strftime("%H:%M:%S")
    pools = snap["pools"]
    status = Text.assemble(
        ("pgharbor top", "bold"),
        f"  {when}  every {snap['interval']:g} s  ",
        f"{snap['reachable']}/{len(pools)} nodes answering",
    )
    if snap["errors"]:
        status.append(f"  {len(snap['errors'])} error(s)", style="bold red")
    lines = [status]
    for row in pools:
        lines.append(Text.assemble((f"  {_label(row)}", "bold"), "  ", (row["target"], "dim")))
    return lines


@dataclass
class _Column:
    """One column of a table being fitted: the higher ``rank``, the longer it
    stays as the width shrinks; ``short`` is its heading when space is
    tight; ``fold`` columns may wrap their cells."""

    heading: str
    rank: int
    justify: str = "right"
    fold: bool = False
    short: str = ""
    cells: list[str | Text] = field(default_factory=list)  # str: escaped markup

    def width(self, short: bool) -> int:
        """Cells wide it needs (a folding column: at most 24 of them)."""
        heading = self.short if short and self.short else self.heading
        longest = max(
            (
                Text.from_markup(c).cell_len if isinstance(c, str) else c.cell_len
                for c in self.cells
            ),
            default=0,
        )
        if self.fold:
            longest = min(longest, max(24, len(heading)))
        return max(len(heading), longest)


def _needed(columns: Sequence[_Column], short: bool) -> int:
    """Width of a table of ``columns`` with rich's default box: each column
    costs its content, two spaces of padding and a rule; one more rule ends it."""
    return sum(c.width(short) + 3 for c in columns) + 1


def _fit(title: str, columns: Sequence[_Column], width: int) -> Table:
    """A table of the columns that fit in ``width``: short headings first,
    then the lowest-ranked columns left out, until it fits."""
    kept = list(columns)
    short = _needed(kept, short=False) > width
    while len(kept) > 1 and _needed(kept, short) > width:
        kept.remove(min(kept, key=lambda c: c.rank))
    table = Table(title=title, title_justify="left", expand=False)
    for column in kept:
        table.add_column(
            column.short if short and column.short else column.heading,
            justify="left" if column.justify == "left" else "right",
            no_wrap=not column.fold,
            overflow="fold",
        )
    for i in range(len(kept[0].cells) if kept else 0):
        table.add_row(*(column.cells[i] for column in kept))
    return table


def _where(rows: list[Mapping[str, Any]]) -> _Column:
    """The first column: which database (and node, when some database has
    replicas) a row is about."""
    nodes = any(row["node"] != "-" for row in rows)
    column = _Column("database/node" if nodes else "database", 90, "left")
    column.cells = [escape(_label(row)) for row in rows]
    return column


def _clients_table(snap: Mapping[str, Any], width: int) -> RenderableType:
    """What ``pg_stat_activity`` shows per application: the pools of the
    processes being watched. First, because it is what top is for."""
    rows = snap["clients"]
    where = _where(rows)
    columns = [where, _Column("application", 100, "left", fold=True), _Column("conns", 95)]
    columns += [_Column("active", 70), _Column("idle", 30)]
    columns += [_Column("idle in tx", 60, short="in tx"), _Column("lock waits", 50, short="locks")]
    columns += [_Column("oldest xact", 55, short="oldest")]
    _, app, conns, active, idle, in_tx, locks, oldest = columns
    for row in rows:
        app.cells.append(escape(row["application"]))
        conns.cells.append(str(row["connections"]))
        active.cells.append(str(row["active"]))
        idle.cells.append(str(row["idle"]))
        count = row["idle_in_transaction"]
        in_tx.cells.append(Text(str(count), style="yellow" if count else ""))
        waits = row["waiting_lock"]
        locks.cells.append(Text(str(waits), style="bold red" if waits else ""))
        oldest.cells.append(_age(row["oldest_xact"]))
    if len(snap["pools"]) == 1:
        columns.remove(where)  # the header names the one target
    table = _fit("Clients (pg_stat_activity)", columns, width)
    if not rows:
        return Group(table, Text("  no other clients", style="dim"))
    return table


def _nodes_table(snap: Mapping[str, Any], width: int) -> Table:
    """Each node as top's own small pool sees it: role, lag, round trip,
    breaker, errors; then that pool's counters, the first to go when narrow
    (they describe top's connections, not your application's)."""
    rows = snap["pools"]
    where = _where(rows)
    columns = [where, _Column("role", 80, "left"), _Column("lag", 70, "left")]
    columns += [_Column("rtt ms p50/p99", 75, short="rtt p50/99")]
    columns += [_Column("breaker", 60, "left")]
    columns += [_Column("errors", 55), _Column("size", 30), _Column("in use", 25)]
    columns += [_Column("idle", 20), _Column("waiting", 15)]
    columns += [_Column("wait ms p50/p99", 10, short="wait p50/99")]
    _, role, lag, rtt, breaker, errors, size, in_use, idle, waiting, wait = columns
    for row in rows:
        role.cells.append(Text(row["role"], style=_ROLE_STYLE.get(row["role"], "")))
        rtt.cells.append(
            Text("ERROR", style="bold red")
            if row["error"] is not None
            else Text(_pair_ms(row["rtt_p50_ms"], row["rtt_p99_ms"]))
        )
        lag.cells.append(_lag(row))
        state = row["breaker"] or "-"
        breaker.cells.append(Text(state, style="bold red" if state == "open" else ""))
        errors.cells.append(Text(_num(row["errors"]), style="red" if row["errors"] else ""))
        size.cells.append(_num(row["size"]))
        in_use.cells.append(_num(row["in_use"]))
        idle.cells.append(_num(row["idle"]))
        waiting.cells.append(
            Text(_num(row["waiting"]), style="bold yellow" if row["waiting"] else "")
        )
        wait.cells.append(_pair_ms(row["wait_p50_ms"], row["wait_p99_ms"]))
    if all(row["node"] == "-" for row in rows):
        columns.remove(lag)  # only the role probe of a topology measures lag
    return _fit("Nodes", columns, width)


def render(snap: Mapping[str, Any], width: int = DEFAULT_WIDTH) -> Group:
    """One frame laid out for ``width`` columns: a status line and the
    targets, the error messages (already masked) and recent warnings, the
    Clients table, then the Nodes table."""
    parts: list[RenderableType] = [*_header(snap)]
    for message in snap["errors"]:
        parts.append(Text(f"  error: {message}", style="red"))
    for message in snap.get("log", ()):
        parts.append(Text(f"  log: {message}", style="yellow"))
    parts.append(_clients_table(snap, width))
    parts.append(_nodes_table(snap, width))
    return Group(*parts)
