"""How ``pgharbor top`` lays a frame out for a terminal's width (pure: a
snapshot as plain data in, rich renderables out)."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from pgharbor._cli.top_view import render


def _pool(database: str, node: str, target: str, role: str, **extra: Any) -> dict[str, Any]:
    row = {
        "database": database,
        "node": node,
        "target": target,
        "role": role,
        "lag_seconds": None,
        "lag_bytes": None,
        "breaker": "closed",
        "size": 1,
        "max_size": 2,
        "in_use": 0,
        "idle": 1,
        "waiting": 0,
        "wait_p50_ms": 0.0,
        "wait_p99_ms": 0.1,
        "errors": 0,
        "rtt_p50_ms": 0.8,
        "rtt_p99_ms": 1.9,
        "error": None,
    }
    return {**row, **extra}


def _client(database: str, node: str, application: str, connections: int) -> dict[str, Any]:
    return {
        "database": database,
        "node": node,
        "application": application,
        "connections": connections,
        "active": 1,
        "idle": connections - 2,
        "idle_in_transaction": 1,
        "waiting_lock": 0,
        "oldest_xact": 12.5,
    }


SNAP: dict[str, Any] = {
    "time": 1_700_000_000.0,
    "interval": 1.0,
    "pools": [
        _pool("orders", "primary", "db1.example:5432/orders as monitor", "primary"),
        _pool(
            "orders",
            "replica1",
            "db2.example:5432/orders as monitor",
            "replica",
            lag_seconds=0.4,
            lag_bytes=2048,
        ),
        _pool("billing", "-", "db3.example:5432/billing as monitor", "primary"),
    ],
    "clients": [
        _client("orders", "primary", "orders-api", 12),
        _client("orders", "replica1", "reports", 4),
        _client("billing", "-", "billing-service-worker-eu-west", 7),
    ],
    "errors": [],
    "reachable": 3,
}


def _lines(width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as capture:
        console.print(render(SNAP, width))
    return capture.get().splitlines()


def _headings(lines: list[str], title: str) -> list[str]:
    start = [line.strip() for line in lines].index(title)
    heading = next(line for line in lines[start:] if line.startswith("┃"))
    return [cell.strip() for cell in heading.strip("┃").split("┃")]


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_no_line_is_wider_than_the_terminal(width: int) -> None:
    """Whatever the width, from 60 columns up, every line fits."""
    lines = _lines(width)
    assert max(len(line) for line in lines) <= width, "\n".join(lines)


def test_targets_are_header_lines_and_clients_come_first() -> None:
    """One header line per node names its target; the Clients table comes
    before the Nodes table; no table has a target column."""
    lines = _lines(80)
    titles = [line.strip() for line in lines]
    assert titles[0].startswith("pgharbor top") and "3/3 nodes answering" in titles[0]
    assert titles[1:4] == [
        "orders/primary  db1.example:5432/orders as monitor",
        "orders/replica1  db2.example:5432/orders as monitor",
        "billing  db3.example:5432/billing as monitor",
    ]
    assert titles.index("Clients (pg_stat_activity)") < titles.index("Nodes")
    assert "target" not in _headings(lines, "Nodes")


def test_80_columns_keep_what_matters_with_short_headings() -> None:
    """At 80 columns: short headings; who is connected, how busy, and each
    node's role, lag and round trip stay; top's own pool counters go first."""
    lines = _lines(80)
    clients = _headings(lines, "Clients (pg_stat_activity)")
    assert clients == ["database/node", "application", "conns", "active", "in tx", "oldest"]
    nodes = _headings(lines, "Nodes")
    assert nodes == ["database/node", "role", "lag", "rtt p50/99", "breaker", "errors"]


def test_a_wide_terminal_shows_every_column_with_full_headings() -> None:
    """At 200 columns nothing is left out and headings are the long ones."""
    lines = _lines(200)
    assert _headings(lines, "Clients (pg_stat_activity)") == [
        "database/node",
        "application",
        "conns",
        "active",
        "idle",
        "idle in tx",
        "lock waits",
        "oldest xact",
    ]
    assert _headings(lines, "Nodes") == [
        "database/node",
        "role",
        "lag",
        "rtt ms p50/p99",
        "breaker",
        "errors",
        "size",
        "in use",
        "idle",
        "waiting",
        "wait ms p50/p99",
    ]


def test_columns_go_in_rank_order_as_the_width_shrinks() -> None:
    """Narrower means fewer columns, and a column once dropped stays dropped."""
    previous: set[str] | None = None
    for width in range(200, 59, -10):
        nodes = set(_headings(_lines(width), "Nodes"))
        # Compare by meaning: a short heading is the same column.
        nodes = {h.replace("rtt p50/99", "rtt ms p50/p99") for h in nodes}
        nodes = {h.replace("wait p50/99", "wait ms p50/p99") for h in nodes}
        if previous is not None:
            assert nodes <= previous, (width, nodes, previous)
        previous = nodes
    assert previous is not None and {"database/node", "role", "rtt ms p50/p99"} <= previous


def test_one_database_without_replicas_drops_the_columns_that_say_nothing() -> None:
    """One database and no replicas: Clients has no database column (the
    header names the target); Nodes keeps it to be found by, without lag."""
    snap = {
        **SNAP,
        "pools": [SNAP["pools"][2]],
        "clients": [SNAP["clients"][2]],
        "reachable": 1,
    }
    console = Console(width=80, color_system=None)
    with console.capture() as capture:
        console.print(render(snap, 80))
    lines = capture.get().splitlines()
    assert _headings(lines, "Clients (pg_stat_activity)")[0] == "application"
    nodes = _headings(lines, "Nodes")
    assert nodes[0] == "database" and "lag" not in nodes
