"""``pgharbor top``: a live terminal view of pools, nodes and clients."""

from __future__ import annotations

import typer

__all__ = ["top"]


def top() -> None:
    """Watch pools, nodes and server-side clients, refreshed every interval."""
    raise typer.Exit(code=2)
