"""``pgharbor bench``: a load run with a progress bar, percentiles and a plot."""

from __future__ import annotations

import typer

__all__ = ["bench"]


def bench() -> None:
    """Run a load against a database and report throughput and latency."""
    raise typer.Exit(code=2)
